"""Read and write videos as ``(T, H, W, 3)`` uint8 RGB arrays.

Every source the codec accepts goes through :func:`read_video`: anything PyAV's bundled FFmpeg
opens (mp4, mkv, webm, ivf, y4m, raw ``.264``/``.265``/``.bit``/``.266`` streams, PNG patterns),
headerless ``.yuv`` files read with numpy, and array-likes (numpy or torch). FFmpeg does the
pixel-format work (10-bit, grayscale, alpha, full/limited range, BT.601/709 from the stream's tags)
through ``frame.to_ndarray(format="rgb24")``, so the codec only ever sees 8-bit RGB.

:func:`write_video` is the inverse: lossless for ``.mp4`` / ``.mkv`` (RGB H.264 at qp 0) and PNG
patterns, and for ``.y4m`` (16-bit 4:4:4 through FFmpeg's swscale on one thread; threaded swscale
was not deterministic, see ``SWS_THREADS``); with ``player=True`` it writes the 8-bit 4:2:0 that
players open instead (what ``progvc decode`` writes unless ``--exact``).
Writes go to a temporary file that replaces the target only when complete.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np

from ..runtime.atomic import atomic_path
from ..runtime.errors import ConfigError, VideoError
from ..stream.format import MAX_SIDE  # the stream's limit is the reader's: larger frames could not be coded
from . import raw_yuv
from .downscale import check_options as check_downscale
from .downscale import downscale_frames

MAX_FRAMES = 100_000
"""Most frames read from one source; a longer one raises unless ``max_frames`` asks for a prefix."""
DEFAULT_FPS = Fraction(25)
"""Frame rate of arrays, raw ``.yuv`` files and streams that state no usable one."""
MAX_FPS = 1000
"""Highest accepted frame rate; a stream or file name stating more falls back to ``DEFAULT_FPS``."""

PLAYER_CRF = 12
"""x264 quality of ``write_video(player=True)``: far below visible loss on progvc's output."""
_MAX_CONSECUTIVE_ERRORS = 64  # demux/decode failures in a row before giving up on a damaged file
_AV_ERRORS = (av.error.FFmpegError, ValueError)
T = TypeVar("T")


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare .frames yourself
class Video:
    """Decoded frames and their rate.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB, C-contiguous (it may share memory with an array
    given to :func:`read_video`); ``fps`` is exact (``Fraction(30000, 1001)``, not 29.97).
    """

    frames: np.ndarray
    fps: Fraction


def read_video(
    source: Any,
    *,
    size: tuple[int, int] | None = None,
    fps: float | Fraction | None = None,
    max_frames: int | None = None,
    pix_fmt_in: str = raw_yuv.DEFAULT_PIX_FMT,
    downscale: int = 1,
    max_side: int | None = None,
) -> Video:
    """Read a whole video (or its first ``max_frames`` frames) into memory.

    ``source``: a path (``str``/``Path``), a :class:`Video` (its frames, at its rate unless ``fps`` is
    given) or an array-like of uint8 RGB frames, ``(T,H,W,3)`` or one
    frame ``(H,W,3)``; grayscale ``(T,H,W)``/``(T,H,W,1)`` is replicated to RGB and RGBA
    ``(T,H,W,4)`` loses its alpha. Float arrays are refused: their scale is ambiguous, so convert
    them to uint8 yourself. ``size=(W, H)`` and ``pix_fmt_in`` (``yuv420p``/``yuv422p``/``yuv444p``/
    ``gray``, optionally ``10le``) describe a headerless ``.yuv`` file, whose size may instead be in
    its name (``clip__320x240_30f.i420.yuv``); for other sources ``size`` is only checked. ``fps``
    overrides the stated rate (no frame is dropped or repeated; variable-rate streams keep every
    frame in order). Frames that change size mid-stream are rescaled to the first frame's size.
    ``downscale`` (a whole factor) and ``max_side`` (pixels; the factor grows until the long side
    fits) shrink every frame by averaging blocks (:mod:`progvc.video.downscale`), frame by frame as it
    is read, so a large file never sits in memory at full size.
    Raises :class:`VideoError`, or :class:`ConfigError` for out-of-range options.
    """
    rate, frames = _open(source, size=size, fps=fps, max_frames=max_frames, pix_fmt_in=pix_fmt_in,
                         downscale=downscale, max_side=max_side)
    if isinstance(frames, np.ndarray):  # an array source: no copy
        return Video(frames=frames, fps=rate)
    stack = list(frames)
    if not stack:
        name = repr(str(source)) if isinstance(source, (str, os.PathLike)) else "the source"
        raise VideoError(f"{name} contains no decodable frames; check that it plays")
    return Video(frames=np.stack(stack) if len(stack) > 1 else stack[0][None], fps=rate)


