"""How a decoder makes the scales that were not sent: ``fill="mean" | "sample" | "none"``.

::

    scales 1..n sent                    scales n+1..K not sent, in coding order (k, then t)
    ─────────────────                   ───────────────────────────────────────────────────
    range-decoded tokens     "none":    nothing: f_hat is the sum of the sent scales
                             "mean":    the expected embedding sum_v p(v) e_v (GopState.commit_expected),
                                        the latent estimate with the least squared error under the model,
                                        carried on as the next scale's context
                             "sample":  a seeded draw from p (temperature, top-k, top-p), of
                                        which the picture keeps only the finest band (below)

Sampling works on the same float32 logits the coder uses, in float64 on the host with a NumPy
PCG64 generator, so a (stream, seed) pair gives the same frames wherever the logits agree. Each
GOP gets its own generator, ``default_rng([seed, gop_index])``, so GOPs decode independently.
The synthesis is told how many octaves of scales were *sent* (:func:`progvc.stream.scales.missing_octaves`).

"sample" is a hybrid: the picture of the sent scales (what "none" shows) plus the finest band of
the draw's picture, ``draw - gaussian(draw, DETAIL_SIGMA)`` (:func:`add_detail`). The draw's
texture is not where the source has it, and a whole draw costs 0.08-0.10 MS-SSIM against "none"
on dev; its finest band alone gives the detail (the grain a blur lacks) at a small part of that
cost, because MS-SSIM and PSNR judge mostly the coarser bands, which stay those of the sent
scales (benchmarks/README.md, "Fill modes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.errors import ConfigError
from ..stream import format as bs
from .entropy import PROB_BITS
from .options import DEFAULT_FILL, FILL_MODES
from .state import GopState, Pick, RowLogits, logit_rows


@dataclass(frozen=True)
class SamplingOptions:
    """temperature > 0; top_k = 0 keeps every token; top_p = 1 disables nucleus filtering."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.temperature <= 100:
            raise ConfigError(f"temperature must be in (0, 100], got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise ConfigError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


DEFAULT_SAMPLING = SamplingOptions(temperature=0.3, top_k=16)
"""The sampling parameters ``encode`` stores in a stream unless told otherwise (a stream without
them means these: docs/FORMAT.md). Chosen for the whole draw, before "sample" kept only its finest
band, on two dev clips at n = 7 and 8 with progvc-small-v4 among temperature 1 (v3's default), 0.5,
and 0.3 with top-k 16: the last kept the most MS-SSIM (0.514 / 0.331 at n = 8 against 0.485 /
0.304 at temperature 0.5) with about 2-3 times the detail ratio of fill="mean"."""


@dataclass(frozen=True)
class FillOptions:
    """A decoder's fill mode, sampling parameters and seed (the stream's unless overridden)."""

    mode: str = DEFAULT_FILL
    sampling: SamplingOptions = SamplingOptions()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in FILL_MODES:
            hint = " (sample=True/False became fill='sample'/'none')" if isinstance(self.mode, bool) else ""
            raise ConfigError(f"fill must be one of {', '.join(map(repr, FILL_MODES))}, got {self.mode!r}{hint}")

    @classmethod
    def resolve(cls, header: bs.StreamHeader | None, fill: str | None = None, seed: int | None = None,
                temperature: float | None = None, top_k: int | None = None, top_p: float | None = None
                ) -> FillOptions:
        """The stream's defaults (sampling parameters, seed) with the caller's overrides on top.
        ``header=None`` checks the overrides before any stream is at hand (``DEFAULT_SAMPLING``
        and seed 0 stand in for the stream's)."""
        if seed is not None:
            seed = check_seed(seed)
        base = DEFAULT_SAMPLING if header is None else SamplingOptions(header.temperature, header.top_k, header.top_p)
        sampling = SamplingOptions(base.temperature if temperature is None else temperature,
                                   base.top_k if top_k is None else top_k, base.top_p if top_p is None else top_p)
        default_seed = 0 if header is None else header.seed
        return cls(DEFAULT_FILL if fill is None else fill, sampling, default_seed if seed is None else seed)


def check_seed(seed: object) -> int:
    """A sampling seed: an integer in the stream's u64 range, else ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= bs.MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    return int(seed)


def gop_generator(seed: int, gop: int) -> np.random.Generator:
    return np.random.default_rng([seed, gop])


def sample_tokens(logits: torch.Tensor, opts: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """Draw one token per row. logits (n,V) -> int64 (n,).

    Each row's probabilities become integer counts (``floor(p * 2**PROB_BITS)``, the likeliest
    one more) and one uniform draw per row picks a token from their running sum. With a top-k
    that leaves exactly k tokens in every row (no tie at the k-th logit), the work is done on the
    k kept columns only, in column order, which draws the same tokens without the (n,V) float64
    temporaries; otherwise on whole rows.
    """
    z32 = logits.detach().to(device="cpu", dtype=torch.float32).numpy()
    n_rows, vocab = z32.shape
    cols = None
    if 0 < opts.top_k < vocab:
        kth = np.partition(z32, vocab - opts.top_k, axis=1)[:, vocab - opts.top_k, None]
        keep = z32 >= kth
        if (keep.sum(axis=1) == opts.top_k).all():
            cols = np.nonzero(keep)[1].reshape(n_rows, opts.top_k)  # ascending within each row
            z = np.take_along_axis(z32, cols, axis=1).astype(np.float64) / opts.temperature
        else:
            z = np.where(keep, z32.astype(np.float64) / opts.temperature, -np.inf)
    else:
        z = z32.astype(np.float64) / opts.temperature
    picked = draw_rows(z, opts.top_p, rng)
    tokens = picked if cols is None else cols[np.arange(n_rows), picked]
    return tokens.astype(np.int64)


def draw_rows(z: np.ndarray, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """One column per row of tempered float64 logits z (n, m) (-inf where top-k left a token out),
    drawn by ``top_p`` nucleus filtering, integer counts and one uniform draw per row -> (n,)."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        drop_sorted = np.cumsum(sorted_p, axis=1) - sorted_p >= top_p  # mass before it already enough
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=1)
        p = np.where(drop, 0.0, p)
    counts = np.floor(p * float(1 << PROB_BITS)).astype(np.int64)
    counts[np.arange(len(counts)), p.argmax(axis=1)] += 1  # never an all-zero row
    cum = np.cumsum(counts, axis=1)
    u = np.floor(rng.random(len(counts)) * cum[:, -1]).astype(np.int64)
    return (cum <= u[:, None]).sum(axis=1)


