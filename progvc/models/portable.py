"""The portable context model: v4's context transformer in exact integer arithmetic.

It has the coding interface of :class:`progvc.models.context.ContextModel` (``query_input``,
``memory_input``, ``step``, ``logits``, ``rd_embedding``, ``new_cache``) and computes it with the
operations of :mod:`progvc.models.exact_ops`, so every machine gets the same logits, and from
them (:meth:`PortableContextModel.table`) the same frequency tables: a stream decodes on any
instruction set, thread count or GPU. What it reads is exact too: its own fixed-point copy of the
latent f_hat (:meth:`embed_scale`: codebook, bicubic up-sampling and phi in integers), area
down-sampling, position embeddings and the lambda input (:mod:`progvc.models.exact_geometry`).

It is made from a float model by :func:`progvc.models.portable_convert.convert` (weights rounded
to 8 bits per output channel, layer norms' gain and bias folded into the next layer, 1/sqrt(d)
folded into the query projection); nothing here is trained. The synthesis of pixels stays in
floating point: it changes no token.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import exact_geometry as geo
from . import exact_native as native
from . import exact_ops as ops
from .cached_attention import ATTENTION_BYTES, KV, KVCache
from .config import ContextConfig, TokenizerConfig
from .local_attention import Grid, TileLayout

PHI_FRAC = 14
"""Fractional bits of the phi convolutions' weights."""
SCORE_BYTES = 1 << 21
"""Bytes of attention scores per group of tiles in the tensor path's tile-local attention (about one
core's L2 cache); the C kernels take one tile at a time (:func:`native.tile_attention`)."""


