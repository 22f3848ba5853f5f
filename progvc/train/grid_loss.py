"""A differentiable grid loss: the decode's neighbour differences per phase of the 8-pixel lattice
should follow the source's.

The training twin of :mod:`benchmarks.grid_measure`: on luma, m_p is the mean |difference| of
horizontal and vertical neighbours whose first pixel sits at phase p = x mod 8 (rows and columns
pooled, per crop). Each profile is divided by its own mean over the phases, so that only its shape
counts (sharpness is the other losses' business), and the loss is the mean over crops and phases of
the squared difference of the two shapes: zero when the decode's phases are as even as the source's.
Crops must start on the tokenizer's lattice (they do: the tokenizer codes each crop from its
top-left pixel).
"""

from __future__ import annotations

import torch

PERIOD = 8
_LUMA = (0.299, 0.587, 0.114)


def phase_profile(x: torch.Tensor, period: int = PERIOD) -> torch.Tensor:
    """x (B,3,H,W) -> (B, period): mean |neighbour difference| of the luma at each phase, rows and
    columns pooled. H and W must be multiples of ``period``."""
    y = sum(w * x[:, c] for c, w in enumerate(_LUMA))  # (B,H,W)
    b, h, w = y.shape
    if h % period or w % period:
        raise ValueError(f"crop {h}x{w} is not a multiple of the period {period}")
    cols = (y[:, :, 1:] - y[:, :, :-1]).abs()  # (B,H,W-1): phase of column j is j mod period
    rows = (y[:, 1:] - y[:, :-1]).abs()  # (B,H-1,W)
    cols = torch.cat([cols, cols.new_zeros(b, h, 1)], 2).reshape(b, h, w // period, period).sum((1, 2))
    rows = torch.cat([rows, rows.new_zeros(b, 1, w)], 1).reshape(b, h // period, period, w).sum((1, 3))
    counts = torch.full((period,), float(h * (w // period) + w * (h // period)), device=x.device)
    counts[-1] -= h + w  # the last phase has no difference past the crop's right and bottom edges
    return (cols + rows) / counts


def grid_loss(x_hat: torch.Tensor, x: torch.Tensor, period: int = PERIOD) -> torch.Tensor:
    """Mean squared difference of the shapes of the phase profiles of x_hat and x (B,3,H,W), each
    profile divided by its mean over the phases."""
    def shape(p: torch.Tensor) -> torch.Tensor:
        return p / p.mean(1, keepdim=True).clamp(min=1e-4)

    return ((shape(phase_profile(x_hat, period)) - shape(phase_profile(x, period))) ** 2).mean()
