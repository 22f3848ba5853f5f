"""Attention of one (frame, scale) block over what coding has already computed: the KV cache.

Coding runs the context model one (t,k) block at a time. Each block's queries may read (the
sparse block mask of :mod:`progvc.models.context`):

* the queries of frame t at scales j <= k (their keys and values: ``own[t][j][b]``, the current
  scale's passed in directly), and
* the memory of frames t-lag, lag = 1..W, at scales j <= k (``mem[t-lag][j][lag-1][b]``).

From scale ``local_from`` on, keys of scales >= ``local_from`` are visible only near the query
(:mod:`progvc.models.local_attention`): the queries are cut into tiles, each tile gathers its own
keys, and one batched attention over the tiles replaces the dense one. The result equals the
training pass under the same mask (``tests/test_context.py`` checks it).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .local_attention import Grid, TileLayout, tile_layout

KV = tuple[torch.Tensor, torch.Tensor]


class KVCache:
    """Keys and values of one GOP during coding.

    own[t][k][b]: (key, value), each (1, heads, n_k, D/heads), of block b for the queries of
    (t,k). mem[t][k][lag-1][b]: the same for the memory of (t,k) as read by frame t + lag.
    """

    def __init__(self, grids: list[Grid], n_frames: int, window: int, local_from: int = 0,
                 tile: int = 8, halo: int = 4) -> None:
        self.grids, self.n_frames, self.window = grids, n_frames, window
        self.local_from, self.tile, self.halo = local_from, tile, halo
        self.own: list[list[list[KV]]] = [[] for _ in range(n_frames)]
        self.mem: list[list[list[list[KV]]]] = [[] for _ in range(n_frames)]
        self._layouts: dict[int, TileLayout] = {}

    def fork(self) -> KVCache:
        """A copy whose lists can grow independently (the tensors in them are shared)."""
        new = copy.copy(self)
        new.own = [list(per_t) for per_t in self.own]
        new.mem = [list(per_t) for per_t in self.mem]
        return new

    def is_local(self, k: int) -> bool:
        return 0 < self.local_from <= k

    def layout(self, k: int) -> TileLayout:
        if k not in self._layouts:
            self._layouts[k] = tile_layout(self.grids, k, self.local_from, self.tile, self.halo)
        return self._layouts[k]

    def visible_lags(self, t: int) -> list[int]:
        return [lag for lag in range(1, self.window + 1) if t - lag >= 0]


def attend_cached(q: torch.Tensor, current: KV, cache: KVCache, b: int, t: int, k: int) -> torch.Tensor:
    """Attention output (1, heads, n_k, D/heads) of block b for the queries q of (t,k), whose own
    keys and values are ``current``."""
    sources = [[cache.own[t][j][b] for j in range(k)] + [current]]  # frame t, scales 0..k
    sources += [[cache.mem[t - lag][j][lag - 1][b] for j in range(k + 1)] for lag in cache.visible_lags(t)]
    if not cache.is_local(k):
        keys = torch.cat([kv[0] for src in sources for kv in src], dim=2)
        vals = torch.cat([kv[1] for src in sources for kv in src], dim=2)
        return F.scaled_dot_product_attention(q, keys, vals)
    return _attend_tiles(q, sources, cache.layout(k), cache.local_from)


def _attend_tiles(q: torch.Tensor, sources: list[list[KV]], layout: TileLayout, local_from: int) -> torch.Tensor:
    """Tile-local attention: every source's scales below ``local_from`` are global keys, the rest
    are gathered per tile by ``layout``. q (1,H,n,d) -> (1,H,n,d)."""
    n_tiles = layout.queries.shape[0]
    glob = [kv for src in sources for kv in src[:local_from]]
    keys = [torch.cat([kv[0] for kv in glob], dim=2)[0].expand(n_tiles, -1, -1, -1)]  # (n_tiles, H, G, d)
    vals = [torch.cat([kv[1] for kv in glob], dim=2)[0].expand(n_tiles, -1, -1, -1)]
    ok = [torch.ones(n_tiles, keys[0].shape[2], dtype=torch.bool)]
    for src in sources:
        for (key, val), idx, key_ok in zip(src[local_from:], layout.keys, layout.key_ok, strict=True):
            keys.append(key[0][:, idx].transpose(0, 1))  # (H, n, d)[:, (n_tiles, P)] -> (n_tiles, H, P, d)
            vals.append(val[0][:, idx].transpose(0, 1))
            ok.append(key_ok)
    mask = torch.cat(ok, dim=1)
    mask = None if bool(mask.all()) else mask[:, None, None, :].to(q.device)  # (n_tiles, 1, 1, keys)
    q_tiles = q[0][:, layout.queries].transpose(0, 1)  # (n_tiles, H, Q, d)
    a = F.scaled_dot_product_attention(q_tiles, torch.cat(keys, dim=2), torch.cat(vals, dim=2), attn_mask=mask)
    out = torch.empty_like(q[0])  # (H, n, d)
    out[:, layout.queries[layout.query_ok]] = a.transpose(0, 1)[:, layout.query_ok]
    return out[None]