class IntLinear(nn.Module):
    """``ops.linear`` with its integers as buffers: weight (N,K) int8, mult/shift/bias (N,) int64."""

    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(n, k, dtype=torch.int8))
        self.register_buffer("mult", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("shift", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("bias", torch.zeros(n, dtype=torch.int64))
        self._floats: tuple | None = None

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def _prepared(self) -> tuple[torch.Tensor, ...]:
        """(weight_t, scale, bias) as ``ops.linear`` takes them, made once per device and state."""
        key = (self.weight.device, *(b._version for b in (self.weight, self.mult, self.shift, self.bias)))
        if self._floats is None or self._floats[0] != key:
            scale = self.mult.double() * ops.pow2(-self.shift.double())  # exact: a 24-bit multiplier
            wide = self.weight.shape[1] > ops.CHUNK
            self._floats = (key, self.weight.t().float().contiguous(), scale if wide else scale.float(),
                            self.bias.float())
        return self._floats[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, *self._prepared())


class IntBlock(nn.Module):
    """One transformer block: q (1/sqrt(d) folded in) and kv of the queries (ln1 folded in), kv of
    memory (ln_mem folded in), the output projection, and the MLP (ln2 folded into fc1)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.kv_mem = IntLinear(dim, dim), IntLinear(dim, 2 * dim), IntLinear(dim, 2 * dim)
        self.proj, self.fc1, self.fc2 = IntLinear(dim, dim), IntLinear(dim, hidden), IntLinear(hidden, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _keys_values(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,N,2D) -> keys and values, each (B,H,N,d)."""
        k, v = kv.chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def query_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = ops.normalize_rows(x)
        return self.split(self.q(h)), *self._keys_values(self.kv(h))

    def memory_kv(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._keys_values(self.kv_mem(ops.normalize_rows(m)))

    def finish(self, x: torch.Tensor, a: torch.Tensor, gelu: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = ops.clamp_value(x + self.proj(a.transpose(1, 2).flatten(2)))
        return ops.clamp_value(x + self.fc2(ops.gelu(self.fc1(ops.normalize_rows(x)), *gelu)))


class PortableContextModel(nn.Module):
    """The context transformer in integers (module docstring). Buffers, all integers: embeddings
    (sos, scale_emb, lag_emb, intra) and the codebook at FRAC; phi convolutions at PHI_FRAC; the
    lookup tables gelu_table, attention_exp and table_exp."""

    portable = True

    def __init__(self, cfg: ContextConfig, tok: TokenizerConfig) -> None:
        super().__init__()
        self.cfg, self.tok = cfg, tok
        d, c = cfg.dim, tok.latent_channels
        shapes = {"sos": (d,), "scale_emb": (tok.n_scales, d), "lag_emb": (max(1, cfg.temporal_window), d),
                  "intra": (d,), "codebook": (tok.codebook_size, c)}
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("phi_weight", torch.zeros(tok.n_phi, c, 9 * c, dtype=torch.int32))
        self.register_buffer("phi_bias", torch.zeros(tok.n_phi, c, dtype=torch.int64))
        self.register_buffer("gelu_table", torch.zeros(((ops.GELU_HI - ops.GELU_LO) << ops.GELU_STEP_BITS) + 1,
                                                       dtype=torch.int32))
        self.register_buffer("attention_exp", torch.zeros(attention_exp_entries(), dtype=torch.int32))
        self.register_buffer("table_exp", torch.zeros(table_exp_entries(), dtype=torch.int64))
        self.in_proj, self.mem_proj, self.prev_proj = IntLinear(c, d), IntLinear(2 * c, d), IntLinear(d, d)
        self.rd_proj = IntLinear(3, d) if cfg.rd_conditioning else None
        hidden = int(d * cfg.mlp_ratio)
        self.blocks = nn.ModuleList(IntBlock(d, cfg.heads, hidden) for _ in range(cfg.depth))
        self.head, self.copy_gate = IntLinear(d, tok.codebook_size), IntLinear(d, 1)

    # -- floats holding the integers, made once per device ---------------------------------------
    @property
    def device(self) -> torch.device:
        return self.sos.device

    def _f(self, name: str) -> torch.Tensor:
        """Buffer ``name`` as float32 (the exp and phi tables as float64), cached until it changes."""
        buf = getattr(self, name)
        cache = self.__dict__.setdefault("_float_buffers", {})
        key = (buf.device, buf._version)
        if name not in cache or cache[name][0] != key:
            dtype = torch.float64 if name in ("table_exp", "phi_weight", "phi_bias") else torch.float32
            cache[name] = (key, buf.to(dtype))
        return cache[name][1]

    def _gelu_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The GELU table and its differences (float32 integers)."""
        table = self._f("gelu_table")
        cache = self.__dict__.setdefault("_float_buffers", {})
        if "gelu_slope" not in cache or cache["gelu_slope"][0] is not table:
            cache["gelu_slope"] = (table, F.pad(table[1:] - table[:-1], (0, 1)))
        return table, cache["gelu_slope"][1]

    # -- the latent the context model reads -------------------------------------------------------
    def phi_index(self, k: int, n_scales: int) -> int:
        rel = k / max(1, n_scales - 1)
        return min(self.tok.n_phi - 1, int(rel * self.tok.n_phi))

    def embed_scale(self, tokens: torch.Tensor, k: int, grids: list[Grid]) -> torch.Tensor:
        """Contribution of scale k to the integer f_hat: tokens (B,h_k,w_k) -> (B,C,h,w) float32 at FRAC."""
        return self.embed_vectors(self._f("codebook")[tokens].permute(0, 3, 1, 2), k, grids)

    def embed_vectors(self, q: torch.Tensor, k: int, grids: list[Grid]) -> torch.Tensor:
        """phi_k(up(q)) of integer vectors q (B,C,h_k,w_k) at FRAC, (B,C,h,w) float32 at FRAC. The
        3x3 convolution (its mix with the identity folded in) is an unfold and an exact float64
        product (sums < 288 * 2**23 * 2**15 < 2**53)."""
        up = geo.upsample(q, grids[-1])
        b, c, h, w = up.shape
        j = self.phi_index(k, len(grids))
        cols = F.unfold(up, 3, padding=1)  # (B, 9C, h*w)
        acc = self._f("phi_weight")[j] @ cols + self._f("phi_bias")[j][:, None]
        return ops.clamp_value((acc * (1.0 / (1 << PHI_FRAC))).round()).float().view(b, c, h, w)

    def expected_embedding(self, logits: torch.Tensor) -> torch.Tensor:
        """sum_v p_v e_v (n, C) float32 at FRAC, p the frequency table at temperature 1 (exact:
        counts sum to <= 2**24, |e| < 2**23, so sums < 2**47; the quotient rounds as integers do)."""
        counts = self._counts(logits, 9).double()
        return ((counts @ self._f("codebook").double()) / counts.sum(1, keepdim=True)).round().float()

    # -- element construction ----------------------------------------------------------------------
    def rd_embedding(self, lam: float | torch.Tensor) -> torch.Tensor | None:
        """(1, 1, D) integers at FRAC of the stream's lambda (one float), or None."""
        if self.rd_proj is None:
            return None
        return self.rd_proj(geo.rd_features(float(lam)).to(self.device)[None, None])

    def _positions(self, k: int, grid: Grid) -> torch.Tensor:
        return ops.clamp_value(self._f("scale_emb")[k] + _positions(tuple(grid), self.cfg.dim, str(self.device)))

    def query_input(self, f_hat_prev: torch.Tensor | None, k: int, grid: Grid,
                    prev_mem: torch.Tensor | None, rd: torch.Tensor | None = None) -> torch.Tensor:
        """Query elements (B, n_k, D) at FRAC; f_hat_prev: the integer f_hat of scales < k (or None)."""
        if k == 0 or f_hat_prev is None:
            b = 1 if prev_mem is None else prev_mem.shape[0]
            x = self._f("sos").expand(b, grid[0] * grid[1], -1)
        else:
            x = self.in_proj(geo.downsample(f_hat_prev, grid).float().flatten(2).transpose(1, 2))
        x = ops.clamp_value(x + self._positions(k, grid))
        x = ops.clamp_value(x + (self._f("intra") if prev_mem is None else self.prev_proj(prev_mem)))
        return x if rd is None else ops.clamp_value(x + rd)

    def memory_input(self, tokens: torch.Tensor | None, f_hat_upto: torch.Tensor, k: int, grid: Grid,
                     codebook: object = None, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """Memory elements (B, n_k, D) at FRAC from tokens (B,h_k,w_k) or ``embedded`` (B,n_k,C) at
        FRAC, and the integer f_hat of scales <= k. ``codebook`` (the float model's) is not used."""
        e = self._f("codebook")[tokens].flatten(1, 2) if embedded is None else embedded
        rec = geo.downsample(f_hat_upto, grid).float().flatten(2).transpose(1, 2)
        return ops.clamp_value(self.mem_proj(torch.cat([e, rec], dim=-1)) + self._positions(k, grid))

    def logits(self, x: torch.Tensor, prev_tokens: torch.Tensor | None = None,
               copy: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,N,V) float32 in nats, each an integer multiple of 2**-LOGIT_FRAC (|l| < 2**15)."""
        h = ops.normalize_rows(x)
        out = self.head(h)
        if prev_tokens is not None:
            gate = self.copy_gate(h) if copy is None else self.copy_gate(h) * copy
            out = ops.clamp_value(out.scatter_add_(-1, prev_tokens[..., None], gate))
        return out * (1.0 / (1 << ops.LOGIT_FRAC))

    # -- probabilities ------------------------------------------------------------------------------
    def _counts(self, logits: torch.Tensor, temperature_index: int) -> torch.Tensor:
        z = logits.detach().float() * (1 << ops.LOGIT_FRAC)
        return ops.frequency_counts(z, self._tempered(temperature_index))

    def _tempered(self, temperature_index: int) -> torch.Tensor:
        """The tables' exp table at one of the stream's temperatures, made once per device and state."""
        cache = self.__dict__.setdefault("_tempered_tables", {})
        key = (temperature_index, self.table_exp.device, self.table_exp._version)
        if key not in cache:
            cache[key] = ops.tempered_table(self.table_exp, temperature_index)
        return cache[key]

    def table(self, logits: torch.Tensor, temperature_index: int) -> np.ndarray:
        """The range coder's table (n, V) int64 of logits (n, V) at the stream's temperature index."""
        return self._counts(logits, temperature_index).cpu().numpy()

    def draw_weights(self, logits: torch.Tensor, temperature: float) -> np.ndarray:
        """Integer weights (n, V) int64 (<= 2**28) of softmax(logits / temperature) for sampling:
        exp_table[floor((max - z) / temperature)] with the division in float64 (one IEEE operation)."""
        z = logits.detach().to("cpu", torch.float64) * (1 << ops.LOGIT_FRAC)
        d = ((z.amax(-1, keepdim=True) - z) / temperature).floor().clamp(max=self.table_exp.shape[0] - 1)
        return self.table_exp.cpu()[d.long()].numpy()

    # -- coding: one (t,k) block at a time ----------------------------------------------------------
    def new_cache(self, grids: list[Grid], n_frames: int, window: int) -> KVCache:
        cfg = self.cfg
        return KVCache(grids, n_frames, window, cfg.local_from, cfg.local_tile, cfg.local_halo)

    def step(self, x: torch.Tensor, cache: KVCache, t: int, k: int, *, temporal: bool = True
             ) -> tuple[torch.Tensor, list[KV]]:
        """As :meth:`ContextModel.step`, in integers."""
        new = []
        lags = cache.visible_lags(t) if temporal else []
        gelu = self._gelu_tables()
        exp_table = self._f("attention_exp")
        for b, blk in enumerate(self.blocks):
            q, key, val = blk.query_kv(x)
            new.append((key, val))
            sources = [[cache.own[t][j][b] for j in range(k)] + [(key, val)]]
            sources += [self._memory_kv(blk, cache.mem[t - lag][:k + 1], lag) for lag in lags]
            if cache.is_local(k):
                a = _attend_tiles(q, sources, cache, k, exp_table)
            else:
                a = ops.attention(q, torch.cat([kv[0] for s in sources for kv in s], dim=2),
                                  torch.cat([kv[1] for s in sources for kv in s], dim=2), exp_table)
            x = blk.finish(x, a, gelu)
        return x, [] if cache.is_last(k) else new

    def _memory_kv(self, blk: IntBlock, scales: list[torch.Tensor], lag: int) -> list[KV]:
        """Keys and values of the memory elements of each scale (1,n_j,D) in block ``blk``, read at
        ``lag`` frames: one projection of all their rows (each row is computed on its own, so this
        is what one projection per scale gives, with one call instead of one per scale)."""
        sizes = [m.shape[1] for m in scales]
        key, val = blk.memory_kv(ops.clamp_value(torch.cat(scales, dim=1) + self._f("lag_emb")[lag - 1]))
        return list(zip(key.split(sizes, dim=2), val.split(sizes, dim=2), strict=True))

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError("the portable model only codes; train the float model and convert it")


@functools.lru_cache(maxsize=64)
def _positions(grid: Grid, dim: int, device: str) -> torch.Tensor:
    return geo.grid_positions(grid, dim).to(device)


def _attend_tiles(q: torch.Tensor, sources: list[list[KV]], cache: KVCache, k: int,
                  exp_table: torch.Tensor) -> torch.Tensor:
    """Tile-local attention (as ``cached_attention._attend_tiles``). Each tile's keys are rounded on
    their own, so grouping tiles changes nothing; a tile's padding gathers a row appended to the
    keys, which repeats the first global key, has value 0 and is not kept (:func:`ops.attention`).
    Every source's keys (global ones first, then each local scale's, in the float path's order) are
    numbered end to end; with the C kernels every tile's attention is then one pass that reads them
    where they lie (:func:`native.tile_attention`), else they are laid end to end once per call and
    a group of tiles gathers its keys and values in one indexing each. q (1,H,n,d) -> (1,H,n,d)."""
    layout, local_from = cache.layout(k), cache.local_from
    n_tiles = layout.queries.shape[0]
    glob = [kv for src in sources for kv in src[:local_from]]
    local = [kv for src in sources for kv in src[local_from:]]
    n_glob = sum(kv[0].shape[2] for kv in glob)
    pad = n_glob + sum(kv[0].shape[2] for kv in local)
    index = _local_index(layout, sources, local_from, n_glob, pad).to(q.device)  # (n_tiles, keys)
    keep_all = (index != pad).float()  # the padding row is the one key a tile does not keep
    first = glob[0][0][0][:, :1]  # the padding row: the first global key, with a zero value
    keys = [kv[0][0] for kv in glob + local] + [first]  # (H, cells, d) each, rows numbered end to end
    vals = [kv[1][0] for kv in glob + local] + [torch.zeros_like(first)]
    lib = native.active(q)
    if lib is not None:  # each tile's whole attention in one C pass, reading the keys in place
        return native.tile_attention(lib, q[0], keys, vals, index.to(torch.int32), keep_all,
                                     layout.queries.to(torch.int32), layout.query_ok, exp_table)[None]
    all_k, all_v = torch.cat(keys, dim=1), torch.cat(vals, dim=1)  # (H, pad + 1, d)
    queries = layout.queries.to(q.device)
    heads, d, n_keys, n_q = all_k.shape[0], all_k.shape[2], index.shape[1], queries.shape[1]
    # tiles per group: the gathered keys within ATTENTION_BYTES, and the scores (n, H, Q, keys) within
    # SCORE_BYTES, so that the softmax's passes over them stay in a core's cache (measured 1.4-1.9x
    # faster than groups of 3-8 tiles on CIF, when the C passes still ran between these products);
    # tiles are independent, so the grouping changes no bit
    per_tile = heads * n_keys * 4
    step = max(1, min(ATTENTION_BYTES // (per_tile * (2 * d // 4 + 2 * n_q)), SCORE_BYTES // (per_tile * n_q)))
    out = torch.empty_like(q[0])
    for lo in range(0, n_tiles, step):
        tiles = slice(lo, min(lo + step, n_tiles))
        n = tiles.stop - tiles.start
        q_tiles = q[0].index_select(1, queries[tiles].flatten()).view(heads, n, n_q, d).transpose(0, 1)
        # index_select gathers (H, cells, d) along cells about 3x faster than advanced indexing
        keys = all_k.index_select(1, index[tiles].flatten()).view(heads, n, n_keys, d).transpose(0, 1)
        vals = all_v.index_select(1, index[tiles].flatten()).view(heads, n, n_keys, d).transpose(0, 1)
        a = ops.attention(q_tiles, keys, vals, exp_table, keep_all[tiles, None, None, :])
        query_ok = layout.query_ok[tiles]
        out[:, queries[tiles][query_ok]] = a.transpose(0, 1)[:, query_ok]
    return out[None]


def _local_index(layout: TileLayout, sources: list[list[KV]], local_from: int, n_glob: int,
                 pad: int) -> torch.Tensor:
    """(n_tiles, keys) positions in the keys laid end to end (global ones, then every source's local
    scales in order): the global keys, then each local scale's tile keys, ``pad`` where not kept."""
    n_tiles = layout.queries.shape[0]
    parts, offset = [torch.arange(n_glob).expand(n_tiles, -1)], n_glob
    for src in sources:
        for (key, _), idx, ok in zip(src[local_from:], layout.keys, layout.key_ok, strict=True):
            parts.append(torch.where(ok, idx + offset, pad))
            offset += key.shape[2]
    return torch.cat(parts, dim=1)


def attention_exp_entries() -> int:
    """Length of the attention exp table: round(2**15 exp(-j / 2**SCORE_FRAC)) > 0, then one 0."""
    import math
    return int(math.log(2 ** (ops.ATTENTION_WEIGHT_BITS + 1)) * (1 << ops.SCORE_FRAC)) + 2


def table_exp_entries() -> int:
    """Length of the frequency table's exp table: round(2**28 exp(-j / 2**LOGIT_FRAC)) > 0, then one 0."""
    import math
    return int(math.log(2 ** (ops.TABLE_WEIGHT_BITS + 1)) * (1 << ops.LOGIT_FRAC)) + 2
