"""One GOP, scale by scale: the single code path that encoder, decoder and sampler share.

::

    for k in 0..K-1:                 (chunk k = scale k of every frame of the GOP)
        for t in 0..T-1:
            logits = state.logits(t, k)        # (n_k, V): one forward pass, KV cache
            tokens = pick(t, k, logits)        # encoder: known tokens; decoder: range-decode;
            state.commit(t, k, tokens)         #          sampler: draw from the logits

A pick may code its block in intra mode instead (:mod:`progvc.coding.context_modes`): it asks for
``state.logits(t, k, intra=True)`` and hands them to ``state.use``; the encoder scores both, the
decoder reads the flag first and runs only the mode it names (logits are made lazily).

The encoder never computes probabilities in a different way from the decoder (DESIGN.md rule 3):
both run :meth:`GopState.logits` with the same inputs in the same order, so the float32 logits,
and hence the quantised tables, are bitwise equal on the same device and dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..models.cached_attention import KV
from ..models.context import ContextModel
from ..models.exact_ops import FRAC, full_precision
from ..models.quantizer import Grid, MultiScaleResidualVQ
from ..runtime.determinism import pinned_threads
from ..runtime.memory import TRIM_TOKENS, logits_kept, return_freed, row_slices


class RowLogits:
    """The logits (n_k, V) float32 of one (t, k), made a slice of rows at a time: at the finest
    scale of a 1080p frame all rows at once take 0.5 GiB. ``prev``: the previous frame's tokens
    (1, n_k) for the copy gate, or None. ``intra``: made without earlier frames (a GOP's first
    frame, a stream without temporal context, or a block coded in intra mode, :mod:`progvc.coding.context_modes`).

    The blocks run when a row is first asked for (or the block is committed): ``run`` gives their
    output (1, n_k, D) and the block's own keys (``keys``, added to the cache only if the block
    is coded with these logits), so a decoder that reads an intra block never runs the other mode.

    Encoder, decoder and sampler read them only through :func:`logit_rows` (the same slices of
    :func:`progvc.runtime.memory.row_slices` everywhere), so they see bitwise the same values; ``full()``
    joins the slices for whoever needs the whole table (the "mean" fill)."""

    def __init__(self, context: ContextModel, n_rows: int, run: Callable[[], tuple[torch.Tensor, list[KV]]],
                 prev: torch.Tensor | None, intra: bool) -> None:
        self.ctx, self.prev, self.intra = context, prev, intra
        self.shape = (n_rows, context.head.out_features)
        self._run: Callable[[], tuple[torch.Tensor, list[KV]]] | None = run
        self._x: torch.Tensor | None = None
        self.keys: list[KV] = []
        # the encoder reads every slice twice (RD choice, range coder): small tables are kept
        self._kept: dict[int, torch.Tensor] | None = {} if logits_kept(*self.shape) else None

    def hidden(self) -> torch.Tensor:
        """The blocks' output (1, n_k, D), run on first use."""
        if self._run is not None:
            self._x, self.keys = self._run()
            self._run = None
        return self._x

    def rows(self, rows: slice) -> torch.Tensor:
        """Logits of the rows ``rows`` (one of ``row_slices(*shape)``), (n_rows, V) float32."""
        if self._kept is not None and rows.start in self._kept:
            return self._kept[rows.start]
        x = self.hidden()
        out = self.ctx.logits(x[:, rows], None if self.prev is None else self.prev[:, rows])[0]
        if self._kept is not None:
            self._kept[rows.start] = out
        return out

    def full(self) -> torch.Tensor:
        return torch.cat([part for _, part in logit_rows(self)])


