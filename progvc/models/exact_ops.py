"""Integer arithmetic that gives the same bits on every CPU instruction set, thread count and GPU.

The portable context model (:mod:`progvc.models.portable`) computes everything between tokens
and the range coder's frequency tables with these operations. Values are integers (fixed point:
a value ``v`` at ``frac`` fractional bits stands for ``v / 2**frac``) held in float32 or float64
tensors, so that matrix products run on the fast float kernels, and every operation is *exact*:

* a matrix product or a sum adds only integers, and every partial sum, in any order, is an
  integer below 2**24 (float32) or 2**53 (float64), so it is exactly representable: blocking,
  vector width, FMA, split-K, thread count or TF32 (10 mantissa bits hold the 9-bit operands)
  cannot change it. :data:`ACT_MAX`, :data:`WEIGHT_MAX` and :data:`CHUNK` bound it.
* an elementwise step is one IEEE-754 basic operation (+, -, *, /, sqrt, rounding to an integer,
  min, max) issued as its own tensor operation: IEEE-754 defines its result bit for bit (correctly
  rounded to nearest even), and no kernel fuses it with another (no FMA contraction), so every
  vector width, scalar path and GPU gives the same bits. Most of them are moreover exact
  (integers, products by powers of two, and divisions whose operands are small enough that the
  rounded quotient floors or rounds as the exact one does; the bounds are stated where used); the
  rescaling of a product by its channel's float scale and the division by a temperature are
  rounded, identically everywhere. No value comes near the subnormal range, so flush-to-zero
  modes do not matter either;
* no transcendental function is called: exp and GELU are lookup tables that travel in the
  weights file, and the few constants that need one (positions, the lambda input) are computed
  with :mod:`decimal`, whose arithmetic is specified digit for digit.

Hence the same inputs give the same integers on any IEEE-754 machine. ``tests/portable_reference.py``
implements the same rules in plain NumPy int64 arithmetic and the tests compare bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from . import exact_native as native

FRAC = 10
"""Fractional bits of every activation: hidden states, queries, keys, values, latents."""
NORM_FRAC = 8
"""Fractional bits of a normalised row (layer norm output, in units of its standard deviation)."""
SCORE_FRAC = 10
"""Fractional bits of attention scores (the exp table's resolution)."""
LOGIT_FRAC = 8
"""Fractional bits of the output logits (nats)."""
ACT_BITS = 9
ACT_MAX = 1 << ACT_BITS
"""A matrix product's activations are rounded to |q| <= 512 units of a power of two 2**e per row
(the smallest e that brings the row's largest value below 2**9 before rounding)."""
WEIGHT_MAX = 127
"""Weights are integers |w| <= 127 with a scale per output channel."""
CHUNK = 256
"""Longest sum in one float32 product: 256 * 512 * 127 < 2**24 units of 2**e. Longer ones are
summed chunk by chunk in float64."""
VALUE_MAX = (1 << 23) - 1
"""Activations are clamped to |v| <= 2**23 - 1 (8192 at FRAC), so sums of two stay below 2**24."""
ATTENTION_WEIGHT_BITS = 15
"""Attention weights are integers <= 2**15: exp of the score's distance to its row's maximum."""
PROB_BITS = 14
"""Attention probabilities are integers summing to at most 2**14 per query (512 * 2**14 < 2**24)."""
TABLE_WEIGHT_BITS = 28
"""The frequency table's unnormalised weights are at most 2**28 (see :func:`frequency_counts`)."""
TABLE_TOTAL_BITS = 24
"""A frequency table's rows sum to at most 2**24 (``progvc.coding.entropy.PROB_BITS``, the float path's)."""
TABLE_SHIFT = 29
"""Per-row reciprocal precision of the frequency table: weight * R < 2**28 * 2**25 = 2**53."""


def bit_length(m: torch.Tensor) -> torch.Tensor:
    """Bits of non-negative integers m (float tensor of integers < 2**53): 0 for 0, 9 for 511.
    ``frexp`` is exact (it reads the float's exponent)."""
    return torch.frexp(m)[1].to(m.dtype)


def pow2(e: torch.Tensor) -> torch.Tensor:
    """2**e for integer-valued e (float64 tensor: float64; float32 or int32 tensor: float32; |e| < 126),
    exact: the float is built from its exponent bits (no pow(), whose vectorised versions may be an
    ulp off)."""
    if e.dtype == torch.float64:
        return ((e.to(torch.int64) + 1023) << 52).contiguous().view(torch.float64)
    return (e.to(torch.int32) + 127).bitwise_left_shift_(23).contiguous().view(torch.float32)


def quantize_rows(x: torch.Tensor, group_dims: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., D) float32 integers -> (q, e): q = round(x / 2**e) * 2**e, |q / 2**e| <= 512, with e >= 0
    (int32) the smallest shift that brings the group's largest |x| below 2**9 before rounding; one e
    per row (``group_dims`` = 1) or per block of the last ``group_dims`` dimensions (e keeps x's shape
    with those dimensions as 1). q keeps x's scale: a product of q's rows is a sum of multiples of 2**e
    below 2**(24 + e), as exact as one of 9-bit integers. The largest |x| is max(max x, -min x)
    (maxima: exact in any order; about half the time of ``abs`` then ``amax``, which writes |x|); the
    shift is read from its float exponent (``frexp``)."""
    dims = tuple(range(-group_dims, 0))
    m = torch.maximum(x.amax(dim=dims, keepdim=True), x.amin(dim=dims, keepdim=True).neg_())
    e = torch.frexp(m)[1].sub_(ACT_BITS).clamp_(min=0)  # int32: bits of the integer m, less 9
    return (x * pow2(e.neg())).round_().mul_(pow2(e)), e


def exact_matmul(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """q (..., K) from :func:`quantize_rows` times w (K, N) float32 integers |w| <= 127: the exact
    product (..., N), float32 if K <= CHUNK, else float64: K is cut in chunks of CHUNK, each chunk's
    product exact in float32, and the chunks summed in float64 (exact: < 2**53, in any order). When
    CHUNK divides K the chunks are one batched product (fewer, larger kernels)."""
    k = q.shape[-1]
    if k <= CHUNK:
        return q @ w
    if k % CHUNK == 0:
        chunks = q.unflatten(-1, (k // CHUNK, CHUNK)).movedim(-2, 0)  # (c, ..., n, CHUNK)
        parts = chunks @ w.view(k // CHUNK, *[1] * (q.dim() - 2), CHUNK, -1)  # (c, ..., n, N)
        return parts.sum(0, dtype=torch.float64)
    out = None
    for lo in range(0, k, CHUNK):
        part = (q[..., lo:lo + CHUNK] @ w[lo:lo + CHUNK]).double()
        out = part if out is None else out.add_(part)
    return out


@contextmanager
def full_precision() -> Iterator[None]:
    """float32 products at full precision while the portable path runs: a process that allows
    reduced precision (``torch.set_float32_matmul_precision("medium")`` lets a CPU multiply in
    bfloat16, whose 8 bits cannot hold 9-bit activations) gets it back afterwards."""
    old = torch.get_float32_matmul_precision()
    if old == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 1-D table and non-negative integer-valued float indices (truncated, which
    is floor): an exact gather, through int32 indices (about twice as fast as int64 ones on a CPU)."""
    return table.index_select(0, index.to(torch.int32).reshape(-1)).view(index.shape)


def clamp_value(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-VALUE_MAX, VALUE_MAX)


def linear(x: torch.Tensor, weight_t: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """An integer linear layer: round(q W * scale) + bias, clamped to VALUE_MAX.

    x (..., K) float32 integers at any fixed point, rounded by :func:`quantize_rows`; weight_t (K, N)
    float32 integers |w| <= 127; scale (N,) float32, or float64 when K > CHUNK (whose exact product
    is float64): the channel's weight unit, the change of fixed point included; bias (N,) float32
    integers at the output's fixed point. The product is exact, its rescaling one correctly rounded
    multiplication, the rest exact. Returns (..., N) float32 integers."""
    lib = native.active(x)
    if lib is not None:
        return native.linear_out(lib, exact_matmul(native.quantize_rows(lib, x), weight_t), scale, bias)
    q, _ = quantize_rows(x)
    y = exact_matmul(q, weight_t).mul_(scale).round_().float()
    return y.add_(bias).clamp_(-VALUE_MAX, VALUE_MAX)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Layer norm without its affine part (folded into the next linear layer), in integers:
    x (..., D) float32 integers |x| < 2**23 -> (x - mean) / std at NORM_FRAC, float32.

    In float64: S = sum x (< 2**33), c = D x - S (< 2**34) shifted to 20 bits (round(c / 2**e)),
    V = floor(sum c^2 / D) (sum < 2**50; quotient < 2**40 with error < 2**-13 while an inexact
    quotient is at least 1/D from an integer), sd = max(1, floor(sqrt(V))) (V < 2**40: sqrt's
    error is far below the gap to the next integer), y = round(c * 2**NORM_FRAC / sd)
    (numerator < 2**28, sd <= 2**20: exact for the same reason)."""
    lib = native.active(x)
    if lib is not None:
        return native.normalize_rows(lib, x)
    d = x.shape[-1]
    x64 = x.double()
    c = x64 * d - x64.sum(-1, keepdim=True)
    e = (bit_length(c.abs().amax(-1, keepdim=True)) - 20).clamp(min=0)
    c = (c * pow2(-e)).round()
    var = ((c * c).sum(-1, keepdim=True) / d).floor()
    sd = var.sqrt().floor().clamp(min=1)
    return (c * (1 << NORM_FRAC) / sd).round().float()


GELU_LO, GELU_HI, GELU_STEP_BITS = -8, 8, 6
"""The GELU table covers [-8, 8) in steps of 2**-6 (1025 entries at FRAC, the last one GELU(8))."""


def gelu(x: torch.Tensor, table: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """GELU of x (float32 integers at FRAC) by linear interpolation: ``table`` (float32 integers at
    FRAC) holds GELU at GELU_LO + i * 2**-GELU_STEP_BITS and ``slope`` its differences
    table[i + 1] - table[i]; x itself from GELU_HI on, 0 below GELU_LO (where table[0] is 0)."""
    lib = native.active(x)
    if lib is not None:
        return native.gelu(lib, x, table, slope)
    step = FRAC - GELU_STEP_BITS
    u = (x - GELU_LO * (1 << FRAC)).clamp_(0, (GELU_HI - GELU_LO) * (1 << FRAC) - 1)
    idx = (u * (1.0 / (1 << step))).floor_()
    f = u.sub_(idx * (1 << step))
    y = lookup(slope, idx).mul_(f).mul_(1.0 / (1 << step)).floor_().add_(lookup(table, idx))
    return torch.where(x >= GELU_HI * (1 << FRAC), x, y)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, exp_table: torch.Tensor,
              keep: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention in integers. q (B,H,n,d), k and v (B,H,m,d) float32 integers at FRAC (the
    1/sqrt(d) folded into q's projection), d <= 32; keep (B,1,1,m) float32 0/1 or None: which keys
    the queries of a batch row see (a hidden key still takes part in the row's maximum, so it must
    repeat a visible key). Returns (B,H,n,d) at FRAC.

    Queries are rounded by :func:`quantize_rows` per row, keys and values per (row of the batch,
    head). Scores a = q.k (exact: 32 * 512**2 <= 2**23 units); t = (max a - a) / 2**(2 FRAC -
    SCORE_FRAC) (exact); weights w = exp_table[min(floor t, end)] (integers <= 2**15, 0 at the end);
    S = sum w (exact: float32 sums of 512 keys, then float64); probabilities
    p = floor(w * c), c = float32(2**14 / S * (1 - 2**-20)), which is below 2**14 / S whatever the
    roundings, so sum p <= 2**14 and out = round(sum p v * 2**-14) is an exact float32 product."""
    lib = native.active(q)
    if lib is not None:  # the same roundings in C (exact_native)
        qq, kq, vq = native.quantize_rows(lib, q), native.quantize_rows(lib, k, 2), native.quantize_rows(lib, v, 2)
    else:
        qq, kq, vq = quantize_rows(q)[0], quantize_rows(k, group_dims=2)[0], quantize_rows(v, group_dims=2)[0]
    qq.mul_(1.0 / (1 << (2 * FRAC - SCORE_FRAC)))  # exact: a power of two
    a = qq @ kq.transpose(-1, -2)  # (B,H,n,m), exact
    if lib is not None:
        p = native.attention_weights(lib, a, keep, exp_table)
    else:
        t = torch.sub(a.amax(-1, keepdim=True), a, out=a).clamp_(max=exp_table.shape[0] - 1)  # in place: a is big
        w = lookup(exp_table, t)
        if keep is not None:
            w.mul_(keep)
        c = ((1 << PROB_BITS) / exact_sum(w) * (1 - 2.0 ** -20)).float()
        p = w.mul_(c).floor_()
    return (p @ vq).mul_(1.0 / (1 << PROB_BITS)).round_()


def exact_sum(w: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension of integers <= 2**15 (float32), exact, as float64 (..., 1):
    float32 sums of 512 at a time (< 2**24), then float64."""
    m = w.shape[-1]
    whole = m - m % 512
    total = w[..., :whole].unflatten(-1, (-1, 512)).sum(-1).sum(-1, keepdim=True, dtype=torch.float64)
    return total + w[..., whole:].sum(-1, keepdim=True, dtype=torch.float64)


def tempered_table(exp_table: torch.Tensor, temperature_index: int) -> torch.Tensor:
    """exp_table read at temperature (i + 1) / 10: entry d is exp_table[min(floor(10 d / (i + 1)), end)]
    (int64 arithmetic), for d up to where that reaches the table's final 0."""
    n = -(-(exp_table.shape[0] - 1) * (temperature_index + 1) // 10) + 1
    d = torch.arange(n, device=exp_table.device)
    return exp_table[(d * 10 // (temperature_index + 1)).clamp(max=exp_table.shape[0] - 1)]


def frequency_counts(logits: torch.Tensor, table: torch.Tensor, total_bits: int = TABLE_TOTAL_BITS) -> torch.Tensor:
    """Integer frequency table of the tempered softmax of integer logits.

    logits (n, V) float32 integers at LOGIT_FRAC; table: :func:`tempered_table` of the exp table
    round(2**28 exp(-j / 2**LOGIT_FRAC)) at the chunk's temperature (int64, its last entry 0).
    d = max z - z (exact in float32: < 2**24), w = table[min(d, end)], R = floor(2**29 (2**total_bits
    - V) / sum w) per row, counts = floor(w R / 2**29) + 1 (w R < 2**53), all in int64. Every count
    is >= 1 and a row sums to at most 2**total_bits. -> (n, V) int64."""
    n_sym = logits.shape[-1]
    d = (logits.amax(-1, keepdim=True) - logits).clamp_(max=table.shape[0] - 1)
    w = lookup(table, d)
    r = torch.div(((1 << total_bits) - n_sym) << TABLE_SHIFT, w.sum(-1, keepdim=True), rounding_mode="floor")
    return w.mul_(r).bitwise_right_shift_(TABLE_SHIFT).add_(1)
