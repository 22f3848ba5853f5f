"""Run a convolutional transform on a large image tile by tile, with exact GroupNorm statistics.

::

    bounded(fn, x, scale=8, norms=g_s)   ~=  fn(x)      (x (B,C,h,w) -> (B,C',8h,8w))
    memory: one piece of about ``max_pixels`` output pixels, not B x H x W x the widest layer

``g_s`` and ``g_a`` are convolutions, nearest upsampling, pointwise ops and GroupNorm. All but
GroupNorm are local, so a tile extended by a *halo* as wide as the receptive field computes its
core exactly. GroupNorm is not: it normalises with the mean and variance of each group of channels
over the **whole image**, so naive tiles shift every pixel (each tile would use its own statistics,
and show seams). :func:`tiled` therefore finds the statistics first, one GroupNorm at a time::

    pass p = 1..N   (the N GroupNorms, in the order fn calls them)
        every tile runs fn up to norm p, norms 1..p-1 using the whole-image statistics already
        found; the mean / variance of norm p's input over the tile's core are merged (Chan et al.)
        and fn is stopped there
    last pass       every tile runs fn with all norms fixed; the cores are stitched

Each pass stops at its norm, so N passes cost what the prefixes up to each norm cost (about 4.4
whole-image runs of ``g_s``, whose norms sit mostly at low resolution) plus the halo: measured, 5.7
times the whole-image time for a 1080p frame in two tiles, 8.8 times in six. The result equals
``fn(x)`` up to float rounding (statistics merged in float64, convolutions on other shapes): a real
1080p frame forced into tiles had 2.6% of its uint8 values 1 apart, none more (64 dB). It depends
only on the shapes, so the same stream always decodes to the same frames. ``fn`` must be local
apart from GroupNorm (no attention, no global pooling); a test checks the shipped transforms.
``fn`` is any callable, so ``lambda y: g_s(y, cond)`` works too.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction

import torch
from torch import nn

from ..runtime.memory import TILE_PIXELS

Transform = Callable[[torch.Tensor], torch.Tensor]
Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in input units



def bounded(fn: Transform, x: torch.Tensor, *, scale: float, norms: nn.Module | None,
            max_pixels: int = TILE_PIXELS, then: Transform | None = None) -> torch.Tensor:
    """``then(fn(x))`` for a batch x (B,C,h,w), in pieces of about ``max_pixels`` pixels: batches of
    whole frames while a frame fits, else one frame at a time in tiles (:func:`tiled`).

    ``fn`` maps (B,C,h,w) -> (B,C',h*scale,w*scale): ``scale`` is 8 for ``g_s``, 1/8 for ``g_a``;
    ``norms`` is the module whose GroupNorms ``fn`` calls. ``then`` (a crop, a conversion to uint8)
    is applied to each piece's output, so only one piece of ``fn``'s output exists at a time.
    Frames that fit are computed exactly as ``fn`` computes them.
    """
    then = then or (lambda y: y)
    area = x.shape[-2] * x.shape[-1] * max(1.0, float(scale)) ** 2
    if area > max_pixels:
        pieces = [then(tiled(fn, x[i:i + 1], scale=scale, norms=norms, max_pixels=max_pixels)) for i in range(len(x))]
    else:
        n = max(1, int(max_pixels // area))
        pieces = [then(fn(x[i:i + n])) for i in range(0, len(x), n)]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def tiled(fn: Transform, x: torch.Tensor, *, scale: float, norms: nn.Module | None,
          max_pixels: int = TILE_PIXELS, halo: int | None = None) -> torch.Tensor:
    """``fn(x)`` computed in tiles of at most about ``max_pixels`` pixels (of the larger side) with
    their halo: cores of half that, so the halo cannot push a tile above the budget.

    GroupNorm statistics are computed over the whole image first (module docstring). ``halo``
    (input units on each side of a core) defaults to the receptive field of ``fn`` measured by
    :func:`receptive_radius`. Tile edges and halos are multiples of the input size of one output
    pixel (8 for ``g_a``), so strided layers see the same grid as on the whole image.
    """
    ratio = Fraction(scale).limit_denominator(256)
    align = ratio.denominator
    if halo is None:
        halo = _cached_radius(fn, x.shape[1], ratio, norms, x.device)
    halo = -(-halo // align) * align
    side = int(math.sqrt(max_pixels / 2) / max(1, ratio)) // align * align or align  # core side, input units
    boxes = [(y0, y1, x0, x1) for y0, y1 in _spans(x.shape[-2], side, align)
             for x0, x1 in _spans(x.shape[-1], side, align)]
    group_norms = [] if norms is None else [m for m in norms.modules() if isinstance(m, nn.GroupNorm)]
    stats: dict[nn.GroupNorm, tuple[torch.Tensor, torch.Tensor]] = {}
    while True:  # one pass per GroupNorm, then the pass that produces the output
        moments: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (count, mean, M2) per tile
        out = None
        with _norms_hooked(group_norms, stats, moments) as probe:
            for box in boxes:
                piece = _crop(x, box, halo, probe)
                try:
                    y = fn(piece)
                except _Stop:
                    continue
                out = _stitch(out, y, box, probe.core, ratio, x.shape)
        if probe.target is None:
            assert out is not None
            return out
        stats[probe.target] = _merge(moments)


def receptive_radius(fn: Transform, channels: int, ratio: Fraction, norms: nn.Module | None,
                     device: torch.device, size: int = 32) -> int:
    """How many input units on each side of a block the block's outputs depend on.

    Backpropagates the sum over the outputs of the centre block (one input cell of ``g_s``, one
    output cell of ``g_a``) of a seeded random input, with every GroupNorm fixed at unit
    statistics (which makes ``fn`` local), and measures how far the gradient reaches; the input
    grows until the reach stays clear of its border. About a second; :func:`tiled` measures it once
    per transform.
    """
    group_norms = [] if norms is None else [m for m in norms.modules() if isinstance(m, nn.GroupNorm)]
    unit = {m: (torch.zeros(1, m.num_groups, dtype=torch.float64, device=device),
                torch.ones(1, m.num_groups, dtype=torch.float64, device=device)) for m in group_norms}
    step = ratio.denominator
    while True:
        n = size * step  # input units, a whole number of output pixels
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode(False), torch.enable_grad(), _norms_hooked(group_norms, unit, []):
            x = torch.randn(1, channels, n, n, generator=gen).to(device).requires_grad_(True)
            y = fn(x)
            c = n // 2 // step * step  # the centre block: input [c, c + step), output [c*r, (c + step)*r)
            o0, o1 = int(c * ratio), int((c + step) * ratio)
            (grad,) = torch.autograd.grad(y[..., o0:o1, o0:o1].sum(), x)
        reach = grad.abs().sum(dim=(0, 1)).nonzero()  # (K, 2) input positions that matter
        radius = int(max(c - reach.min(), reach.max() - (c + step - 1)))
        if radius < n // 2 - step:
            return radius + 1  # one more: a gradient can vanish by chance at the very edge
        size *= 2


# -- internals -----------------------------------------------------------------------------------
_RADII: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, Fraction], int]] = weakref.WeakKeyDictionary()


def _cached_radius(fn: Transform, channels: int, ratio: Fraction, norms: nn.Module | None,
                   device: torch.device) -> int:
    """:func:`receptive_radius`, measured once per ``norms`` module (the transform whose structure
    it is; its weights do not change the reach) and input layout."""
    if norms is None:
        return receptive_radius(fn, channels, ratio, norms, device)
    known = _RADII.setdefault(norms, {})
    if (channels, ratio) not in known:
        known[channels, ratio] = receptive_radius(fn, channels, ratio, norms, device)
    return known[channels, ratio]


class _Stop(Exception):
    """Raised by the GroupNorm being measured: the rest of ``fn`` is not needed in this pass."""


class _Probe:
    """What the hooked norms of a pass need: the current tile's core (input units, relative to the
    tile) and size, and which norm the pass measures once one is met."""

    def __init__(self) -> None:
        self.core: Box = (0, 0, 0, 0)
        self.size = (1, 1)
        self.target: nn.GroupNorm | None = None


@contextmanager
def _norms_hooked(group_norms: list[nn.GroupNorm], stats: dict, moments: list) -> Iterator[_Probe]:
    """Replace each GroupNorm's forward: with known ``stats`` (mean, variance per (B, group)), normalise
    with them; else (the first unknown norm of the pass) record the moments of the tile's core in
    ``moments`` and raise :class:`_Stop`. The modules are restored on exit."""
    probe = _Probe()

    def hooked(norm: nn.GroupNorm) -> Transform:
        def forward(h: torch.Tensor) -> torch.Tensor:
            if norm in stats:
                return _normalise(norm, h, *stats[norm])
            probe.target = norm
            moments.append(_core_moments(norm, h, probe))
            raise _Stop
        return forward

    for m in group_norms:
        m.forward = hooked(m)  # type: ignore[method-assign]
    try:
        yield probe
    finally:
        for m in group_norms:
            del m.forward


def _normalise(norm: nn.GroupNorm, h: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """GroupNorm of h (B,C,...) with given per-(B, group) mean and variance (float64)."""
    b, c = h.shape[:2]
    rstd = torch.rsqrt(var + norm.eps).to(h.dtype)
    z = ((h.reshape(b, norm.num_groups, -1) - mean.to(h.dtype)[..., None]) * rstd[..., None]).reshape(h.shape)
    if norm.affine:
        shape = (1, c) + (1,) * (h.dim() - 2)
        z = z * norm.weight.reshape(shape) + norm.bias.reshape(shape)
    return z


def _core_moments(norm: nn.GroupNorm, h: torch.Tensor, probe: _Probe) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) per (B, group) of h (B,C,rows,cols) over the tile's core at h's resolution
    (exact: tiles are aligned to every resolution of ``fn``)."""
    (y0, y1, x0, x1), (th, tw) = probe.core, probe.size
    rows, cols = h.shape[-2], h.shape[-1]
    part = h[..., y0 * rows // th:y1 * rows // th, x0 * cols // tw:x1 * cols // tw]
    flat = part.reshape(h.shape[0], norm.num_groups, -1).double()
    var, mean = torch.var_mean(flat, dim=-1, unbiased=False)
    return flat.shape[-1], mean, var * flat.shape[-1]


def _merge(moments: list[tuple[int, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-image (mean, variance) from per-tile (count, mean, M2): Chan et al.'s parallel update."""
    n = sum(m[0] for m in moments)
    mean = sum(m[0] * m[1] for m in moments) / n
    m2 = sum(m[2] + m[0] * (m[1] - mean) ** 2 for m in moments)
    return mean, m2 / n  # type: ignore[return-value, operator]


def _spans(length: int, side: int, align: int) -> list[tuple[int, int]]:
    """Split 0..length into near-equal spans of about ``side`` whose inner edges are multiples of ``align``."""
    n = -(-length // side)
    edges = [0] + [round(length * i / n / align) * align for i in range(1, n)] + [length]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _crop(x: torch.Tensor, box: Box, halo: int, probe: _Probe) -> torch.Tensor:
    """The tile of x around ``box`` with ``halo`` more on each side (clipped at the image); tells
    ``probe`` where the core lies inside it."""
    y0, y1, x0, x1 = box
    a0, a1 = max(0, y0 - halo), min(x.shape[-2], y1 + halo)
    b0, b1 = max(0, x0 - halo), min(x.shape[-1], x1 + halo)
    probe.core, probe.size = (y0 - a0, y1 - a0, x0 - b0, x1 - b0), (a1 - a0, b1 - b0)
    return x[..., a0:a1, b0:b1]


def _stitch(out: torch.Tensor | None, y: torch.Tensor, box: Box, core: Box, ratio: Fraction,
            shape: torch.Size) -> torch.Tensor:
    """Copy the core of the tile's output y into ``out`` (allocated on the first tile)."""
    if out is None:
        out = y.new_empty(*y.shape[:2], int(shape[-2] * ratio), int(shape[-1] * ratio))
    c = [int(v * ratio) for v in core]
    b = [int(v * ratio) for v in box]
    out[..., b[0]:b[1], b[2]:b[3]] = y[..., c[0]:c[1], c[2]:c[3]]
    return out
