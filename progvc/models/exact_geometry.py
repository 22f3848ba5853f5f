"""The portable model's fixed tables that depend on the frame size, computed exactly.

Resizing (bicubic up, area down), the 2-D position embedding and the lambda input are computed
here with Python's :class:`fractions.Fraction` and :mod:`decimal` arithmetic (specified digit for
digit, no platform math library), then rounded to integers: every machine builds the same
tables. They follow the float model's definitions (``progvc.models.quantizer.resize``,
``progvc.models.context.grid_positions``, ``ContextModel.rd_embedding``) to within the rounding.
"""

from __future__ import annotations

import functools
import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import torch

from .exact_ops import FRAC

RESIZE_FRAC = 14
"""Fractional bits of the resizing weights."""
_A = Fraction(-3, 4)  # PyTorch's bicubic constant


def _cubic1(x: Fraction) -> Fraction:
    return ((_A + 2) * x - (_A + 3)) * x * x + 1


def _cubic2(x: Fraction) -> Fraction:
    return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A


@functools.lru_cache(maxsize=128)
def bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 integers at RESIZE_FRAC: PyTorch's bicubic resampling along one axis
    (align_corners=False, A = -0.75, indices clamped at the border), as exact rationals rounded."""
    m = [[Fraction(0)] * n_in for _ in range(n_out)]
    scale = Fraction(n_in, n_out)
    for i in range(n_out):
        src = (i + Fraction(1, 2)) * scale - Fraction(1, 2)
        base = math.floor(src)
        t = src - base
        for j, w in zip(range(base - 1, base + 3), (_cubic2(t + 1), _cubic1(t), _cubic1(1 - t), _cubic2(2 - t)),
                        strict=True):
            m[i][min(max(j, 0), n_in - 1)] += w
    return torch.tensor([[round(w * (1 << RESIZE_FRAC)) for w in row] for row in m], dtype=torch.float64)


@functools.lru_cache(maxsize=128)
def area_matrix(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's area resampling along one axis (adaptive average pooling: cell i averages inputs
    floor(i n_in / n_out) .. ceil((i + 1) n_in / n_out) - 1): a 0/1 (n_out, n_in) float64 matrix
    and the (n_out,) count of each window."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        m[i, (i * n_in) // n_out: -((-(i + 1) * n_in) // n_out)] = 1
    return m, m.sum(1)


def upsample(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resampling of integers x (B,C,h,w) at FRAC to ``grid`` >= (h, w): (B,C,H,W) float64
    integers, rounded after each axis (each sum < 2**53: |x| < 2**23, weights < 2**15, <= 2**12 taps)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(grid):
        return x.double()
    rows = bicubic_matrix(h, grid[0]).to(x.device)
    cols = bicubic_matrix(w, grid[1]).to(x.device)
    y = ((rows @ x.double()) * (1.0 / (1 << RESIZE_FRAC))).round()
    return ((y @ cols.t()) * (1.0 / (1 << RESIZE_FRAC))).round()


def downsample(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Area resampling of integers x (B,C,H,W) to ``grid`` <= (H, W): (B,C,h,w) float64 integers,
    round(window sum / window size) (sum < 2**46, size < 2**24: the quotient is exact enough that
    its rounding is the integer one)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(grid):
        return x.double()
    rows, n_rows = area_matrix(h, grid[0])
    cols, n_cols = area_matrix(w, grid[1])
    total = rows.to(x.device) @ x.double() @ cols.to(x.device).t()
    count = (n_rows[:, None] * n_cols[None, :]).to(x.device)
    return (total / count).round()


def _to_fixed(v: Decimal) -> int:
    return int((v * (1 << FRAC)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _pi() -> Decimal:
    """pi to the context's precision (the recipe of the decimal module's documentation)."""
    with localcontext() as ctx:
        ctx.prec += 2
        three = Decimal(3)
        lasts, t, s, n, na, d, da = 0, three, 3, 1, 0, 0, 24
        while s != lasts:
            lasts = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def _cos_sin(x: Decimal) -> tuple[Decimal, Decimal]:
    """cos and sin of a small angle (|x| < 1) by their series."""
    c, s, term, i = Decimal(1), x, x, 1
    cterm = Decimal(1)
    while True:
        cterm = -cterm * x * x / ((2 * i - 1) * (2 * i))
        term = -term * x * x / ((2 * i) * (2 * i + 1))
        if abs(term) < Decimal(10) ** -45 and abs(cterm) < Decimal(10) ** -45:
            return c + cterm, s + term
        c, s, i = c + cterm, s + term, i + 1


def _axis_waves(n: int, freqs: list[Decimal], pi: Decimal) -> list[list[tuple[Decimal, Decimal]]]:
    """[cell][freq] -> (sin, cos) of pi * f * (i + 1/2) / n, by rotating from the first cell."""
    out = [[(Decimal(0), Decimal(0))] * len(freqs) for _ in range(n)]
    for j, f in enumerate(freqs):
        half = pi * f / (2 * n)  # the angle of cell i is half * (2 i + 1)
        c0, s0 = _halving(half, pi)
        c2, s2 = c0 * c0 - s0 * s0, 2 * s0 * c0  # rotation by 2 * half
        c, s = c0, s0
        for i in range(n):
            out[i][j] = (s, c)
            c, s = c * c2 - s * s2, s * c2 + c * s2
    return out


def _halving(x: Decimal, pi: Decimal) -> tuple[Decimal, Decimal]:
    """cos and sin of any x: reduced to [-pi, pi], halved until small, doubled back."""
    x = x - (x / (2 * pi)).to_integral_value() * 2 * pi
    halvings = 0
    while abs(x) >= Decimal("0.5"):
        x, halvings = x / 2, halvings + 1
    c, s = _cos_sin(x)
    for _ in range(halvings):
        c, s = c * c - s * s, 2 * s * c
    return c, s


@functools.lru_cache(maxsize=64)
def grid_positions(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """(h*w, dim) float32 integers at FRAC: the float model's sin/cos position embedding
    (``progvc.models.context.grid_positions``: frequencies 256**(j / (dim/4)), angles pi * f * centre),
    computed in decimal arithmetic at 50 digits and rounded."""
    h, w = grid
    n_freq = dim // 4
    with localcontext() as ctx:
        ctx.prec = 50
        pi = _pi()
        ln256 = Decimal(256).ln()
        freqs = [(ln256 * j / n_freq).exp() for j in range(n_freq)]
        ys, xs = _axis_waves(h, freqs, pi), _axis_waves(w, freqs, pi)
        col_y = torch.tensor([[_to_fixed(s) for s, _ in row] + [_to_fixed(c) for _, c in row] for row in ys])
        col_x = torch.tensor([[_to_fixed(s) for s, _ in row] + [_to_fixed(c) for _, c in row] for row in xs])
    emb = torch.cat([col_y[:, None, :].expand(h, w, -1), col_x[None, :, :].expand(h, w, -1)], dim=-1)
    emb = emb.reshape(h * w, 4 * n_freq).float()
    return torch.nn.functional.pad(emb, (0, dim - emb.shape[1]))


def rd_features(lam: float) -> torch.Tensor:
    """(3,) float32 integers at FRAC of the float model's lambda features: a = log2(1 + lambda) / 8,
    a**2 and [lambda > 0], in decimal arithmetic from the exact value of the float lambda."""
    with localcontext() as ctx:
        ctx.prec = 50
        a = (1 + Decimal(lam)).ln() / Decimal(2).ln() / 8
        return torch.tensor([_to_fixed(a), _to_fixed(a * a), _to_fixed(Decimal(int(lam > 0)))], dtype=torch.float32)
