"""Bjøntegaard delta rate and delta quality with piecewise cubic (PCHIP) interpolation.

The Bjøntegaard delta (VCEG-M33) compares two rate-quality curves by the mean horizontal gap
between them over the quality range both cover::

    log R_a(q), log R_t(q)        PCHIP through each curve's (quality, log-rate) points
    Δ = 1/(q_hi − q_lo) ∫_{q_lo}^{q_hi} (log R_t(q) − log R_a(q)) dq
    BD-rate = (exp Δ − 1) · 100 %      (negative: the test codec needs fewer bits)

``q_lo, q_hi`` is the overlap of the two quality ranges. The original used a cubic polynomial fit;
VCEG-AL22 and the HEVC/VVC common test conditions replaced it with piecewise cubic Hermite
interpolation (PCHIP), which passes through every point and never overshoots between them, so a
curve with one odd point cannot swing the integral. BD-quality swaps the axes: the mean vertical gap
of quality as a function of log-rate over the overlapping log-rate range.

Choices made here (and why):

- **Non-monotone curves** are reduced to their rate-quality frontier before interpolating: points
  are sorted by rate and a point is kept only when its quality beats every cheaper point. A point
  that costs more and looks worse is dominated; PCHIP needs a strictly increasing abscissa, and a
  generative decoder (``sample=True``) can produce such points.
- **No overlap, or fewer than two frontier points** raises :class:`BDRateError`. A number
  extrapolated outside the measured range is not a measurement, and a NaN silently averaged into a
  table is worse than an error. The report writer catches the error and prints ``n/a``.
- Lower-is-better metrics (LPIPS, DISTS) pass ``higher_is_better=False``; the quality axis is then
  negated, so BD-quality keeps "positive = the test codec is better".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..runtime.errors import ProgvcError


class BDRateError(ProgvcError, ValueError):
    """Two rate-quality curves cannot be compared (too few points, bad rates, no overlap)."""


def _frontier(rate: Sequence[float], quality: Sequence[float], higher_is_better: bool, what: str):
    """Return ``(log_rate, quality)`` float64 arrays of the rate-quality frontier, sorted by rate.

    ``rate`` and ``quality`` are 1-D sequences of equal length; rates must be finite and > 0 and
    non-finite qualities are dropped (a metric that could not be computed is not a point).
    """
    r = np.asarray(rate, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    if r.shape != q.shape:
        raise BDRateError(f"{what}: {r.size} rates but {q.size} qualities; give one quality per rate")
    keep = np.isfinite(q)
    r, q = r[keep], q[keep]
    if np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise BDRateError(f"{what}: rates must be finite and positive, got {r.tolist()}")
    if not higher_is_better:
        q = -q
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    r, q = r[order], q[order]
    kept_r: list[float] = []
    kept_q: list[float] = []
    for ri, qi in zip(r, q, strict=True):
        if not kept_q or qi > kept_q[-1]:
            if kept_r and ri == kept_r[-1]:
                continue  # same rate, lower quality: dominated
            kept_r.append(float(ri))
            kept_q.append(float(qi))
    if len(kept_r) < 2:
        raise BDRateError(
            f"{what}: needs at least 2 points where more rate buys more quality, got {len(kept_r)}; "
            "add operating points (more CRFs or scales)"
        )
    return np.log(np.array(kept_r)), np.array(kept_q)


def _mean_gap(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray, axis: str) -> float:
    """Mean of ``y_t(x) − y_a(x)`` over the overlap of the two x ranges, with PCHIP through each curve.

    ``x_*`` are strictly increasing 1-D float64 arrays. Raises :class:`BDRateError` on no overlap.
    """
    from scipy.interpolate import PchipInterpolator

    lo, hi = max(x_a[0], x_t[0]), min(x_a[-1], x_t[-1])
    if not hi > lo:
        raise BDRateError(
            f"the two curves do not overlap in {axis} (anchor {x_a[0]:.4g}..{x_a[-1]:.4g}, "
            f"test {x_t[0]:.4g}..{x_t[-1]:.4g}); add operating points that cover a common range"
        )
    int_a = PchipInterpolator(x_a, y_a).integrate(lo, hi)
    int_t = PchipInterpolator(x_t, y_t).integrate(lo, hi)
    return float((int_t - int_a) / (hi - lo))


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    higher_is_better: bool = True,
) -> float:
    """Bjøntegaard delta rate of ``test`` against ``anchor``, in percent.

    Rates are any positive unit (bpp, bytes; the same for both curves), qualities one metric. Returns
    e.g. ``+100.0`` when the test codec needs twice the rate for the same quality everywhere and
    ``-50.0`` when it needs half. Raises :class:`BDRateError` when the curves cannot be compared.
    """
    la, qa = _frontier(anchor_rate, anchor_quality, higher_is_better, "anchor")
    lt, qt = _frontier(test_rate, test_quality, higher_is_better, "test")
    # log-rate as a function of quality: quality is the abscissa.
    delta = _mean_gap(qa, la, qt, lt, "quality")
    return float((np.exp(delta) - 1.0) * 100.0)


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    higher_is_better: bool = True,
) -> float:
    """Bjøntegaard delta quality of ``test`` against ``anchor``, in the metric's own unit.

    Positive means the test codec gives better quality at the same rate (for lower-is-better
    metrics the sign is flipped so this still holds). Raises :class:`BDRateError` like
    :func:`bd_rate`.
    """
    la, qa = _frontier(anchor_rate, anchor_quality, higher_is_better, "anchor")
    lt, qt = _frontier(test_rate, test_quality, higher_is_better, "test")
    return _mean_gap(la, qa, lt, qt, "log-rate")