def iter_frames(source: Any, **options: Any) -> Iterator[np.ndarray]:
    """Yield the frames of ``source`` one by one as ``(H, W, 3)`` uint8 RGB arrays.

    Same arguments and errors as :func:`read_video`, but memory stays at about one frame, so long
    clips can be streamed. An empty container yields nothing instead of raising.
    """
    yield from _open(source, **options)[1]


@dataclass(frozen=True, eq=False)
class VideoSource:
    """A video opened for one pass, without reading it whole.

    ``frames`` is the ``(T, H, W, 3)`` uint8 array of an array source (not copied), or a one-pass
    iterator of ``(H, W, 3)`` uint8 frames for a file, decoded as they are consumed; ``fps`` is exact.
    """

    frames: np.ndarray | Iterator[np.ndarray]
    fps: Fraction


def open_video(source: Any, **options: Any) -> VideoSource:
    """Open ``source`` for one pass: same arguments and errors as :func:`read_video`, but a file is
    decoded only as its frames are consumed, so memory does not grow with its length."""
    rate, frames = _open(source, **options)
    return VideoSource(frames if isinstance(frames, np.ndarray) else iter(frames), rate)


def count_frames(source: Any, *, size: tuple[int, int] | None = None, max_frames: int | None = None,
                 pix_fmt_in: str = raw_yuv.DEFAULT_PIX_FMT) -> int:
    """How many frames :func:`open_video` gives for ``source`` with these options, found by reading a
    file through once more, one frame at a time (memory: one frame); an array's length at once. What a
    progress bar's total needs when a file is coded as it is read."""
    frames = _open_source(source, size=size, max_frames=max_frames, pix_fmt_in=pix_fmt_in)[1]
    return len(frames) if isinstance(frames, np.ndarray) else sum(1 for _ in frames)


def batches(frames: np.ndarray | Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """``(n, H, W, 3)`` arrays of consecutive frames (the last one may be shorter).

    ``frames``: a ``(T, H, W, 3)`` array (sliced, not copied) or an iterable of ``(H, W, 3)`` frames,
    of which only one batch is held at a time.
    """
    if isinstance(frames, np.ndarray):
        for i in range(0, len(frames), n):
            yield frames[i:i + n]
        return
    it = iter(frames)
    while batch := list(itertools.islice(it, n)):
        yield np.stack(batch)


def _open(source: Any, *, downscale: int = 1, max_side: int | None = None, **options: Any
          ) -> tuple[Fraction, Iterable[np.ndarray]]:
    """:func:`_open_source`, then the frames downscaled (see :func:`read_video`)."""
    check_downscale(downscale, max_side)
    rate, frames = _open_source(source, **options)
    return rate, downscale_frames(frames, downscale, max_side)


def _open_source(
    source: Any,
    *,
    size: tuple[int, int] | None = None,
    fps: float | Fraction | None = None,
    max_frames: int | None = None,
    pix_fmt_in: str = raw_yuv.DEFAULT_PIX_FMT,
) -> tuple[Fraction, Iterable[np.ndarray]]:
    """Check options and limits, then return the frame rate and the frames (lazy for files)."""
    rate = None if fps is None else _as_fraction(fps)
    strict = max_frames is None  # no prefix asked for: more than MAX_FRAMES frames is an error
    if not strict and not (isinstance(max_frames, (int, np.integer)) and 1 <= max_frames <= MAX_FRAMES):
        raise ConfigError(f"max_frames must be in 1..{MAX_FRAMES}, got {max_frames}")
    limit = MAX_FRAMES if strict else int(max_frames)
    if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2 and min(size) >= 1):
        raise ConfigError(f"size must be (width, height) with positive entries, got {size!r}")
    if isinstance(source, Video):  # read_video's or sample_clip's result: its frames at its rate
        rate, source = rate or source.fps, source.frames
    if not isinstance(source, (str, os.PathLike)):
        frames = _as_frames(source)
        _check_count(frames.shape[0], limit, strict, "the array")
        _check_size(size, frames.shape[2], frames.shape[1], "the array")
        return rate or DEFAULT_FPS, frames[:limit]
    path = Path(source)
    if "%" not in path.name and not path.is_file():
        raise VideoError(f"video file {str(path)!r} not found; check the path")
    if path.suffix.lower() in raw_yuv.RAW_EXTENSIONS:
        wh, name_fps = raw_yuv.raw_size(path, size)
        name_fps = name_fps if name_fps is not None and name_fps <= MAX_FPS else DEFAULT_FPS
        _check_side(*wh, path)
        n = raw_yuv.raw_frame_count(path, wh, pix_fmt_in)
        _check_count(n, limit, strict, path)
        return rate or name_fps, raw_yuv.iter_raw(path, wh, pix_fmt_in, min(n, limit))
    container = _open_container(path)
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height  # 0 when unknown yet
    if max(width, height) > MAX_SIDE:
        container.close()
        _check_side(width, height, path)
    return rate or _stream_rate(stream), _decode(container, path, size, limit, strict)


