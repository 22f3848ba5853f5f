"""What the ``progvc`` command checks before any work: paths, input, stream, model and device.

Every check here is cheap (no model is loaded, no frame decoded), so a run that cannot succeed fails
in about a second, not after minutes of coding, and every message names the flag the user typed and
what to do. The verbs in :mod:`progvc.cli` call these first; option values themselves were checked
by the parser (:mod:`progvc.cli.parser`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ..codec.limits import Limits
from ..models.config import CodecConfig
from ..runtime.errors import BitstreamError, VideoError, WeightsError
from ..stream import format as bs
from .exit_codes import EXIT_EXISTS, EXIT_INPUT, EXIT_STREAM, EXIT_USAGE, CliError, warn

VIDEO_SUFFIXES = (".mp4", ".mkv", ".y4m")


# -- outputs ---------------------------------------------------------------------------------------
def output_file(path: str, force: bool) -> Path:
    """A file the run may write: its folder exists and takes new files, and it does not exist unless
    ``force`` (``-f``)."""
    out = Path(path)
    if out.is_dir():
        raise CliError(EXIT_INPUT, f"the output {path!r} is a folder; give a file name inside it")
    if not out.parent.is_dir():
        raise CliError(EXIT_INPUT, f"cannot write {path!r}: folder {str(out.parent)!r} does not exist; create it first")
    if out.exists() and not force:
        raise CliError(EXIT_EXISTS, f"{path!r} exists; pass -f to overwrite it")
    _writable(out.parent, path)
    return out


def video_targets(output: str, n_frames: int, force: bool) -> list[Path]:
    """The files a decode writes (one video, or one PNG per frame for a pattern), each checked."""
    out = Path(output)
    if "%" not in out.name:
        if out.suffix.lower() not in VIDEO_SUFFIXES:
            raise CliError(EXIT_USAGE, f"cannot write {out.name!r}: use .mp4, .mkv, .y4m or a pattern "
                                       "like out_%04d.png")
        return [output_file(output, force)]
    try:
        ok = out.suffix.lower() == ".png" and out.name % 1 != out.name % 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CliError(EXIT_USAGE, f"{output!r} is not a PNG pattern like out_%04d.png")
    return [output_file(str(out.parent / (out.name % (i + 1))), force) for i in range(n_frames)]


def _writable(folder: Path, target: str) -> None:
    """Create and remove a file in ``folder``: the only reliable test that the output can be written
    (permissions, read-only mounts, /proc, a full inode table)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".progvc-check-")
    except OSError as exc:
        raise CliError(EXIT_INPUT, f"cannot write {target!r}: folder {str(folder)!r} does not take new files "
                                   f"({exc.strerror or exc}); choose another output folder") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


