"""Downscaling by whole factors: the area average that ``read_video(max_side=...)`` and the benchmark use.

A factor ``f`` averages each ``f x f`` block of pixels (edges that do not fill a block are cropped),
so a clip read with ``max_side=480`` is exactly the clip the benchmark codes with ``--max-side 480``.
The factor is the smallest integer that brings the long side to ``max_side`` or below, and at least
``downscale``. NumPy only; frames are processed one at a time to keep float memory to one frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..runtime.errors import ConfigError


def check_options(downscale: int, max_side: int | None) -> None:
    """Refuse a factor below 1 or a ``max_side`` below 1 (ConfigError naming the option)."""
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise ConfigError(f"downscale must be a whole factor >= 1, got {downscale!r}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                                 or max_side < 1):
        raise ConfigError(f"max_side must be a positive number of pixels, got {max_side!r}")


def factor_for(width: int, height: int, downscale: int = 1, max_side: int | None = None) -> int:
    """The whole factor for a ``width x height`` source: at least ``downscale``, and large enough that
    the long side becomes ``max_side`` or less. ConfigError when a side would drop below 1 pixel."""
    factor = max(int(downscale), -(-max(width, height) // int(max_side)) if max_side else 1)
    if width // factor < 1 or height // factor < 1:
        raise ConfigError(f"a {width}x{height} video cannot be downscaled {factor}x: a side would be below one "
                          "pixel; ask for less downscaling")
    return factor


def downscale_area(frames: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of ``(T,H,W,3)`` uint8 -> ``(T,H//f,W//f,3)`` uint8, rounded
    half up. Edges that do not fill a block are cropped."""
    if factor < 1:
        raise ConfigError(f"downscale factor must be a positive integer, got {factor}")
    if factor == 1:
        return frames
    t, h, w, c = frames.shape
    hh, ww = h // factor, w // factor
    if hh < 1 or ww < 1:
        raise ConfigError(f"a {w}x{h} clip cannot be downscaled {factor}x; use a smaller --downscale")
    out = np.empty((t, hh, ww, c), dtype=np.uint8)
    for i, f in enumerate(frames):
        block = f[: hh * factor, : ww * factor].reshape(hh, factor, ww, factor, c).astype(np.float32)
        out[i] = np.clip(np.floor(block.mean(axis=(1, 3)) + 0.5), 0, 255).astype(np.uint8)
    return out


def downscale_frames(frames: np.ndarray | Iterable[np.ndarray], downscale: int = 1, max_side: int | None = None
                     ) -> np.ndarray | Iterator[np.ndarray]:
    """``frames`` downscaled by :func:`factor_for` of their size: a ``(T,H,W,3)`` array gives an
    array (the same one when the factor is 1), an iterable of ``(H,W,3)`` frames a lazy iterator
    whose factor is set by the first frame."""
    if isinstance(frames, np.ndarray):
        return downscale_area(frames, factor_for(frames.shape[2], frames.shape[1], downscale, max_side))
    if downscale == 1 and max_side is None:
        return iter(frames)
    return _lazy(frames, downscale, max_side)


def _lazy(frames: Iterable[np.ndarray], downscale: int, max_side: int | None) -> Iterator[np.ndarray]:
    factor = None
    for frame in frames:  # (H, W, 3)
        factor = factor or factor_for(frame.shape[1], frame.shape[0], downscale, max_side)
        yield downscale_area(frame[None], factor)[0]
