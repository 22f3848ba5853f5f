"""Resource limits: how much work one call may do, checked before any model runs.

A stream can be valid and still ask for absurd work: 165 bytes can declare 8192x8192 frames (the
1x1 first scale looks the same at any size), and 11 MB can declare 2^20 frames of 1080p, a 6.5 TB
output. Conventional decoders bound this with profile/level limits; progvc checks the header
against a :class:`Limits` before it sets up anything, and refuses with :class:`LimitError`,
naming the limit and how to raise it::

    import progvc
    frames = progvc.decode(data, limits=progvc.Limits(max_frame_pixels=4096 * 2160))
    for gop in codec.iter_decode(data, limits=progvc.Limits(max_pixels=10**11)):  # long videos
        ...

    progvc decode big.pvc out.mp4 --max-frame-pixels 4096x2160 --max-pixels 1e11

The defaults cover normal use: frames up to 4.19 Mpx (2560x1600, 2048x2048; 1080p with room) and
2^30 decoded pixels per call (3 GiB of uint8 RGB output: 517 frames of 1080p, 10,590 of CIF).
``encode`` checks the frame size against the same ``max_frame_pixels``, so what it makes decodes
under the same limits. Total pixels are a bound on one call's work and output, not on memory:
:meth:`progvc.Codec.iter_decode` holds one GOP at a time whatever the length.

This module needs neither torch nor constriction: a server can vet a stream with it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..coding.footprint import MemoryEstimate
from ..runtime.errors import ConfigError, LimitError
from ..runtime.memory import available
from ..stream.format import StreamHeader

DEFAULT_MAX_FRAME_PIXELS = 1 << 22
"""Largest frame area (width x height) decoded or encoded by default: 4,194,304 pixels."""
DEFAULT_MAX_PIXELS = 1 << 30
"""Most pixels (frames x width x height) one decode call produces by default: 3 GiB as uint8 RGB."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one call, checked from the stream header (or the first input frame).

    ``max_frame_pixels``: width x height of one frame. ``max_pixels``: frames x width x height that
    one decode call produces (``decode``, ``iter_decode``, ``decode_tokens``, a ``Decoder``).
    ``max_memory``: bytes a job may need by :mod:`progvc.runtime.memory`'s estimate (default None: what
    the machine has available when it starts). Raise any by passing your own ``Limits``;
    ``Limits.unlimited()`` lifts them all (for trusted streams only: a hostile one can then ask
    for terabytes).
    """

    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_memory":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Limits.{f.name} must be a positive integer, got {value!r}")

    @classmethod
    def unlimited(cls) -> Limits:
        """Limits no valid stream can exceed (8192x8192 frames, 2^20 of them), and no memory check."""
        return cls(max_frame_pixels=1 << 26, max_pixels=1 << 46, max_memory=1 << 62)

    def check_memory(self, need: MemoryEstimate, job: str) -> None:
        """Refuse a job whose estimated peak exceeds ``max_memory`` (None: what the machine has
        available when the job starts; not checked where that is unknown)."""
        limit = available() if self.max_memory is None else self.max_memory
        if limit is not None and need.total > limit:
            where = "available on this machine" if self.max_memory is None else f"of max_memory={self.max_memory}"
            raise LimitError(f"{job} needs about {need}, more than the {limit / 2**30:.1f} GiB {where}; code "
                             "fewer frames per GOP (--gop) or fewer scales, or, if you know it fits, raise the "
                             f"limit: limits=progvc.Limits(max_memory={need.total}) in Python, --max-memory "
                             f"{-(-need.total // 2**30)}G on the command line")

    def check_frame(self, width: int, height: int, what: str = "the stream") -> None:
        """Refuse frames of more than ``max_frame_pixels`` (LimitError naming the way out)."""
        if width * height > self.max_frame_pixels:
            raise LimitError(f"{what} has frames of {width}x{height} = {width * height} pixels, above the limit "
                             f"max_frame_pixels={self.max_frame_pixels}; if you trust it, raise the limit: "
                             f"limits=progvc.Limits(max_frame_pixels={width * height}) in Python, "
                             f"--max-frame-pixels {width}x{height} on the command line")

    def check_stream(self, header: StreamHeader) -> None:
        """Refuse a stream whose frames or total decoded pixels exceed the limits. Header only."""
        self.check_frame(header.width, header.height)
        total = header.n_frames * header.width * header.height
        if total > self.max_pixels:
            raise LimitError(f"the stream decodes to {header.n_frames} frames of {header.width}x{header.height} = "
                             f"{total} pixels ({3 * total / 2**30:.1f} GiB as RGB), above the limit "
                             f"max_pixels={self.max_pixels}; if you trust it, raise the limit: "
                             f"limits=progvc.Limits(max_pixels={total}) in Python, --max-pixels {total} on "
                             "the command line (Codec.iter_decode then holds one GOP at a time)")


def as_limits(limits: Limits | None) -> Limits:
    """``limits``, or the defaults when None; anything else is a ConfigError."""
    if limits is None:
        return Limits()
    if not isinstance(limits, Limits):
        raise ConfigError(f"limits must be a progvc.Limits, got {type(limits).__name__}")
    return limits
