"""Rate-distortion token choice: the encoder picks, per token, the code that minimises D + lambda R.

::

    for k in 0..K-1, t in 0..T-1:           (GopState.run: the same order and code path as the decoder)
        logits = state.logits(t, k)                                    (n_k, V)
        z      = down_k(f_t - f_hat_{t,<k})                             (n_k, C) the residual to code
        r      = argmin_v  area_k * ||z - e_v||^2  +  lambda * (-log2 p(v))
        state.commit(t, k, r)

``-log2 p(v)`` is what the range coder will spend on v, from the context model's own logits; the
tokens of one (t,k) are conditionally independent given their context (coarser scales, earlier
frames), so the choice is exact token by token. ``area_k = h w / (h_k w_k)`` turns a scale-k
codeword error into the squared error it leaves on the full latent grid (area-downsampling
averages ``area_k`` cells, upsampling spreads the codeword back over them), so one lambda prices
every scale alike (scaling the coarse scales' lambda by 1/4 or 4, or choosing only the three
finest scales, measured on the same rate-quality curve: benchmarks/README.md).

Why this is also the inter-frame coder: the context model's copy gate makes "the token this place
had in the previous frame" cheap, so wherever content is unchanged or barely changed (camera noise,
slow drift) the repeat wins and an inter frame costs a fraction of an intra one; a model trained
on these tokens (v4) prices repeats lower still (benchmarks/README.md, "Inter frames").

Block skip (:mod:`progvc.coding.skip`) goes one step further for frames after the first: a whole block
of tokens that repeats the previous frame's costs one adaptive flag instead of a repeat per
token. :meth:`TokenChooser.choose` makes that decision per block from the same scores. And where
the previous frame misleads the context model (motion, a cut), the whole (t, k) may be coded in
intra mode (:mod:`progvc.coding.context_modes`): the chooser scores the block under both modes' logits and keeps
the lower total ``D + lambda R``.

The frames after a GOP's first are chosen at ``lambda * inter_lambda_scale`` (default 2,
:data:`progvc.coding.options.DEFAULT_INTER_LAMBDA_SCALE`), as conventional encoders code P frames a few
quantiser steps below their I frame: the first frame is what every later one copies and is
predicted from, so its bits buy quality for the whole GOP. Only the encoder knows the scale; each
GOP records the first frame's lambda, which conditions the context model.

Every scale but the finest is chosen at a further multiple, ``coarse_lambda_scale`` (one for a
GOP's first frame, one for its later frames; default
:data:`progvc.coding.options.DEFAULT_COARSE_LAMBDA_SCALE`). The per-scale choice above prices a coarse
token's error as if it stayed in the picture, but in a full stream the finer scales correct it,
while a later frame can copy its coarse tokens from the frame before for almost nothing; and a
truncated stream, which carries only coarse scales, is made mostly of those cheap copies.

``lambda = 0`` is the nearest codeword (the greedy tokenizer); the user's knob is ``quality``
(:mod:`progvc.coding.options`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..models.quantizer import Grid, MultiScaleResidualVQ, resize
from .context_modes import ModeModel
from .skip import FlagModel, layout
from .state import RowLogits, logit_rows


@dataclass(frozen=True)
class Choice:
    """What the encoder sends for one (t, k): ``tokens`` (n_k,) int64 all of them; with block skip
    (:mod:`progvc.coding.skip`) also the block ``flags`` (n_blocks,) bool and the (n_blocks, 2) tables they
    are coded with, and ``coded``: the indices of the tokens that are range-coded (the others
    are copies). ``flags`` None: every token is coded. ``intra``: the block's context mode
    (:mod:`progvc.coding.context_modes`) and the (1, 2) table its flag is coded with; None where the stream
    codes no mode flag."""

    tokens: np.ndarray
    flags: np.ndarray | None = None
    flag_tables: np.ndarray | None = None
    coded: np.ndarray | None = None
    intra: bool | None = None
    mode_table: np.ndarray | None = None


class TokenChooser:
    """The encoder's ``pick`` for :meth:`progvc.coding.state.GopState.run`.

    f: the GOP's latent (T,C,h,w); ``f_hat`` and ``tokens`` (tokens[k][t]: (h_k,w_k)) are read
    from the state as it grows. ``skip_block`` > 0 lets frames after the first copy B x B blocks of
    the previous frame's tokens (:mod:`progvc.coding.skip`). ``intra`` (intra[k][t], the state's modes
    as they are committed) makes the chooser decide each later frame's context mode and code its
    flag (:mod:`progvc.coding.context_modes`). ``coarse`` (T,C,h,w), if given, is the latent the scales below
    ``split`` code instead of f (prefix-aware refinement, :func:`progvc.stream.scales.prefix_terms`).
    After the run, ``bits[t, k]`` holds the model's -log2 p of what was sent (tokens and flags:
    the estimate beside the real bytes).
    """

    def __init__(self, vq: MultiScaleResidualVQ, grids: list[Grid], f: torch.Tensor, lam: float,
                 f_hat: torch.Tensor, tokens: list[list[torch.Tensor]] | None = None, skip_block: int = 0,
                 intra: list[list[bool]] | None = None, inter_lambda_scale: float = 1.0,
                 coarse: torch.Tensor | None = None, split: int = 0,
                 coarse_lambda_scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.vq, self.grids, self.f, self.lam, self.f_hat = vq, grids, f, lam, f_hat
        self.coarse, self.split = coarse, split if coarse is not None else 0
        self.inter_lambda_scale, self.coarse_lambda_scale = inter_lambda_scale, coarse_lambda_scale
        self.finest = len(grids) - 1
        self.tokens, self.skip_block = tokens, skip_block if tokens is not None else 0
        self.intra = intra
        e = vq.codebook.weight
        self.e, self.e2 = e, (e * e).sum(1)  # (V, C), (V,)
        self.bits = np.zeros((f.shape[0], len(grids)))
        self.flag_models = [FlagModel() for _ in grids]  # one per chunk
        self.mode_models = [ModeModel() for _ in grids]

    def residual(self, t: int, k: int) -> torch.Tensor:
        """(n_k, C): what scale k of frame t is to code, the latent minus what is coded so far."""
        f = self.coarse if k < self.split else self.f
        z = resize(f[t:t + 1] - self.f_hat[t:t + 1], self.grids[k])  # (1, C, h_k, w_k)
        return z.flatten(2)[0].t()

    def distortion(self, t: int, k: int, rows: slice = slice(None), z: torch.Tensor | None = None) -> torch.Tensor:
        """(n_rows, V): squared error each code would leave on the latent, area-weighted (see above),
        for the tokens ``rows`` of scale k (``z``: :meth:`residual`, if already at hand)."""
        flat = (self.residual(t, k) if z is None else z)[rows]
        (h, w), (hk, wk) = self.grids[-1], self.grids[k]
        # ||z||^2 is the same for every code of a row: left out of the argmin, kept out of the sum
        return (self.e2[None, :] - 2 * flat @ self.e.t()) * (h * w / (hk * wk))

    def __call__(self, t: int, k: int, logits: torch.Tensor | RowLogits) -> np.ndarray:
        return self.choose(t, k, logits).tokens

    def lam_of(self, t: int, k: int) -> float:
        """The multiplier the choices of (t, k) use: ``lam`` for a GOP's first frame, ``lam *
        inter_lambda_scale`` for the frames after it; at every scale but the finest, times
        ``coarse_lambda_scale[0]`` in the first frame and ``coarse_lambda_scale[1]`` in the others."""
        lam = self.lam if t == 0 else self.lam * self.inter_lambda_scale
        return lam * self.coarse_lambda_scale[t > 0] if k < self.finest else lam

    def codes_mode(self, t: int) -> bool:
        """Whether frame t's blocks open with a context-mode flag."""
        return self.intra is not None and t > 0

    def choose(self, t: int, k: int, logits: torch.Tensor | RowLogits,
               intra_logits: torch.Tensor | RowLogits | None = None) -> Choice:
        """The tokens of (t, k) (and block flags where skip is on) that minimise D + lambda R; where
        the block codes a mode flag (:meth:`codes_mode`), also its mode: ``logits`` are the temporal
        mode's and ``intra_logits`` the intra mode's (None: not tried)."""
        if not self.codes_mode(t):
            choice, _, bits = self._choose(t, k, logits, self.flag_models[k])
            self.bits[t, k] += bits
            return choice
        trials = [(logits, self.flag_models[k].fork())]
        if intra_logits is not None:
            trials.append((intra_logits, self.flag_models[k].fork()))
        scored = [self._choose(t, k, lg, flag_model) for lg, flag_model in trials]
        intra, table, mode_bits = self.mode_models[k].decide(
            scored[0][1:], scored[1][1:] if len(scored) > 1 else None, self.lam_of(t, k),
            ModeModel.context(t, self.intra[k]))
        choice, _, bits = scored[int(intra)]
        self.flag_models[k] = trials[int(intra)][1]
        self.bits[t, k] += bits + mode_bits
        return replace(choice, intra=intra, mode_table=table)

    def _choose(self, t: int, k: int, logits: torch.Tensor | RowLogits, flag_model: FlagModel
                ) -> tuple[Choice, float, float]:
        """The choice under ``logits`` (skip flags decided with ``flag_model``, which learns them),
        its total score J (D + lambda R without the rows' common ||z||^2) and its bits."""
        z, lam = self.residual(t, k), self.lam_of(t, k)
        prev = self.tokens[k][t - 1].reshape(-1) if self.skip_block and t > 0 else None
        best, j_best, bits_best, d_prev = [], [], [], []
        for rows, part in logit_rows(logits):  # (n_k, V) float temporaries a slice at a time
            cost_bits = -torch.log_softmax(part.float(), dim=-1) / math.log(2)
            dist = self.distortion(t, k, rows, z)
            score = dist + lam * cost_bits if lam > 0 else dist
            r = score.argmin(dim=1)
            best.append(r)
            bits_best.append(cost_bits.gather(1, r[:, None])[:, 0])
            j_best.append(score.gather(1, r[:, None])[:, 0])
            if prev is not None:
                d_prev.append(dist.gather(1, prev[rows, None])[:, 0])
        tokens = torch.cat(best).cpu().numpy()
        bits = torch.cat(bits_best).double().cpu().numpy()
        j_tokens = torch.cat(j_best).detach().double().cpu().numpy()
        if prev is None:
            return Choice(tokens), float(j_tokens.sum()), float(bits.sum())
        lay = layout(*self.grids[k], self.skip_block)
        j_code = np.bincount(lay.block, j_tokens, minlength=lay.n)
        j_skip = np.bincount(lay.block, torch.cat(d_prev).detach().double().cpu().numpy(), minlength=lay.n)
        flags, tables, flag_bits = flag_model.decide(j_skip, j_code, lam, lay)
        copied = flags[lay.block]
        tokens = np.where(copied, prev.cpu().numpy(), tokens)
        coded = np.flatnonzero(~copied)
        j = float(np.where(flags, j_skip, j_code).sum()) + lam * flag_bits
        return Choice(tokens, flags, tables, coded), j, flag_bits + float(bits[coded].sum())
