"""Headerless raw video (``.yuv``): size from the caller or the file name, read with numpy.

8- and 10-bit (``...10le``) ``yuv420p`` / ``yuv422p`` / ``yuv444p`` / ``gray`` frames, converted to
uint8 RGB with BT.601 limited range, which is what raw test sequences use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..runtime.errors import ConfigError, VideoError

RAW_EXTENSIONS = (".yuv", ".raw")
_SUBSAMPLING = {"yuv420p": (2, 2), "yuv422p": (2, 1), "yuv444p": (1, 1), "gray": None}  # chroma (x, y)
PIX_FMTS = tuple(f"{base}{depth}" for base in _SUBSAMPLING for depth in ("", "10le"))
"""The raw layouts :func:`raw_layout` reads (``i420`` is accepted as ``yuv420p`` too)."""
DEFAULT_PIX_FMT = "yuv420p"
"""The layout of a raw file when not told (8-bit 4:2:0, what most raw test sequences hold)."""


def raw_size(path: Path, size: tuple[int, int] | None) -> tuple[tuple[int, int], Fraction | None]:
    """``(W, H)`` of a raw file from ``size`` or its name (``_320x240``), and the rate its name
    states (``_12fps``; None when it states none), which the caller checks against its limits."""
    match = re.search(r"_(\d+)fps(?=[_.]|$)", path.name)
    rate = Fraction(int(match.group(1))) if match and int(match.group(1)) > 0 else None
    if size is not None:
        return (int(size[0]), int(size[1])), rate
    if (match := re.search(r"_(\d+)x(\d+)(?=[_.]|$)", path.name)) is None:
        raise VideoError(f"{path.name} is headerless raw video: pass size=(width, height) or put _WxH in its name")
    return (int(match.group(1)), int(match.group(2))), rate


def raw_layout(wh: tuple[int, int], pix_fmt: str) -> tuple[list[tuple[int, int]], np.dtype, int]:
    """Plane shapes ``[(h, w), ...]``, sample dtype and bit depth of one raw frame."""
    base, bits = (pix_fmt[:-4], 10) if pix_fmt.endswith("10le") else (pix_fmt, 8)
    base = "yuv420p" if base == "i420" else base
    if base not in _SUBSAMPLING:
        raise ConfigError(f"pix_fmt_in must be one of {sorted(_SUBSAMPLING)} (+10le), got {pix_fmt!r}")
    w, h = wh
    planes = [(h, w)]
    if (sub := _SUBSAMPLING[base]) is not None:
        planes += [(-(-h // sub[1]), -(-w // sub[0]))] * 2  # chroma planes round up for odd sizes
    return planes, np.dtype("<u2" if bits > 8 else "u1"), bits


def raw_frame_count(path: Path, wh: tuple[int, int], pix_fmt: str) -> int:
    """Number of frames in a raw file; refuses a size that does not divide the file exactly."""
    planes, dtype, _ = raw_layout(wh, pix_fmt)
    frame_bytes = sum(h * w for h, w in planes) * dtype.itemsize
    n, rest = divmod(path.stat().st_size, frame_bytes)
    if rest or n == 0:
        raise VideoError(f"{path.name} ({path.stat().st_size} bytes) is not a whole number of "
                         f"{wh[0]}x{wh[1]} {pix_fmt} frames ({frame_bytes} bytes); check size and pix_fmt_in")
    return n


def iter_raw(path: Path, wh: tuple[int, int], pix_fmt: str, n: int, chunk: int = 16) -> Iterator[np.ndarray]:
    """Read ``n`` raw frames with numpy, ``chunk`` at a time, as ``(H,W,3)`` uint8 RGB.

    BT.601 limited range (what raw test sequences use), chroma upsampled by repetition:
    R = Y' + 1.402 V', G = Y' - 0.344 U' - 0.714 V', B = Y' + 1.772 U' on normalised samples.
    """
    planes, dtype, bits = raw_layout(wh, pix_fmt)
    sizes = [h * w for h, w in planes]
    scale, (h, w) = float(1 << (bits - 8)), planes[0]
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        flat = np.fromfile(path, dtype, count=k * sum(sizes), offset=start * sum(sizes) * dtype.itemsize)
        flat = flat.reshape(k, sum(sizes)).astype(np.float32)
        y = (flat[:, : sizes[0]].reshape(k, h, w) - 16 * scale) * (255 / (219 * scale))  # (k,H,W)
        if len(planes) == 1:
            rgb = np.stack([y, y, y], axis=-1)
        else:
            (hc, wc), at = planes[1], (sizes[0], sizes[0] + sizes[1])
            u, v = (
                ((flat[:, a : a + sizes[1]].reshape(k, hc, wc) - 128 * scale) * (255 / (224 * scale)))
                .repeat(-(-h // hc), axis=1).repeat(-(-w // wc), axis=2)[:, :h, :w]
                for a in at
            )  # (k,H,W) each
            rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
        yield from np.clip(np.rint(rgb), 0, 255).astype(np.uint8)  # k frames (H,W,3)
