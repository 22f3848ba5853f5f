"""Attention of one (frame, scale) block over what coding has already computed: the KV cache.

Coding runs the context model one (t,k) block at a time, scale-major (every frame at scale k,
then scale k+1). Each block's queries may read (the sparse block mask of
:mod:`progvc.models.context`):

* the queries of frame t at scales j <= k (their keys and values: ``own[t][j][b]``, the current
  scale's passed in directly), and
* the memory of frames t-lag, lag = 1..W, at scales j <= k: the memory element ``mem[t-lag][j]``
  through block b's key/value projection with lag embedding ``lag``.

What is kept is only what a later block can read (the cache holds the peak of a GOP's coding, so
this is what bounds memory at 720p and 1080p):

* memory is kept as elements (D floats per token), and each reader computes their keys and values
  block by block when it attends (``memory_kv``): the same projection of the same tensor as when
  they were stored per reader, so the same bits, for 1/(2 depth W) of the memory (at the cost of
  recomputing the coarser scales' projections at every scale, a few percent of the work);
* the model's last scale reads no finer scale, so its own keys are never stored, frame t's own
  keys go once it has run the last scale, and the memory of frame t once every frame that reads it
  (t+1 .. t+W) has. A GOP coded through every scale ends with an empty cache.

From scale ``local_from`` on, keys of scales >= ``local_from`` are visible only near the query
(:mod:`progvc.models.local_attention`): the queries are cut into tiles, each tile gathers its own
keys, and batched attention over groups of tiles (``ATTENTION_BYTES`` of gathered keys at a time)
replaces the dense one. The result equals the training pass under the same mask
(``tests/test_context.py`` checks it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .local_attention import Grid, TileLayout, tile_layout

KV = tuple[torch.Tensor, torch.Tensor]
MemoryKV = Callable[[torch.Tensor, int], KV]
"""Keys and values (each (1, heads, n, D/heads)) of memory elements (1, n, D) read at a lag."""

ATTENTION_BYTES = 1 << 24
"""Bytes of gathered keys and values per batch of tiles in local attention (tiles are independent:
any grouping gives the same output). At the finest 1080p scale all 510 tiles at once gather about
1.7 GB per block; 2^24 cuts that to groups of about 5 tiles."""


class KVCache:
    """Keys and values of one GOP during coding.

    own[t][k][b]: (key, value), each (1, heads, n_k, D/heads), of block b for the queries of
    (t,k). mem[t][k]: the memory element m_{t,k} (1, n_k, D), read by frames t+1 .. t+W.
    Entries no later block can read are dropped (module docstring): ``own[t]`` and ``mem[t]``
    become empty lists once frame t is done with them.
    """

    def __init__(self, grids: list[Grid], n_frames: int, window: int, local_from: int = 0,
                 tile: int = 8, halo: int = 4) -> None:
        self.grids, self.n_frames, self.window = grids, n_frames, window
        self.local_from, self.tile, self.halo = local_from, tile, halo
        self.own: list[list[list[KV]]] = [[] for _ in range(n_frames)]
        self.mem: list[list[torch.Tensor]] = [[] for _ in range(n_frames)]
        self._layouts: dict[int, TileLayout] = {}

    def fork(self) -> KVCache:
        """A copy whose lists can grow (and be dropped) independently (the tensors are shared)."""
        new = copy.copy(self)
        new.own = [list(per_t) for per_t in self.own]
        new.mem = [list(per_t) for per_t in self.mem]
        return new

    def is_last(self, k: int) -> bool:
        """Whether k is the last scale: no later block reads its own keys."""
        return k == len(self.grids) - 1

    def is_local(self, k: int) -> bool:
        return 0 < self.local_from <= k

    def layout(self, k: int) -> TileLayout:
        if k not in self._layouts:
            self._layouts[k] = tile_layout(self.grids, k, self.local_from, self.tile, self.halo)
        return self._layouts[k]

    def visible_lags(self, t: int) -> list[int]:
        return [lag for lag in range(1, self.window + 1) if t - lag >= 0]

    def has_reader(self, t: int) -> bool:
        """Whether a later frame of the GOP reads the memory of frame t."""
        return self.window > 0 and t + 1 < self.n_frames

    def add_own(self, t: int, k: int, kv: list[KV]) -> None:
        """Keep the keys and values (one per block) of (t,k) for frame t's finer scales."""
        if not self.is_last(k):
            self.own[t].append(kv)

    def add_memory(self, t: int, m: torch.Tensor) -> None:
        """Keep memory m_{t,k} (1,n_k,D), k = the next scale of frame t, if a later frame reads it."""
        if self.has_reader(t):
            self.mem[t].append(m)

    def done(self, t: int, k: int) -> None:
        """Frame t has run scale k: after the last scale, drop what no later block reads."""
        if not self.is_last(k):
            return
        self.own[t] = []
        for src in range(t + 1):  # frame src's readers are src+1 .. src+W (within the GOP)
            if min(src + self.window, self.n_frames - 1) <= t:
                self.mem[src] = []

    def clear(self) -> None:
        """Drop every entry (the GOP will code no further scale)."""
        self.own = [[] for _ in range(self.n_frames)]
        self.mem = [[] for _ in range(self.n_frames)]