def _open_container(path: Path) -> Any:
    """Open ``path`` with PyAV, turning every failure into a :class:`VideoError`."""
    try:
        container = av.open(str(path), mode="r")
    except (*_AV_ERRORS, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot open {str(path)!r} as a video ({e}); check it is a video file") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{str(path)!r} has no video stream; give a video file")
    return container


def _decode(
    container: Any, path: Path, size: tuple[int, int] | None, limit: int, strict: bool
) -> Iterator[np.ndarray]:
    """RGB frames of an open container, at most ``limit`` (more is an error when ``strict``)."""
    first: tuple[int, int] | None = None
    with contextlib.closing(container):
        for count, frame in enumerate(_decoded_frames(container)):
            _check_count(count + 1, limit, strict, path)  # only raises when strict
            if first is None:
                first = (frame.width, frame.height)
                _check_side(*first, path)
                _check_size(size, *first, path)
            yield _to_rgb(frame, first)
            if count + 1 == limit and not strict:
                return


def _decoded_frames(container: Any) -> Iterator[Any]:
    """Decoded ``av.VideoFrame`` objects in presentation order, skipping damaged data.

    A packet that fails to demux or decode is dropped and decoding goes on (the decoder
    resynchronises at the next key frame), up to ``_MAX_CONSECUTIVE_ERRORS`` failures in a row;
    calling ``demux`` again resumes reading after the damaged bytes.
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads; output order is unchanged
    errors = 0
    while errors < _MAX_CONSECUTIVE_ERRORS:
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except _AV_ERRORS:
                    errors += 1
                    continue
                errors = 0
                yield from decoded
            return  # clean end of file
        except _AV_ERRORS:
            errors += 1


# swscale on several threads (PyAV's default) is not deterministic on small frames: converting one
# 17x33 RGB frame to yuv444p16 400 times gave 3 different results on a loaded 2-core machine
# (a run of 8 corrupted samples), and 1 in 100 .y4m writes came out wrong. One thread: 400 of 400.
SWS_THREADS = 1


def _to_rgb(frame: Any, wh: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of one decoded frame, rescaled to ``wh`` if its size changed."""
    try:
        if (frame.width, frame.height) == wh:
            return frame.to_ndarray(format="rgb24", threads=SWS_THREADS)
        return frame.to_ndarray(format="rgb24", width=wh[0], height=wh[1], interpolation="AREA",
                                threads=SWS_THREADS)
    except _AV_ERRORS as e:
        raise VideoError(f"cannot convert a {frame.format.name} frame to RGB ({e})") from e


def _stream_rate(stream: Any) -> Fraction:
    """The stream's rate: FFmpeg's guess first (average_rate is 1000 for some VFR webm)."""
    for rate in (stream.guessed_rate, stream.average_rate):
        if rate is not None and 0 < rate <= MAX_FPS:
            return Fraction(rate)
    return DEFAULT_FPS