def sample_exact(logits: torch.Tensor, opts: SamplingOptions, rng: np.random.Generator,
                 weights: Callable[[torch.Tensor, float], np.ndarray]) -> np.ndarray:
    """The portable model's draw (:mod:`progvc.models.portable`): one token per row of logits (n, V)
    that are integer multiples of a power of two, -> int64 (n,).

    ``weights(logits, temperature)`` gives integer weights (n, V) of the tempered softmax; top-k keeps
    the tokens whose logit is at least the k-th largest (ties kept), the nucleus drops a token once the
    weights before it (largest first, ties by index) reach ``top_p`` of the row's total, and one
    uniform per row picks from the running sum. Only integer sums and single IEEE operations: the same
    tokens on every machine."""
    w = weights(logits, opts.temperature)
    n_rows, vocab = w.shape
    if 0 < opts.top_k < vocab:
        z = logits.detach().to("cpu", torch.float32).numpy()
        kth = np.partition(z, vocab - opts.top_k, axis=1)[:, vocab - opts.top_k, None]
        w = np.where(z >= kth, w, 0)
    if opts.top_p < 1:
        order = np.argsort(-w, axis=1, kind="stable")
        sorted_w = np.take_along_axis(w, order, axis=1)
        before = np.cumsum(sorted_w, axis=1) - sorted_w
        drop = np.zeros(w.shape, dtype=bool)
        np.put_along_axis(drop, order, before >= opts.top_p * sorted_w.sum(axis=1, keepdims=True), axis=1)
        w = np.where(drop, 0, w)
    cum = np.cumsum(w, axis=1)
    u = np.floor(rng.random(n_rows) * cum[:, -1]).astype(np.int64)
    return (cum <= u[:, None]).sum(axis=1).astype(np.int64)


