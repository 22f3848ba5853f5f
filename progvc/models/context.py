"""The context transformer: p(r_{t,k} | frame t's coarser scales, earlier frames at scales <= k).

Two kinds of elements live on the token grid of every (frame t, scale k):

* **queries** ``x_{t,k}`` (n_k of them): VAR's next-scale input, ``in_proj(down_k(f_hat_{t,<k}))``
  (a learned start vector for k=0), plus the co-located memory of frame t-1 at scale k, plus
  scale and 2-D position embeddings. They run through the blocks and predict the n_k tokens.
* **memory** ``m_{t,k}``: ``mem_proj([e(r_{t,k}), down_k(f_hat_{t,<=k})])`` once scale k of frame t
  is known. Memory is never updated by the blocks; each block reads it through its own K/V
  projections, with a learned lag embedding for lag = t - t' in 1..W.

A **copy gate** adds a learned, per-token amount ``g(x)`` to the logit of the token that frame t-1
has at the same place and scale: in video 15-45% of fine-scale tokens repeat, and the gate lets a
small model price a repeat at a bit or two from its first steps.

The sparse block mask (:func:`block_mask`) lets query (t,k) see queries (t,j<=k) and memory
(t-l, j<=k) for l in 1..W; from scale ``local_from`` on it is further restricted to a spatial
neighbourhood (:mod:`progvc.models.local_attention`). Nothing depends on a finer scale
(DESIGN.md rule 2), so any prefix of scales decodes exactly. Training runs the whole GOP at once
with that mask (``forward``); coding runs one (t,k) block at a time (``step``) with a
:class:`~progvc.models.cached_attention.KVCache` that holds exactly the visible keys.

With ``rd_conditioning`` every query also gets an embedding of the encoder's rate-distortion
multiplier lambda (stored in the stream): the encoder picks cheaper tokens as lambda grows (more
repeats of the previous frame, more of the likeliest codes), and a model told lambda can be as
confident as the tokens deserve.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn

from .cached_attention import KVCache, attend_cached
from .config import ContextConfig, TokenizerConfig
from .local_attention import local_visibility
from .quantizer import Grid, resize


def grid_positions(grid: Grid, dim: int, device: torch.device) -> torch.Tensor:
    """2-D sin/cos embedding of normalised cell centres, (h*w, dim): the same for any frame size.
    Cached per (grid, dim, device): coding and training ask for the same few grids many times."""
    return _grid_positions(tuple(grid), dim, str(device))


@functools.lru_cache(maxsize=256)
@torch.inference_mode(False)  # a cached tensor may be used later by training, under autograd
def _grid_positions(grid: Grid, dim: int, device: str) -> torch.Tensor:
    h, w = grid
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    n_freq = dim // 4
    freqs = torch.exp(torch.arange(n_freq, device=device, dtype=torch.float32) * (math.log(256.0) / n_freq))
    ang_y = yy.reshape(-1, 1) * freqs * math.pi
    ang_x = xx.reshape(-1, 1) * freqs * math.pi
    emb = torch.cat([ang_y.sin(), ang_y.cos(), ang_x.sin(), ang_x.cos()], dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class Block(nn.Module):
    """Pre-norm transformer block whose attention also reads fixed memory elements."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.ln_mem = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, heads, N, D/heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def query_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of query elements x (B,N,D), each (B,heads,N,D/heads)."""
        h = self.ln1(x)
        k, v = self.kv(h).chunk(2, dim=-1)
        return self.split(self.q(h)), self.split(k), self.split(v)

    def memory_kv(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v of memory elements m (B,M,D), each (B,heads,M,D/heads)."""
        k, v = self.kv(self.ln_mem(m)).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def finish(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Add the attention output a (B,heads,N,D/heads) to x (B,N,D) and apply the MLP."""
        x = x + self.proj(a.transpose(1, 2).flatten(2))
        return x + self.mlp(self.ln2(x))


class ContextModel(nn.Module):
    portable = False
    """Float arithmetic: its streams decode on the kind of device that made them
    (:mod:`progvc.models.portable` is the model that decodes anywhere)."""

    def __init__(self, cfg: ContextConfig, tok: TokenizerConfig) -> None:
        super().__init__()
        self.cfg, self.tok = cfg, tok
        d, c = cfg.dim, tok.latent_channels
        self.in_proj = nn.Linear(c, d)
        self.sos = nn.Parameter(torch.zeros(d))
        self.scale_emb = nn.Parameter(torch.zeros(tok.n_scales, d))
        self.mem_proj = nn.Linear(2 * c, d)
        self.lag_emb = nn.Parameter(torch.zeros(max(1, cfg.temporal_window), d))
        self.prev_proj = nn.Linear(d, d)
        self.intra = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, tok.codebook_size)
        self.copy_gate = nn.Linear(d, 1)
        self.rd_proj = nn.Linear(3, d) if cfg.rd_conditioning else None
        for p in (self.sos, self.scale_emb, self.lag_emb, self.intra):
            trunc_normal_(p, std=0.02)
        self.apply(self._init)
        # Prior for the copy gate: with ~30% repeats among V codes a repeat deserves a logit boost
        # of about log(0.3 V / 0.7) (~7 for 4096); Adam would need thousands of steps to get there.
        nn.init.constant_(self.copy_gate.bias, 4.0)
        if self.rd_proj is not None:  # starts as the unconditioned model (a warm start keeps its bits)
            nn.init.zeros_(self.rd_proj.weight)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    # -- element construction (shared by training and coding) ---------------------------------
    def rd_embedding(self, lam: float | torch.Tensor) -> torch.Tensor | None:
        """Embedding (B, 1, D) of the encoder's lambda (float or (B,) tensor), None without
        ``rd_conditioning``. Features: a = log2(1 + lambda) / 8, a^2 and [lambda > 0]."""
        if self.rd_proj is None:
            return None
        lam = torch.as_tensor(lam, dtype=torch.float32, device=self.sos.device).reshape(-1)
        a = torch.log2(1 + lam) / 8
        return self.rd_proj(torch.stack([a, a * a, (lam > 0).float()], dim=1))[:, None, :]

    def query_input(self, f_hat_prev: torch.Tensor | None, k: int, grid: Grid,
                    prev_mem: torch.Tensor | None, rd: torch.Tensor | None = None) -> torch.Tensor:
        """Query elements of one (t,k) block, (B, n_k, D).

        f_hat_prev: f_hat_{t,<k} (B,C,h,w), None for k=0. prev_mem: memory m_{t-1,k} (B,n_k,D)
        of the previous frame on the same grid, None when frame t opens the temporal context.
        rd: :meth:`rd_embedding` of the stream's lambda, (B or 1, 1, D), or None.
        """
        dev = self.sos.device
        if k == 0 or f_hat_prev is None:
            n = grid[0] * grid[1]
            b = 1 if prev_mem is None else prev_mem.shape[0]
            x = self.sos.expand(b, n, -1)
        else:
            x = self.in_proj(resize(f_hat_prev, grid).flatten(2).transpose(1, 2))
        x = x + self.scale_emb[k] + grid_positions(grid, self.cfg.dim, dev)
        x = x + (self.intra if prev_mem is None else self.prev_proj(prev_mem))
        return x if rd is None else x + rd

    def memory_input(self, tokens: torch.Tensor | None, f_hat_upto: torch.Tensor, k: int, grid: Grid,
                     codebook: nn.Embedding, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """Memory elements m_{t,k} (B,n_k,D) from tokens (B,h_k,w_k) and f_hat_{t,<=k} (B,C,h,w).

        ``embedded`` (B,n_k,C) replaces ``codebook(tokens)`` for a scale that was filled with
        expected embeddings rather than tokens (a decoder's ``fill="mean"``).
        """
        e = codebook(tokens).flatten(1, 2) if embedded is None else embedded  # (B, n_k, C)
        rec = resize(f_hat_upto, grid).flatten(2).transpose(1, 2)
        m = self.mem_proj(torch.cat([e, rec], dim=-1))
        return m + self.scale_emb[k] + grid_positions(grid, self.cfg.dim, self.sos.device)

    def logits(self, x: torch.Tensor, prev_tokens: torch.Tensor | None = None,
               copy: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,N,V) of hidden states x (B,N,D).

        prev_tokens (B,N) int64: the co-located tokens of the previous frame, whose logits get the
        copy gate's boost; ``copy`` (B,N,1) float masks the boost (0 where there is no previous frame).
        """
        h = self.norm(x)
        out = self.head(h)
        if prev_tokens is None:
            return out
        gate = self.copy_gate(h) if copy is None else self.copy_gate(h) * copy
        if out.requires_grad:
            return out.scatter_add(-1, prev_tokens[..., None], gate)
        # coding: in place (the same kernel; out-of-place clones 0.5 GB at the finest 1080p scale)
        return out.scatter_add_(-1, prev_tokens[..., None], gate)

    # -- coding: one (t,k) block at a time -------------------------------------------------------
    def step(self, x: torch.Tensor, cache: KVCache, t: int, k: int, *, temporal: bool = True
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Run the blocks on the queries x (1,n_k,D) of (frame t, scale k): (1,n_k,D) and the
        block's own keys and values (one pair per block; none at the model's last scale, which no
        later block reads).

        Reads the keys of frame t's coarser scales and, if ``temporal``, the memory of earlier
        frames from ``cache``; without it (an intra-coded block, :mod:`progvc.coding.context_modes`) only frame
        t's own keys, as for a GOP's first frame. The cache is not changed: whoever codes the
        block adds the returned keys (``KVCache.add_own``) once it is chosen, so an encoder may
        try a block both ways. Blocks must be stepped in coding order.
        """
        new = []
        lags = cache.visible_lags(t) if temporal else []
        for blk in self.blocks:
            q, key, val = blk.query_kv(x)
            new.append((key, val))
            memory_kv = functools.partial(self._memory_kv, blk)
            x = blk.finish(x, attend_cached(q, (key, val), cache, len(new) - 1, t, k, memory_kv, lags))
        return x, [] if cache.is_last(k) else new  # no later block reads the last scale's keys

    def _memory_kv(self, blk: Block, m: torch.Tensor, lag: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of memory elements m (1,n,D) in block ``blk``, read at ``lag`` frames."""
        return blk.memory_kv(m + self.lag_emb[lag - 1])

    def new_cache(self, grids: list[Grid], n_frames: int, window: int) -> KVCache:
        cfg = self.cfg
        return KVCache(grids, n_frames, window, cfg.local_from, cfg.local_tile, cfg.local_halo)

    # -- training: the whole GOP at once under the block mask --------------------------------
    def forward(self, queries: list[list[torch.Tensor]], memory: list[list[torch.Tensor]],
                window: int | None = None, prev_tokens: torch.Tensor | None = None,
                grids: list[Grid] | None = None) -> torch.Tensor:
        """Teacher-forced logits for a GOP window.

        queries[t][k], memory[t][k]: (B, n_k, D) from ``query_input`` / ``memory_input``;
        prev_tokens (B, T, L): each frame's tokens, for the copy gate (used when window > 0);
        grids: the K token grids (needed for local attention).
        Returns logits (B, T*L, V) ordered (t, k, row, col), L = sum_k n_k.

        The block mask is applied frame by frame: frames go to the batch dimension and each
        frame's keys are its own queries plus the memory of frames t-1 .. t-W' (shifted copies),
        so the attention costs T times less than one dense (T*L) x (T*L*(1+W')) product.
        """
        window = self.cfg.temporal_window if window is None else window
        n_frames, lags = len(queries), range(1, min(window, len(queries) - 1) + 1)
        sizes = [q.shape[1] for q in queries[0]]
        x = torch.stack([torch.cat(frame, dim=1) for frame in queries], dim=1)  # (B, T, L, D)
        b, length = x.shape[0], x.shape[2]
        m = torch.stack([torch.cat(frame, dim=1) for frame in memory], dim=1)  # (B, T, L, D)
        shifted = [torch.cat([m[:, :1].expand(-1, lag, -1, -1), m[:, :-lag]], dim=1) + self.lag_emb[lag - 1]
                   for lag in lags]  # memory of frame t-lag seen from frame t (frames < lag are masked)
        mask = block_mask(n_frames, sizes, window, x.device)  # (T, L, L*(1+W'))
        if self.cfg.local_from > 0:
            if grids is None:
                raise ValueError("local attention needs the token grids")
            near = local_visibility(grids, self.cfg.local_from, self.cfg.local_tile, self.cfg.local_halo)
            mask = mask & near.to(x.device).repeat(1, mask.shape[2] // length)[None]
        mask = mask[None].expand(b, -1, -1, -1).reshape(b * n_frames, 1, length, -1)
        x = x.reshape(b * n_frames, length, -1)
        shifted = [s_.reshape(b * n_frames, length, -1) for s_ in shifted]
        for blk in self.blocks:
            q, k, v = blk.query_kv(x)
            for mem in shifted:
                mk, mv = blk.memory_kv(mem)
                k, v = torch.cat([k, mk], dim=2), torch.cat([v, mv], dim=2)
            x = blk.finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        if prev_tokens is None or window == 0 or n_frames == 1:
            return self.logits(x).reshape(b, n_frames * length, -1)
        prev = torch.cat([prev_tokens[:, :1], prev_tokens[:, :-1]], dim=1)  # frame t-1's tokens at frame t
        copy = (torch.arange(n_frames, device=x.device) > 0).float()[None, :, None, None].expand(b, -1, length, 1)
        out = self.logits(x, prev.reshape(b * n_frames, length), copy.reshape(b * n_frames, length, 1))
        return out.reshape(b, n_frames * length, -1)


def block_mask(n_frames: int, sizes: list[int], window: int, device: torch.device) -> torch.Tensor:
    """Boolean (T, L, L*(1+W')) visibility for each frame t, W' = min(W, T-1).

    Keys are frame t's own queries, then the memory of frame t-l for l = 1..W'. Query (t,k) sees
    query (t,j) and memory (t-l,j) for every j <= k; memory of frames before the GOP start is hidden.
    """
    scale = torch.cat([torch.full((n,), k, device=device) for k, n in enumerate(sizes)])  # (L,)
    coarser = scale[None, :] <= scale[:, None]  # (L, L)
    frames = torch.arange(n_frames, device=device)
    parts = [coarser.expand(n_frames, -1, -1)]
    for lag in range(1, min(window, n_frames - 1) + 1):
        parts.append(coarser[None] & (frames >= lag)[:, None, None])
    return torch.cat(parts, dim=2)
