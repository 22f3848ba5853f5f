"""Truncation: a valid, smaller stream that keeps a prefix of every GOP's chunks, by a scale count or a
byte budget shared among the GOPs. A byte operation: no token is re-encoded, and neither torch nor
a model is needed.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..runtime.errors import ConfigError
from .format import Stream, gop_costs, header_size, pack, unpack


def truncate(data: bytes, n_scales: int | None = None, max_bytes: int | None = None,
             bpp: float | None = None) -> bytes:
    """Return a valid, smaller stream that keeps a prefix of the chunks of every GOP.

    Exactly one of:

    - ``n_scales``: keep the first ``n_scales`` chunks of every GOP (a GOP that has fewer keeps all).
    - ``max_bytes``: a byte budget for the whole stream, header included. What is left after the
      header is shared among the GOPs in proportion to their frame counts; each GOP keeps the
      largest prefix of chunks that fits its share (bytes it leaves unspent carry forward to the
      next GOP), but at least one chunk; bytes still unspent after the last GOP then buy further
      chunks for the GOPs in order. So GOPs may keep different numbers of scales, and the
      header's ``coded_scales`` becomes the largest count.
    - ``bpp``: the same budget in bits per pixel of the original frames,
      ``max_bytes = floor(bpp * width * height * frames / 8)``.

    The result never exceeds the budget: a GOP also leaves room for one chunk of every later GOP.
    A budget below one chunk per GOP raises :class:`ConfigError` naming the smallest possible size.
    No token is re-encoded: chunks are copied byte for byte, so this needs neither torch nor a model.
    """
    if sum(v is not None for v in (n_scales, max_bytes, bpp)) != 1:
        raise ConfigError("truncate needs exactly one of n_scales, max_bytes or bpp")
    stream = unpack(data)
    if n_scales is not None:
        return pack(_keep(stream, n_scales))
    h = stream.header
    if bpp is not None:
        if isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not 0 < bpp < float("inf"):
            raise ConfigError(f"bpp must be a positive number, got {bpp!r}")
        # The tiny relative slack keeps bpp = 8 * len(stream) / pixels from flooring one byte short.
        max_bytes = int(bpp * h.width * h.height * h.n_frames / 8 * (1 + 1e-12))
    elif isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    try:
        counts = _fit_budget(stream, max_bytes, header_size(data))
    except ConfigError:
        if bpp is None:
            raise
        raise BelowSmallestStream(bpp, 8 * len(pack(_keep(stream, 1))) / (h.width * h.height * h.n_frames)) from None
    return pack(_keep(stream, counts))


class BelowSmallestStream(ConfigError):
    """A ``bpp`` budget below the smallest stream of a video: its header and the first chunk (scale)
    of every GOP. ``least`` is that stream's bpp; :meth:`phrased` names the option as the caller
    spelt it (``bpp=`` in Python, ``--bpp`` on the command line)."""

    def __init__(self, bpp: float, least: float) -> None:
        self.bpp, self.least = bpp, least
        super().__init__(self.phrased("bpp="))

    def phrased(self, option: str) -> str:
        scale = 10.0 ** (2 - math.floor(math.log10(self.least)))  # rounded up to 3 significant digits
        return (f"{option}{self.bpp:g} is below the smallest stream of this video, {self.least:.3g} bpp (the header "
                f"and the first scale of every GOP); give {option}{math.ceil(self.least * scale) / scale:g} or more")


def _fit_budget(stream: Stream, max_bytes: int, header_bytes: int) -> list[int]:
    """Chunks to keep per GOP so that the packed stream fits in ``max_bytes`` (see :func:`truncate`).

    Integer arithmetic on cumulative shares: GOP g may spend up to ``budget * frames(<=g) // frames``
    minus what GOPs before it spent (which carries their savings forward), and never so much that
    a later GOP could not keep its first chunk. Shares only flow forward, so an early GOP that is
    dearer than its share can leave bytes unspent at the end; a second pass gives those to the
    GOPs in order, so no budget goes to waste and ``max_bytes >= len(stream)`` keeps everything.
    """
    h = stream.header
    costs = [gop_costs(chunks) for chunks in stream.gops]
    reserve = sum(c[0] for c in costs)  # one chunk in every GOP still to come
    budget = max_bytes - header_bytes
    if budget < reserve:
        raise ConfigError(f"a budget of {max_bytes} bytes is below the smallest stream, which keeps one chunk "
                          f"per GOP: {header_bytes + reserve} bytes; allow at least that many")
    counts, spent, frames_done = [], 0, 0
    for g, c in enumerate(costs):
        frames_done += h.gop_frames(g)
        reserve -= c[0]
        cap = min(budget * frames_done // h.n_frames - spent, budget - spent - reserve)
        n = max(1, sum(1 for cost in c if cost <= cap))
        counts.append(n)
        spent += c[n - 1]
    for g, c in enumerate(costs):  # bytes the last GOPs could not use go back to GOPs in order
        n = counts[g]
        while n < len(c) and c[n] - c[n - 1] <= budget - spent:
            spent += c[n] - c[n - 1]
            n += 1
        counts[g] = n
    return counts


def _keep(stream: Stream, n: int | list[int]) -> Stream:
    """Keep the first ``n`` chunks of every GOP, or ``n[g]`` chunks of GOP g; rewrites coded_scales."""
    h = stream.header
    counts = list(n) if isinstance(n, (list, tuple)) else [n] * len(stream.gops)
    for c in counts:
        if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= h.n_scales:
            raise ConfigError(f"n_scales={c!r} is not an integer in 1..{h.n_scales}")
    if len(counts) != len(stream.gops):
        raise ConfigError(f"{len(counts)} chunk counts given for {len(stream.gops)} GOPs")
    gops = tuple(chunks[:c] for chunks, c in zip(stream.gops, counts, strict=True))
    return Stream(replace(h, coded_scales=max(len(chunks) for chunks in gops)), gops, rd_lambdas=stream.rd_lambdas)