DETAIL_SIGMA = 1.2
"""Standard deviation in pixels of the Gaussian that splits a draw's picture into the band that
"sample" keeps (what the Gaussian removes) and the rest. Chosen on four dev clips at n = 5..9 among
0.8, 1.2 and 2.0: at 1.2 MS-SSIM stayed within 0.021 of "none" with the detail ratio above "mean"'s
on every clip; 2.0 lost up to 0.057 MS-SSIM; 0.8 lost at most 0.007 but its detail was barely above
"mean"'s on one clip (0.067 against 0.062). On all ten dev clips, 1.2: benchmarks/README.md, "Fill modes"."""

STRIP_PIXELS = 1 << 18
"""Pixels of a frame filtered at once by :func:`add_detail` (its float temporaries stay small)."""


def add_detail(base: torch.Tensor, draw: torch.Tensor, sigma: float = DETAIL_SIGMA) -> torch.Tensor:
    """``base + draw - gaussian(draw, sigma)`` for uint8 frames (T,H,W,3) -> uint8 (T,H,W,3).

    The Gaussian is separable, reflects at the borders and runs over strips of rows of each frame
    (``STRIP_PIXELS``), so memory beyond the two inputs and the output is a strip's.
    """
    if base.shape != draw.shape:
        raise ValueError(f"base {tuple(base.shape)} and draw {tuple(draw.shape)} differ in shape")
    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=draw.device)
    kernel = torch.exp(-taps * taps / (2 * sigma * sigma))
    kernel /= kernel.sum()
    n_frames, height, width, _ = draw.shape
    if min(height, width) <= radius:  # too small to reflect: no band to add
        return base.clone()
    rows = max(1, STRIP_PIXELS // width)
    out = torch.empty_like(base)
    for t in range(n_frames):
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            lo, hi = max(0, top - radius), min(height, bottom + radius)
            x = draw[t, lo:hi].permute(2, 0, 1)[None].float()  # (1,3,rows+halo,W)
            pad_top, pad_bottom = radius - (top - lo), radius - (hi - bottom)
            x = F.pad(x, (radius, radius, pad_top, pad_bottom), mode="reflect")
            smooth = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
            smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
            band = draw[t, top:bottom].float() - smooth[0].permute(1, 2, 0)
            out[t, top:bottom] = (base[t, top:bottom].float() + band).round_().clamp_(0, 255).to(torch.uint8)
    return out


def fill_pick(state: GopState, opts: FillOptions, gop: int) -> Pick:
    """The ``pick`` that fills the scales not sent, for :meth:`GopState.run` (None for "none")."""
    if opts.mode == "mean":
        def mean(t: int, k: int, logits: RowLogits) -> None:
            state.commit_expected(t, k, logits)
        return mean
    rng = gop_generator(opts.seed, gop)

    def sample(t: int, k: int, logits: RowLogits) -> np.ndarray:
        # rows are drawn in order from one generator, so slices give the tokens all rows at once would
        if state.portable:
            return np.concatenate([sample_exact(part, opts.sampling, rng, state.ctx.draw_weights)
                                   for _, part in logit_rows(logits)])
        return np.concatenate([sample_tokens(part, opts.sampling, rng) for _, part in logit_rows(logits)])
    return sample