def logit_rows(logits: torch.Tensor | RowLogits) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, logits of those rows) slice by slice, of a :class:`RowLogits` or a plain (n, V) tensor."""
    for rows in row_slices(*logits.shape):
        yield rows, logits[rows] if isinstance(logits, torch.Tensor) else logits.rows(rows)


Pick = Callable[[int, int, RowLogits], np.ndarray | None]


class GopState:
    """Running reconstruction and attention cache of one GOP during coding.

    f_hat: (T,C,h,w) cumulative latent per frame. tokens[k][t]: (h_k, w_k) int64 tokens of (t,k)
    (for a scale filled with expected embeddings, the likeliest token: the copy gate's reference).
    ``cache`` holds the attention keys and the memory elements, only as long as a later block can
    read them (see :class:`~progvc.models.cached_attention.KVCache`); :meth:`release` drops the
    rest once no further scale will be coded. ``lam`` is the encoder's rate-distortion
    multiplier, which a model with ``rd_conditioning`` is told.
    """

    def __init__(self, context: ContextModel, vq: MultiScaleResidualVQ, grids: list[Grid],
                 n_frames: int, *, temporal: bool = True, lam: float = 0.0) -> None:
        self.ctx, self.vq, self.grids, self.n_frames = context, vq, grids, n_frames
        self.window = context.cfg.temporal_window if temporal else 0
        dev = context.sos.device
        self.f_hat = torch.zeros(n_frames, vq.cfg.latent_channels, *grids[-1], device=dev)
        # a portable model reads its own integer copy of f_hat (the float one is for the pictures)
        self.ctx_f_hat = torch.zeros_like(self.f_hat) if self.portable else self.f_hat
        self.tokens: list[list[torch.Tensor]] = [[] for _ in grids]  # tokens[k][t]: (h_k, w_k)
        self.intra: list[list[bool]] = [[] for _ in grids]  # intra[k][t]: (t,k) coded without earlier frames
        self._block: RowLogits | None = None  # the logits the block being coded is coded under
        self.cache = context.new_cache(grids, n_frames, self.window)
        self.rd = context.rd_embedding(lam)

    @property
    def portable(self) -> bool:
        """Whether the context model computes in exact integers (:mod:`progvc.models.portable`)."""
        return self.ctx.portable

    def logits(self, t: int, k: int, *, intra: bool = False) -> RowLogits:
        """Logits of the tokens of (frame t, scale k), (n_k, V) float32, made slice by slice; with
        ``intra`` as if frame t opened the temporal context (the block's intra mode,
        :mod:`progvc.coding.context_modes`). Changes nothing until the block is committed."""
        grid = self.grids[k]
        temporal = t > 0 and self.window > 0 and not intra
        f_prev = self.ctx_f_hat[t:t + 1] if k > 0 else None

        def run() -> tuple[torch.Tensor, list[KV]]:
            prev_mem = self.cache.mem[t - 1][k] if temporal else None
            x = self.ctx.query_input(f_prev, k, grid, prev_mem, self.rd)
            return self.ctx.step(x, self.cache, t, k, temporal=temporal)

        prev = self.tokens[k][t - 1].reshape(1, -1) if temporal else None
        return RowLogits(self.ctx, grid[0] * grid[1], run, prev, not temporal)

    def use(self, logits: RowLogits) -> None:
        """Code the block :meth:`run` is at under ``logits`` (from :meth:`logits` of the same (t,k),
        another mode) instead of the ones it offered."""
        self._block = logits

    def commit(self, t: int, k: int, tokens: np.ndarray) -> None:
        """Accept the tokens (n_k,) of (t,k): update f_hat and, with temporal context, the memory."""
        self._accept(t, k)
        grid = self.grids[k]
        r = torch.as_tensor(tokens, device=self.f_hat.device, dtype=torch.long).view(1, *grid)
        self.f_hat[t:t + 1] += self.vq.embed_scale(r, k, self.grids)
        if self.portable:
            self.ctx_f_hat[t:t + 1] += self.ctx.embed_scale(r, k, self.grids)
        self._remember(t, k, r, None)

    def commit_expected(self, t: int, k: int, logits: RowLogits | torch.Tensor) -> None:
        """Fill (t,k) with its expected embedding under the softmax of ``logits`` (n_k, V):
        sum_v p_v e_v goes through the scale's upsampling and phi (both linear, so this is the
        expected contribution) into f_hat and into the memory; the likeliest token stands in for
        the copy gate. Made a slice of rows at a time, like everything that reads logits."""
        self._accept(t, k)
        grid = self.grids[k]
        if self.portable:  # the expectation under the integer table, in integers
            parts = [(self.ctx.expected_embedding(part), part.argmax(1)) for _, part in logit_rows(logits)]
        else:
            codebook = self.vq.codebook.weight
            parts = [(torch.softmax(part, dim=-1).to(self.f_hat.dtype) @ codebook, part.argmax(1))
                     for _, part in logit_rows(logits)]
        e = torch.cat([p[0] for p in parts])  # (n_k, C)
        vectors = e.t().reshape(1, -1, *grid)
        if self.portable:
            self.ctx_f_hat[t:t + 1] += self.ctx.embed_vectors(vectors, k, self.grids)
            vectors = vectors * (1.0 / (1 << FRAC))
        self.f_hat[t:t + 1] += self.vq.embed_vectors(vectors, k, self.grids)
        self._remember(t, k, torch.cat([p[1] for p in parts]).view(1, *grid), e[None])

    def _accept(self, t: int, k: int) -> None:
        """The block (t,k) is coded under ``self._block``: its keys join the cache (before f_hat
        changes: logits not yet made are made from the state they were asked in)."""
        block, self._block = self._block, None
        block.hidden()
        self.cache.add_own(t, k, block.keys)
        self.cache.done(t, k)
        self.intra[k].append(block.intra)

    def _remember(self, t: int, k: int, r: torch.Tensor, embedded: torch.Tensor | None) -> None:
        self.tokens[k].append(r[0])
        if not self.cache.has_reader(t):  # no temporal context, or the GOP's last frame
            return
        m = self.ctx.memory_input(r, self.ctx_f_hat[t:t + 1], k, self.grids[k], self.vq.codebook, embedded)
        self.cache.add_memory(t, m)

    def run(self, scales: range, pick: Pick) -> None:
        """Code the given scales (they must continue where the state stands) for every frame.

        ``pick(t, k, logits)`` returns the tokens (n_k,) of (t,k), or None when it has filled
        (t,k) itself (``commit_expected``). On CPU a float model runs it on one thread, so its
        logits are the same whatever the machine's core count (see
        :func:`progvc.runtime.determinism.pinned_threads`); a portable model's logits are the same on
        any number of threads (its sums are exact), so it uses them all.
        """
        with full_precision() if self.portable else pinned_threads(self.f_hat.device):
            for k in scales:
                self._trim()  # the last scale's temporaries, before this one's (larger) ones
                for t in range(self.n_frames):
                    self._block = self.logits(t, k)
                    tokens = pick(t, k, self._block)
                    if tokens is not None:
                        self.commit(t, k, tokens)

    def fork(self) -> GopState:
        """A copy that can run further scales without changing this one: the lists and f_hat are
        copied, the cached key/value tensors (never modified in place) are shared."""
        new = copy.copy(self)
        new.f_hat = self.f_hat.clone()
        new.ctx_f_hat = self.ctx_f_hat.clone() if self.portable else new.f_hat
        new.tokens = [list(ts) for ts in self.tokens]
        new.intra = [list(m) for m in self.intra]
        new.cache = self.cache.fork()
        return new

    def release(self) -> None:
        """Drop the attention cache: no further scale will be coded (before synthesis, so that the
        caches and ``g_s`` are not alive at once). f_hat and the tokens stay."""
        self.cache.clear()
        self._trim()

    def _trim(self) -> None:
        """Hand freed memory back to the system, for frames large enough to need it (``TRIM_TOKENS``)."""
        if self.grids[-1][0] * self.grids[-1][1] >= TRIM_TOKENS:
            return_freed()

    def token_maps(self) -> list[torch.Tensor]:
        """Coded tokens so far, one (T,h_k,w_k) int64 map per scale."""
        return [torch.stack(ts) for ts in self.tokens if ts]


def teacher_forced_logits(context: ContextModel, vq: MultiScaleResidualVQ, tokens: list[torch.Tensor],
                          grids: list[Grid], *, temporal: bool = True,
                          lam: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Logits of a whole batch of GOP windows in one pass (training), (B, T*L, V).

    tokens[k]: (B,T,h_k,w_k) int64; lam: the encoder's lambda (float, or (B,) per window).
    Builds the same query and memory elements as :class:`GopState`
    and runs :meth:`ContextModel.forward` under the block mask, so training sees the inference
    dependencies exactly. Targets in the same order: ``flatten_targets(tokens)``.
    """
    b, n_frames = tokens[0].shape[:2]
    window = context.cfg.temporal_window if temporal else 0
    rd = context.rd_embedding(lam)
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
            x = context.query_input(prev, k, grid, prev_mem, rd)
            row.append(x.expand(b, -1, -1))
        queries.append(row)
        memory.append([m[:, t] for m in mem])
    prev_tokens = flatten_targets(tokens).view(b, n_frames, -1)
    return context(queries, memory, window=window, prev_tokens=prev_tokens, grids=grids)


def flatten_targets(tokens: list[torch.Tensor]) -> torch.Tensor:
    """tokens[k] (B,T,h_k,w_k) -> (B, T*L) in the (t, k, row, col) order of the logits."""
    b, n_frames = tokens[0].shape[:2]
    return torch.cat([r.reshape(b, n_frames, -1) for r in tokens], dim=2).reshape(b, -1)