def attend_cached(q: torch.Tensor, current: KV, cache: KVCache, b: int, t: int, k: int,
                  memory_kv: MemoryKV, lags: list[int]) -> torch.Tensor:
    """Attention output (1, heads, n_k, D/heads) of block b for the queries q of (t,k), whose own
    keys and values are ``current``, and of the memory of frames t - lag for ``lags`` (a subset
    of ``cache.visible_lags(t)``); ``memory_kv`` is block b's projection of memory elements."""
    sources = [[cache.own[t][j][b] for j in range(k)] + [current]]  # frame t, scales 0..k
    sources += [[memory_kv(cache.mem[t - lag][j], lag) for j in range(k + 1)] for lag in lags]
    if not cache.is_local(k):
        keys = torch.cat([kv[0] for src in sources for kv in src], dim=2)
        vals = torch.cat([kv[1] for src in sources for kv in src], dim=2)
        return F.scaled_dot_product_attention(q, keys, vals)
    return _attend_tiles(q, sources, cache.layout(k), cache.local_from)


def _attend_tiles(q: torch.Tensor, sources: list[list[KV]], layout: TileLayout, local_from: int,
                  budget: int | None = None) -> torch.Tensor:
    """Tile-local attention: every source's scales below ``local_from`` are global keys, the rest
    are gathered per tile by ``layout``, for a group of tiles at a time (at most ``budget`` bytes of
    gathered keys and values, default ``ATTENTION_BYTES``). q (1,H,n,d) -> (1,H,n,d)."""
    n_tiles = layout.queries.shape[0]
    glob = [kv for src in sources for kv in src[:local_from]]
    glob_k = torch.cat([kv[0] for kv in glob], dim=2)[0]  # (H, G, d)
    glob_v = torch.cat([kv[1] for kv in glob], dim=2)[0]
    local = [(kv, idx) for src in sources for kv, idx in zip(src[local_from:], layout.keys, strict=True)]
    ok = torch.cat([torch.ones(n_tiles, glob_k.shape[1], dtype=torch.bool)]
                   + [key_ok for _ in sources for key_ok in layout.key_ok], dim=1)  # (n_tiles, keys)
    masked = not bool(ok.all())  # decided once for all tiles: every group takes the same kernel path
    heads, n_keys, d = glob_k.shape[0], ok.shape[1], glob_k.shape[2]
    per_tile = 2 * heads * n_keys * d * q.element_size()
    step = max(1, (ATTENTION_BYTES if budget is None else budget) // per_tile)
    out = torch.empty_like(q[0])  # (H, n, d)
    for lo in range(0, n_tiles, step):
        tiles = slice(lo, min(lo + step, n_tiles))
        n = tiles.stop - tiles.start
        keys = [glob_k.expand(n, -1, -1, -1)]  # (n, H, G, d)
        vals = [glob_v.expand(n, -1, -1, -1)]
        for (key, val), idx in local:
            keys.append(key[0][:, idx[tiles]].transpose(0, 1))  # (H, n_key, d)[:, (n, P)] -> (n, H, P, d)
            vals.append(val[0][:, idx[tiles]].transpose(0, 1))
        mask = ok[tiles, None, None, :].to(q.device) if masked else None  # (n, 1, 1, keys)
        q_tiles = q[0][:, layout.queries[tiles]].transpose(0, 1)  # (n, H, Q, d)
        a = F.scaled_dot_product_attention(q_tiles, torch.cat(keys, dim=2), torch.cat(vals, dim=2), attn_mask=mask)
        query_ok = layout.query_ok[tiles]
        out[:, layout.queries[tiles][query_ok]] = a.transpose(0, 1)[:, query_ok]
    return out[None]
