"""One GOP, scale by scale: the single code path that encoder, decoder and sampler share.

::

    for k in 0..K-1:                 (chunk k = scale k of every frame of the GOP)
        for t in 0..T-1:
            logits = state.logits(t, k)        # (n_k, V): one forward pass, KV cache
            tokens = pick(t, k, logits)        # encoder: known tokens; decoder: range-decode;
            state.commit(t, k, tokens)         #          sampler: draw from the logits

The encoder never computes probabilities in a different way from the decoder (DESIGN.md rule 3):
both run :meth:`GopState.logits` with the same inputs in the same order, so the float32 logits,
and hence the quantised tables, are bitwise equal on the same device and dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .determinism import pinned_threads
from .models.context import ContextModel
from .models.quantizer import Grid, MultiScaleResidualVQ

KV = tuple[torch.Tensor, torch.Tensor]
Pick = Callable[[int, int, torch.Tensor], np.ndarray]


class GopState:
    """Running reconstruction and attention caches of one GOP during coding.

    f_hat: (T,C,h,w) cumulative latent per frame. own_kv[t][k][b]: keys/values of block b for the
    query elements of (t,k). mem[t][k]: memory elements (1,n_k,D); mem_kv[t][k][lag-1][b]: their
    keys/values for a query frame ``lag`` frames later.
    """

    def __init__(self, context: ContextModel, vq: MultiScaleResidualVQ, grids: list[Grid],
                 n_frames: int, *, temporal: bool = True) -> None:
        self.ctx, self.vq, self.grids, self.n_frames = context, vq, grids, n_frames
        self.window = context.cfg.temporal_window if temporal else 0
        dev = context.sos.device
        self.f_hat = torch.zeros(n_frames, vq.cfg.latent_channels, *grids[-1], device=dev)
        self.tokens: list[list[torch.Tensor]] = [[] for _ in grids]  # tokens[k][t]: (h_k, w_k)
        self.own_kv: list[list[list[KV]]] = [[] for _ in range(n_frames)]
        self.mem: list[list[torch.Tensor]] = [[] for _ in range(n_frames)]
        self.mem_kv: list[list[list[list[KV]]]] = [[] for _ in range(n_frames)]

    def logits(self, t: int, k: int) -> torch.Tensor:
        """Logits of the tokens of (frame t, scale k), (n_k, V) float32."""
        grid = self.grids[k]
        prev_mem = self.mem[t - 1][k] if t > 0 and self.window > 0 else None
        x = self.ctx.query_input(self.f_hat[t:t + 1] if k > 0 else None, k, grid, prev_mem)
        visible = [(t - lag, lag) for lag in range(1, self.window + 1) if t - lag >= 0]
        new_kv: list[KV] = []
        for b, blk in enumerate(self.ctx.blocks):
            q, key, val = blk.query_kv(x)
            new_kv.append((key, val))
            keys = [kv[b][0] for kv in self.own_kv[t]] + [key]
            vals = [kv[b][1] for kv in self.own_kv[t]] + [val]
            for frame, lag in visible:
                for j in range(k + 1):
                    mk, mv = self.mem_kv[frame][j][lag - 1][b]
                    keys.append(mk)
                    vals.append(mv)
            x = blk.finish(x, q, torch.cat(keys, dim=2), torch.cat(vals, dim=2))
        self.own_kv[t].append(new_kv)
        prev = self.tokens[k][t - 1].reshape(1, -1) if t > 0 and self.window > 0 else None
        return self.ctx.logits(x, prev)[0]

    def commit(self, t: int, k: int, tokens: np.ndarray) -> None:
        """Accept the tokens (n_k,) of (t,k): update f_hat and, with temporal context, the memory."""
        grid = self.grids[k]
        r = torch.as_tensor(tokens, device=self.f_hat.device, dtype=torch.long).view(1, *grid)
        self.f_hat[t:t + 1] += self.vq.embed_scale(r, k, self.grids)
        self.tokens[k].append(r[0])
        if self.window == 0:
            return
        m = self.ctx.memory_input(r, self.f_hat[t:t + 1], k, grid, self.vq.codebook)
        self.mem[t].append(m)
        lag_kv = []
        for lag in range(1, self.window + 1):
            if t + lag < self.n_frames:
                lag_kv.append([blk.memory_kv(m + self.ctx.lag_emb[lag - 1]) for blk in self.ctx.blocks])
        self.mem_kv[t].append(lag_kv)

    def run(self, scales: range, pick: Pick) -> None:
        """Code the given scales (they must continue where the state stands) for every frame.

        On CPU this runs on one thread, so the logits are the same whatever the machine's core
        count (see :func:`progvc.determinism.pinned_threads`).
        """
        with pinned_threads(self.f_hat.device):
            for k in scales:
                for t in range(self.n_frames):
                    self.commit(t, k, pick(t, k, self.logits(t, k)))

    def token_maps(self) -> list[torch.Tensor]:
        """Coded tokens so far, one (T,h_k,w_k) int64 map per scale."""
        return [torch.stack(ts) for ts in self.tokens if ts]


def teacher_forced_logits(context: ContextModel, vq: MultiScaleResidualVQ, tokens: list[torch.Tensor],
                          grids: list[Grid], *, temporal: bool = True) -> torch.Tensor:
    """Logits of a whole batch of GOP windows in one pass (training), (B, T*L, V).

    tokens[k]: (B,T,h_k,w_k) int64. Builds the same query and memory elements as :class:`GopState`
    and runs :meth:`ContextModel.forward` under the block mask, so training sees the inference
    dependencies exactly. Targets in the same order: ``flatten_targets(tokens)``.
    """
    b, n_frames = tokens[0].shape[:2]
    window = context.cfg.temporal_window if temporal else 0
    contrib = [vq.embed_scale(r.flatten(0, 1), k, grids) for k, r in enumerate(tokens)]  # (B*T,C,h,w)
    upto = torch.stack(contrib).cumsum(0)  # (K, B*T, C, h, w): f_hat_{<=k}
    mem = [context.memory_input(r.flatten(0, 1), upto[k], k, grids[k], vq.codebook)
           for k, r in enumerate(tokens)]  # (B*T, n_k, D)
    mem = [m.unflatten(0, (b, n_frames)) for m in mem]
    queries, memory = [], []
    for t in range(n_frames):
        row = []
        for k, grid in enumerate(grids):
            prev = upto[k - 1].unflatten(0, (b, n_frames))[:, t] if k > 0 else None
            prev_mem = mem[k][:, t - 1] if t > 0 and window > 0 else None
            x = context.query_input(prev, k, grid, prev_mem)
            row.append(x.expand(b, -1, -1))
        queries.append(row)
        memory.append([m[:, t] for m in mem])
    prev_tokens = flatten_targets(tokens).view(b, n_frames, -1)
    return context(queries, memory, window=window, prev_tokens=prev_tokens)


def flatten_targets(tokens: list[torch.Tensor]) -> torch.Tensor:
    """tokens[k] (B,T,h_k,w_k) -> (B, T*L) in the (t, k, row, col) order of the logits."""
    b, n_frames = tokens[0].shape[:2]
    return torch.cat([r.reshape(b, n_frames, -1) for r in tokens], dim=2).reshape(b, -1)