def _as_frames(x: Any) -> np.ndarray:
    """``(T,H,W,3)`` uint8 RGB, C-contiguous, from an array-like (layouts: see :func:`read_video`).

    A 3-d array whose last axis is 3 or 4 is one colour frame; any other 3-d array is ``(T,H,W)``
    grayscale. Integer arrays of another dtype are accepted when every value fits in 0..255.
    """
    try:
        if type(x).__module__.split(".")[0] == "torch":  # torch is only touched if given a tensor
            x = x.detach().cpu().numpy()
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise VideoError(f"cannot read frames from a {type(x).__name__}: give a path or a uint8 array") from e
    if a.dtype.kind == "f":
        raise VideoError("frames are floating point: convert them to uint8 RGB first, e.g. "
                         "(x * 255).round().clip(0, 255).astype(np.uint8)")
    if a.dtype.kind not in "ui":
        raise VideoError(f"frames must be uint8 RGB, got dtype {a.dtype}")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        a = a[None]  # one frame
    if a.ndim == 3:
        a = a[..., None]  # (T,H,W) grayscale
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        hint = "; it looks channel-first, permute it" if a.ndim == 4 and a.shape[1] in (1, 3, 4) else ""
        raise VideoError(f"frames must have shape (T,H,W,3), got {a.shape}{hint}")
    if min(a.shape[:3]) == 0:
        raise VideoError(f"the array holds no frames (shape {a.shape}); give at least one frame")
    _check_side(a.shape[2], a.shape[1], "the array")
    if a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise VideoError(f"frames of dtype {a.dtype} have values outside 0..255; give uint8 RGB")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3])


def _check_side(width: int, height: int, where: Path | str) -> None:
    if max(width, height) > MAX_SIDE:
        raise VideoError(f"{where} is {width}x{height}, larger than MAX_SIDE={MAX_SIDE}; downscale it first")


def _check_count(n: int, limit: int, strict: bool, where: Path | str) -> None:
    if strict and n > limit:
        raise VideoError(f"{where} has more than MAX_FRAMES={MAX_FRAMES} frames; pass max_frames")


def _check_size(size: tuple[int, int] | None, width: int, height: int, where: Path | str) -> None:
    if size is not None and (int(size[0]), int(size[1])) != (width, height):
        raise VideoError(f"{where} is {width}x{height}, not the given size {size[0]}x{size[1]}")


def _as_fraction(fps: float | Fraction) -> Fraction:
    """Exact rate from an int, Fraction or float (29.97 -> 2997/100, 30000/1001 kept as is)."""
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"fps must be a positive number, got {fps!r}") from e
    if not 0 < rate <= MAX_FPS:
        raise ConfigError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
    return rate


