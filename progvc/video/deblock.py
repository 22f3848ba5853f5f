"""A deblocking filter for decoded pictures: smooth small steps across the tokenizer's lattice.

The synthesis decodes each latent cell (``stride`` x ``stride`` pixels, 8 for the shipped models) from
its own latent vector, and where the latent changes from cell to cell the picture steps at the cell
boundary: a grid (``benchmarks.grid_measure``). Like H.264's normal loop filter, this filter looks
at the two pixels on each side of every cell boundary, ``p1 p0 | q0 q1``, column boundaries first,
then row boundaries, each colour channel on its own, and smooths the step only where it is small
(``|p0 - q0| < alpha``) and both sides are flat (``|p1 - p0| < beta``, ``|q1 - q0| < beta``): a step that
large or beside texture is an edge of the picture and is kept. Only p0 and q0 move:

    delta = clip((4 (q0 - p0) + (p1 - q1) + 4) >> 3, -tc, tc);  p0 += delta;  q0 -= delta

(moving p1 and q1 too, as H.264 does, lowered the grid of some clips further and raised it where the
source has structure of its own at the next phase).

The decoder deblocks a GOP only when every scale was decoded (:class:`progvc.coding.gop.GopDecoder`).
A prefix's latent is smooth, and its picture's grid is the synthesis' periodic "stamp" rather than a
step at the boundary: on a smooth gradient of slope s the formula above still moves p0 and q0 by
``(s + 4) >> 3``, and on prefixes of training clips that raised the grid measure (a ramp-preserving
form, ``3 (q0 - p0) + (p1 - q1)``, left prefixes as they were and did half as much for full decodes).

Everything is integer arithmetic on the uint8 pictures, so a picture deblocks to the same bytes on
every machine. ``alpha``, ``beta`` and ``tc`` were chosen on four training clips at qualities 30..90
(benchmarks/README.md, "Deblocking").
"""

from __future__ import annotations

import torch

ALPHA = 16
"""Largest step across a boundary that is smoothed (uint8 levels)."""
BETA = 4
"""Largest step beside the boundary for a side to count as flat."""
TC = 2
"""Most a pixel is moved."""


def deblock(frames: torch.Tensor, stride: int, alpha: int = ALPHA, beta: int = BETA, tc: int = TC) -> torch.Tensor:
    """Deblock uint8 pictures (T,H,W,C) whose lattice of ``stride``-pixel cells starts at the top-left
    pixel; returns a new uint8 tensor of the same shape (pictures with no boundary, and cells narrower
    than 4 pixels, come back as they are)."""
    y = frames.to(torch.int16)
    for dim in (2, 1):  # column boundaries (steps along W), then row boundaries
        y = _filter_along(y, dim, stride, alpha, beta, tc)
    return y.to(torch.uint8)


def _filter_along(y: torch.Tensor, dim: int, stride: int, alpha: int, beta: int, tc: int) -> torch.Tensor:
    """Filter the boundaries between pixels ``b - 1`` and ``b`` (b = stride, 2 stride, ...) along ``dim``."""
    at = list(range(stride, y.shape[dim] - 1, stride))  # room for q1
    if not at or stride < 4:  # narrower cells: the windows of neighbouring boundaries would overlap
        return y
    b = torch.tensor(at, device=y.device)
    v = y.movedim(dim, 0).clone()  # (n, ...): boundaries index the first dimension
    p1, p0, q0, q1 = (v[b + o] for o in (-2, -1, 0, 1))
    on = ((q0 - p0).abs() < alpha) & ((p1 - p0).abs() < beta) & ((q1 - q0).abs() < beta)
    delta = ((4 * (q0 - p0) + (p1 - q1) + 4) >> 3).clamp(-tc, tc) * on
    v[b - 1] = (p0 + delta).clamp(0, 255)
    v[b] = (q0 - delta).clamp(0, 255)
    return v.movedim(0, dim)
