"""Local attention at the fine scales: which keys a query may see, as a mask and as gather indices.

The finest scales hold most tokens (at CIF the last one holds 57% of them), and dense attention
makes each of those queries read every coarser token of its frame and of two earlier frames.
Measured on the dev clips with progvc-small-v3 before any retraining, restricting fine queries
to a neighbourhood *saved* 1.5% of the bits (dense attention dilutes what is near), and at CIF it
cuts the keys of a finest-scale query from about 8,400 to about 2,000.

The rule, for query scale k >= ``local_from`` (scales below it attend densely, as before):

* the grid of scale k is cut into tiles of ``tile x tile`` cells; every query of a tile sees the
  same keys, so the coding path runs one small dense attention per tile;
* keys of scales j < ``local_from`` (few tokens) stay visible to every query: global context;
* a key of scale j in ``local_from .. k`` is visible when its cell centre lies in the tile
  widened by ``halo`` cells of grid k on every side (compared in integers, so training mask and
  coding indices cannot disagree by rounding).

The same rule applies to the memory of earlier frames. :func:`local_visibility` builds the dense
(L, L) mask that training combines with the block mask; :func:`tile_layout` builds, for one
query scale, the padded query and key indices the coding path gathers with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

Grid = tuple[int, int]


def _tiles(grid: Grid, tile: int) -> list[tuple[int, int, int, int]]:
    """Tiles of ``grid`` as (row0, row1, col0, col1) cell ranges, row-major."""
    h, w = grid
    return [(r, min(r + tile, h), c, min(c + tile, w)) for r in range(0, h, tile) for c in range(0, w, tile)]


def _inside(lo: int, hi: int, halo: int, n_query: int, n_key: int) -> torch.Tensor:
    """(n_key,) bool: which key cells of a grid with ``n_key`` cells have their centre in
    [lo - halo, hi + halo) measured in cells of a grid with ``n_query`` cells.

    centre_i = (i + 1/2) * n_query / n_key, so the test is
    2 (lo - halo) n_key <= (2 i + 1) n_query < 2 (hi + halo) n_key, in integers."""
    centre2 = (2 * torch.arange(n_key) + 1) * n_query
    return (centre2 >= 2 * (lo - halo) * n_key) & (centre2 < 2 * (hi + halo) * n_key)


def key_cells(grids: list[Grid], k: int, j: int, region: tuple[int, int, int, int], halo: int) -> torch.Tensor:
    """Flat indices (row-major) of the cells of grid j visible from tile ``region`` of grid k."""
    (hk, wk), (hj, wj) = grids[k], grids[j]
    r0, r1, c0, c1 = region
    rows = _inside(r0, r1, halo, hk, hj).nonzero().flatten()
    cols = _inside(c0, c1, halo, wk, wj).nonzero().flatten()
    return (rows[:, None] * wj + cols[None, :]).flatten()


def local_visibility(grids: list[Grid], local_from: int, tile: int, halo: int) -> torch.Tensor:
    """(L, L) bool over one frame's tokens (scale-major, row-major): False where the local rule
    hides key from query. Combine with the coarser-or-equal block mask (this one does not hide
    finer scales by itself). Cached: training asks for the same grids at every step."""
    return _local_visibility(tuple(tuple(g) for g in grids), local_from, tile, halo)


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)
def _local_visibility(grids: tuple[Grid, ...], local_from: int, tile: int, halo: int) -> torch.Tensor:
    grids = list(grids)
    sizes = [h * w for h, w in grids]
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    total = sum(sizes)
    keep = torch.ones(total, total, dtype=torch.bool)
    for k in range(local_from, len(grids)):
        for region in _tiles(grids[k], tile):
            r0, r1, c0, c1 = region
            cells = torch.arange(r0, r1)[:, None] * grids[k][1] + torch.arange(c0, c1)[None, :]
            rows = offsets[k] + cells.flatten()
            for j in range(local_from, len(grids)):
                seen = torch.zeros(sizes[j], dtype=torch.bool)
                seen[key_cells(grids, k, j, region, halo)] = True
                keep[rows[:, None], offsets[j] + torch.arange(sizes[j])[None, :]] = seen[None, :]
    return keep


@dataclass(frozen=True)
class TileLayout:
    """Gather indices of one query scale k (>= local_from) for the coding path.

    queries (n_tiles, Q) int64: flat cells of grid k per tile, padded with 0 where ``query_ok``
    is False. keys[i] (n_tiles, P_i) int64 for source scale ``local_from + i`` (up to k), padded
    with 0 where ``key_ok[i]`` is False.
    """

    queries: torch.Tensor
    query_ok: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    key_ok: tuple[torch.Tensor, ...]


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    ok = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = r
        ok[i, :len(r)] = True
    return idx, ok


def tile_layout(grids: list[Grid], k: int, local_from: int, tile: int, halo: int) -> TileLayout:
    """The tiles of grid k and, for each source scale local_from..k, the keys each tile sees."""
    regions = _tiles(grids[k], tile)
    w = grids[k][1]
    queries, query_ok = _pad([(torch.arange(r0, r1)[:, None] * w + torch.arange(c0, c1)[None, :]).flatten()
                              for r0, r1, c0, c1 in regions])
    keys, key_ok = [], []
    for j in range(local_from, k + 1):
        idx, ok = _pad([key_cells(grids, k, j, region, halo) for region in regions])
        keys.append(idx)
        key_ok.append(ok)
    return TileLayout(queries, query_ok, tuple(keys), tuple(key_ok))