# -- inputs ----------------------------------------------------------------------------------------
def input_file(path: str) -> bytes:
    """The bytes of an input stream, or a message naming the path."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(EXIT_INPUT, f"input file {path!r} not found; check the path") from None
    except IsADirectoryError:
        raise CliError(EXIT_INPUT, f"input {path!r} is a folder; give a .pvc file") from None


def video_source(args: argparse.Namespace) -> None:
    """The video ``encode`` will read: present, not a .pvc stream, and for raw .yuv a frame size and
    layout that divide the file."""
    path = Path(args.input)
    if "%" in path.name:
        return  # a PNG pattern: FFmpeg finds the files
    if not path.is_file():
        raise CliError(EXIT_INPUT, f"input file {args.input!r} not found; check the path")
    with contextlib.suppress(OSError), open(path, "rb") as f:
        if f.read(len(bs.MAGIC)) == bs.MAGIC:
            raise CliError(EXIT_USAGE, f"{args.input!r} is a progvc stream, not a video; to decode it: "
                                       f"progvc decode {args.input} out.mp4")
    from ..video import raw_yuv

    if path.suffix.lower() in raw_yuv.RAW_EXTENSIONS:
        try:
            wh, _ = raw_yuv.raw_size(path, args.size)
        except VideoError:
            raise CliError(EXIT_USAGE, f"{path.name} is headerless raw video: give its frame size with --size WxH "
                                       "(for example --size 352x288), or put _352x288 in its name") from None
        planes, dtype, _ = raw_yuv.raw_layout(wh, args.pix_fmt)
        frame = sum(h * w for h, w in planes) * dtype.itemsize
        if path.stat().st_size % frame or not path.stat().st_size:
            raise CliError(EXIT_USAGE, f"{path.name} ({path.stat().st_size} bytes) is not a whole number of "
                                       f"{wh[0]}x{wh[1]} {args.pix_fmt} frames ({frame} bytes each); check --size "
                                       "and --pix-fmt")


def stream(data: bytes, name: str, partial: bool, hint: str = "pass --partial to use what it holds") -> bs.Stream:
    """The parsed stream; one cut short is refused with ``hint``, by default the flag that accepts it."""
    try:
        return bs.unpack(data, partial=partial)
    except BitstreamError as exc:
        try:
            held = bs.unpack(data, partial=True)
        except BitstreamError:
            raise exc from None
        raise CliError(EXIT_STREAM, f"{name!r} is cut short: it holds {len(held.gops)} of {held.header.n_gops} GOPs "
                                    f"(the last one perhaps incomplete); {hint}") from None


def decode_scales(args: argparse.Namespace, parsed: bs.Stream) -> None:
    """``--scales`` against what the stream holds: more than any GOP holds is an error, more than some
    GOPs hold (a stream truncated by --bpp) a warning."""
    if args.scales is None:
        return
    h, held = parsed.header, [len(chunks) for chunks in parsed.gops]
    if args.scales > max(held, default=h.coded_scales):
        most = max(held, default=h.coded_scales)
        raise CliError(EXIT_USAGE, f"--scales {args.scales}: {args.input!r} holds only {most} of the model's "
                                   f"{h.n_scales} scales; give --scales 1..{most}, or leave --scales out to decode "
                                   "all it holds (the rest are filled as --fill says)")
    short = [g + 1 for g, n in enumerate(held) if n < args.scales]
    if short:
        warn(f"--scales {args.scales}: GOPs {_ranges(short)} of {len(held)} hold fewer scales (the stream was "
             "truncated to a budget); they decode the scales they hold")


def sampling(args: argparse.Namespace) -> None:
    """``--temperature``, ``--top-k`` and ``--top-p`` in the ranges :class:`SamplingOptions` accepts,
    each checked on its own so the message names its flag."""
    from ..coding.fill import SamplingOptions
    from ..runtime.errors import ConfigError

    for flag, field in (("--temperature", "temperature"), ("--top-k", "top_k"), ("--top-p", "top_p")):
        if getattr(args, field) is not None:
            try:
                SamplingOptions(**{field: getattr(args, field)})
            except ConfigError as exc:
                raise CliError(EXIT_USAGE, f"argument {flag}: {exc}") from None


def limits(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` of ``--max-frame-pixels``, ``--max-pixels`` (decode) and ``--max-memory``
    (values checked by the parser). Decode checks a stream's header against them before anything
    else; encode passes them to ``Codec.encode_with_stats``, which checks the first frames read."""
    return Limits(max_frame_pixels=args.max_frame_pixels, max_pixels=getattr(args, "max_pixels", Limits().max_pixels),
                  max_memory=args.max_memory)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# -- model and device ------------------------------------------------------------------------------
def model_config(args: argparse.Namespace, stream_model: str | None = None) -> CodecConfig:
    """The config of the model the run will load (``--weights``, ``--model``, the stream's model or
    the default), read from the weights file's header alone."""
    from ..weights import load_manifest, peek_config, weights_dir

    if args.weights is not None:
        return peek_config(path=args.weights)
    if args.model is None and stream_model is not None:
        known = load_manifest(weights_dir())["models"]
        if stream_model not in known:
            raise WeightsError(f"{args.input!r} was made by model {stream_model!r}, which is not installed here "
                               f"(installed: {', '.join(sorted(known)) or 'none'}); pass --weights FILE with "
                               "its weights file")
    return peek_config(args.model or stream_model)


def encode_scales(args: argparse.Namespace, config: CodecConfig) -> None:
    k = config.tokenizer.n_scales
    if args.scales is not None and args.scales > k:
        raise CliError(EXIT_USAGE, f"--scales {args.scales}: model {config.name!r} has {k} scales; "
                                   f"give --scales 1..{k}")


def device(args: argparse.Namespace) -> Any:
    """The torch device ``--device`` names (DeviceError quoting the flag when it is not available)."""
    from ..runtime.devices import resolve_device

    return resolve_device(args.device, option="--device")