def player_pix_fmt(path: str | os.PathLike[str], width: int, height: int) -> str | None:
    """The pixel format :func:`write_video` uses with ``player=True``: 8-bit 4:2:0, which every player
    and tool opens, except for H.264 of odd width or height, which 4:2:0 cannot hold: then 8-bit
    4:4:4 (desktop players open it; browsers do not). None for PNG patterns (always RGB)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return None
    return "yuv444p" if suffix in (".mp4", ".mkv") and (width % 2 or height % 2) else "yuv420p"


def write_video(
    path: str | os.PathLike[str], frames: Any, fps: float | Fraction = DEFAULT_FPS, *, pix_fmt: str | None = None,
    player: bool = False,
) -> None:
    """Write ``frames`` (``(T,H,W,3)`` uint8 RGB, numpy or torch) to ``path``, chosen by its name.

    By default the file holds exactly ``frames`` (what tests and measurements need):

    - ``.y4m``: YUV4MPEG2, by default ``C444p16`` (16-bit 4:4:4, an FFmpeg extension) because it
      reads back exactly; ``pix_fmt="yuv420p"`` gives the 8-bit 4:2:0 every tool reads (not exact).
    - ``.mp4`` / ``.mkv``: H.264 at qp 0, by default RGB (``libx264rgb``), exact; a YUV ``pix_fmt``
      uses ``libx264`` (lossless in YUV, not from RGB; 4:2:0 needs even sizes).
    - a ``.png`` pattern with ``%d`` / ``%05d``: one RGB PNG per frame, numbered from 1 as FFmpeg does.

    ``player=True`` writes what players and browsers open instead (not exact): ``.y4m`` in 8-bit
    4:2:0, ``.mp4`` / ``.mkv`` as H.264 High profile 8-bit 4:2:0 at CRF ``PLAYER_CRF`` (see
    :func:`player_pix_fmt` for odd sizes); PNG patterns stay exact RGB.

    Each file appears only when complete (temporary file + ``os.replace``). Raises VideoError.
    """
    write_frames(path, [frames], fps, pix_fmt=pix_fmt, player=player)


def write_frames(
    path: str | os.PathLike[str], chunks: Iterable[Any], fps: float | Fraction = DEFAULT_FPS, *,
    pix_fmt: str | None = None, player: bool = False
) -> int:
    """Write frames that arrive in ``chunks`` (each ``(T,H,W,3)`` uint8 RGB, numpy or torch), encoding
    each chunk as it comes, so memory holds one chunk whatever the length (a decoder's GOPs).

    Formats, ``player`` and guarantees as :func:`write_video`; every chunk must have the first one's
    frame size. An error raised by ``chunks`` itself (the producer) passes through unchanged, and no
    file is left behind. Returns the number of frames written.
    """
    rate, target = _as_fraction(fps), Path(path)
    if not target.parent.is_dir():
        raise VideoError(f"directory {str(target.parent)!r} does not exist; create it first")
    suffix = target.suffix.lower()
    data, crf = _checked_chunks(chunks), None
    try:
        if player:  # the format depends on the frame size: look at the first chunk
            first = next(data)
            pix_fmt, crf = player_pix_fmt(target, first.shape[2], first.shape[1]), PLAYER_CRF
            data = itertools.chain([first], data)
        if "%" in target.name and suffix == ".png":
            n = 0
            for frame in (f for chunk in data for f in chunk):
                n += 1
                _atomic(target.parent / (target.name % n), lambda tmp, f=frame: _write_png(tmp, f))
            return n
        if suffix == ".y4m":
            fmt = pix_fmt or "yuv444p16le"
            return _atomic(target, lambda tmp: _write_container(tmp, "yuv4mpegpipe", "rawvideo", fmt, data, rate))
        if suffix in (".mp4", ".mkv"):
            fmt = pix_fmt or "rgb24"
            codec = "libx264rgb" if fmt == "rgb24" else "libx264"
            if codec not in av.codec.codecs_available:
                codec, fmt = "libx264", "yuv444p"  # an FFmpeg without libx264rgb: near-lossless
            muxer = "mp4" if suffix == ".mp4" else "matroska"
            return _atomic(target, lambda tmp: _write_container(tmp, muxer, codec, fmt, data, rate, crf))
        raise VideoError(f"cannot write {target.name}: use .y4m, .mp4, .mkv or a %05d.png pattern")
    except _ProducerError as e:
        raise e.__cause__ from None  # type: ignore[misc]
    except (*_AV_ERRORS, OSError, TypeError) as e:
        raise VideoError(f"writing {str(target)!r} failed ({e}); check the path and pix_fmt") from e


class _ProducerError(Exception):
    """Wraps an error raised by the iterable of chunks given to :func:`write_frames`, so that it is
    not mistaken for a writing error (a ValueError of the producer is not an FFmpeg failure)."""


def _checked_chunks(chunks: Iterable[Any]) -> Iterator[np.ndarray]:
    """``(T,H,W,3)`` uint8 arrays of ``chunks``, all of the first one's size; producer errors wrapped."""
    it, size = iter(chunks), None
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            break
        except Exception as e:
            raise _ProducerError() from e
        data = _as_frames(chunk)
        size = size or data.shape[1:3]
        if data.shape[1:3] != size:
            raise VideoError(f"frames of {data.shape[2]}x{data.shape[1]} follow frames of {size[1]}x{size[0]}; "
                             "every frame of one video must have the same size")
        yield data
    if size is None:
        raise VideoError("no frames to write; give at least one frame")


def _atomic(target: Path, write: Callable[[str], T]) -> T:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then move it into place."""
    with atomic_path(target) as tmp:
        return write(str(tmp))


def _write_container(tmp: str, muxer: str, codec: str, pix_fmt: str, chunks: Iterator[np.ndarray],
                     rate: Fraction, crf: int | None = None) -> int:
    """Encode the ``(T,H,W,3)`` uint8 ``chunks`` with ``codec`` into a ``muxer`` file at ``tmp``; x264
    is lossless (qp 0) unless ``crf`` is given."""
    first = next(chunks)
    quality = {"qp": "0"} if crf is None else {"crf": str(crf)}
    options = {**quality, "preset": "veryfast"} if codec.startswith("libx264") else {}
    # y4m calls its 16-bit variants "unofficial"; FFmpeg wants strict=-1 to write them.
    n = 0
    with av.open(tmp, mode="w", format=muxer, options={"strict": "-1"}) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = first.shape[2], first.shape[1], pix_fmt
        for rgb in (f for chunk in itertools.chain([first], chunks) for f in chunk):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame if pix_fmt == "rgb24" else frame.reformat(format=pix_fmt, threads=SWS_THREADS)
            frame.pts = n
            n += 1
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return n


def _write_png(tmp: str, rgb: np.ndarray) -> None:
    """Encode one ``(H,W,3)`` uint8 frame as PNG with FFmpeg's encoder (no Pillow needed)."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")) + codec.encode(None)
    Path(tmp).write_bytes(b"".join(bytes(p) for p in packets))
