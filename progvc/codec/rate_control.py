"""Encoding to a bit budget: search the one quality at which the stream fills ``bpp``.

::

    budget = floor(bpp * W * H * frames / 8) bytes
      1. quality 100 fits?                      -> keep it (nothing better to spend on)
      2. quality 0 too dear?                    -> quality 0, truncated per GOP to the budget
                                                   (progvc.truncate: the only case that drops scales)
      3. bisection on quality                   -> the dearest stream that still fits
      4. every probe fitted (the budget lies between quality ~99.2 and 100)
                                                -> bisection on lambda itself in (0, that probe's]

One quality for every GOP is the rate-distortion-optimal split of a budget (every GOP then trades
bits for distortion at the same slope lambda), and it lands on the budget however unevenly the
GOPs' costs grow. Rate falls as lambda grows (the encoder picks cheaper tokens), so the search is a
bisection; each probe codes every GOP again from latents computed once (the refinement of the
preset runs once per GOP), at most ``2 + 2 * SEARCH_STEPS`` codings in all.

Step 4 exists because the quality map jumps at its top: quality 100 is lambda 0 (the nearest
codeword) while any quality below it is lambda >= 2^-5, and the rates in between, where skipping
blocks and cheaper near-ties first pay, are reachable only by lambda.
"""

from __future__ import annotations

from collections.abc import Callable

from ..coding.gop import EncodedGop
from ..coding.options import MAX_QUALITY, rd_lambda
from ..stream import format as bs

SEARCH_STEPS = 7  # quality resolution 100 / 2**7 < 1 point (about 9% in lambda)
GOOD_ENOUGH = 0.97  # stop once a fitting stream spends this share of the budget


def budget_bytes(bpp: float, header: bs.StreamHeader) -> int:
    """The stream size ``bpp`` allows, header included (the same rounding as ``truncate``)."""
    return int(bpp * header.width * header.height * header.n_frames / 8 * (1 + 1e-12))


def stream_bytes(header: bs.StreamHeader, coded: list[EncodedGop]) -> int:
    """Size of the stream these GOPs make (header, indexes and chunk headers included)."""
    return len(bs.pack_header(header)) + sum(bs.gop_costs(c.chunks)[-1] for c in coded)


def search_quality(code_all: Callable[[float], list[EncodedGop]], header: bs.StreamHeader, budget: int
                   ) -> list[EncodedGop]:
    """The GOPs at the highest quality whose stream fits ``budget`` bytes; quality 0 if none does
    (the caller then truncates). ``code_all(lam)`` codes every GOP at multiplier lam."""
    best = code_all(rd_lambda(MAX_QUALITY))
    if stream_bytes(header, best) <= budget:
        return best
    fit = code_all(rd_lambda(0.0))
    if stream_bytes(header, fit) > budget:
        return fit
    fit, lo, hi, done = _bisect(code_all, header, budget, rd_lambda, 0.0, MAX_QUALITY, fit)
    if done or hi < MAX_QUALITY:
        return fit
    return _bisect(code_all, header, budget, float, rd_lambda(lo), 0.0, fit)[0]  # lambda 0 is too dear


def _bisect(code_all: Callable[[float], list[EncodedGop]], header: bs.StreamHeader, budget: int,
            lam_of: Callable[[float], float], fits: float, too_dear: float, fit: list[EncodedGop]
            ) -> tuple[list[EncodedGop], float, float, bool]:
    """``SEARCH_STEPS`` halvings of [fits, too_dear] (either order) at multiplier ``lam_of(u)``,
    ``fit`` the coding at ``fits``. Returns the dearest fitting coding, the final bounds and
    whether it filled ``GOOD_ENOUGH`` of the budget (then it stopped early)."""
    for _ in range(SEARCH_STEPS):
        mid = (fits + too_dear) / 2
        probe = code_all(lam_of(mid))
        size = stream_bytes(header, probe)
        if size <= budget:
            fits, fit = mid, probe
            if size >= GOOD_ENOUGH * budget:
                return fit, fits, too_dear, True
        else:
            too_dear = mid
    return fit, fits, too_dear, False
