"""The ``progvc`` command: encode, decode, truncate and describe streams, and run the benchmark.

::

    progvc encode clip.mp4 clip.pvc                    every scale of the default model
    progvc encode clip.mp4 clip.pvc --bpp 0.05         scales picked per GOP to fit 0.05 bits/pixel
    progvc decode clip.pvc out.mp4                     lossless RGB H.264; also .mkv, .y4m, out_%04d.png
    progvc truncate clip.pvc small.pvc --max-bytes 20000
    progvc info clip.pvc --json
    progvc bench CLIPS_DIR --out results/              see progvc.bench.rd

Every output is written to a temporary file beside it and renamed into place when complete, so an
interrupted run never leaves a file that looks whole; an existing output is kept unless ``-f``.
Errors are one line on stderr (``progvc: error: ...``) with these exit codes:
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from . import bitstream as bs
from .atomic import atomic_path, file_mode, write_bytes_atomic
from .config import REFINE_STEPS
from .errors import BitstreamError, ConfigError, DeviceError, ProgvcError, VideoError, WeightsError
from .stream_info import info

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_STREAM, EXIT_WEIGHTS, EXIT_EXISTS, EXIT_DEVICE = range(8)
EXIT_INTERRUPTED = 130
_MEANING = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug: set PROGVC_DEBUG=1 for a traceback and report it)",
    EXIT_USAGE: "bad command line or option value",
    EXIT_INPUT: "input or output file error: missing, unreadable or unwritable file, not a video",
    EXIT_STREAM: "corrupt, cut short or foreign stream (made by other weights)",
    EXIT_WEIGHTS: "model weights missing, damaged or not matching their config",
    EXIT_EXISTS: "the output exists (pass -f to overwrite)",
    EXIT_DEVICE: "the requested device is not available",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); no partial output is left behind",
}
EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in _MEANING.items())
__doc__ = (__doc__ or "") + "\n" + EXIT_CODES.split("\n", 1)[1] + "\n"

_ERROR_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_USAGE), (VideoError, EXIT_INPUT), (BitstreamError, EXIT_STREAM),
    (WeightsError, EXIT_WEIGHTS), (DeviceError, EXIT_DEVICE), (ProgvcError, EXIT_INTERNAL),
    (OSError, EXIT_INPUT),
)
_VIDEO_SUFFIXES = (".mp4", ".mkv", ".y4m")
_EXAMPLES = {
    "encode": """examples:
  progvc encode clip.mp4 clip.pvc
  progvc encode clip.mp4 clip.pvc --scales 6 --frames 32 --device cuda
  progvc encode clip.mp4 clip.pvc --bpp 0.05                 per-GOP scales under a bit budget
  progvc encode seq_352x288.yuv seq.pvc --size 352x288 --fps 30
  progvc encode clip.mp4 clip.pvc --weights run/final.safetensors""",
    "decode": """examples:
  progvc decode clip.pvc out.mp4                 lossless RGB H.264 (.mkv the same)
  progvc decode clip.pvc out.y4m --scales 3      decode 3 scales, sample the rest
  progvc decode clip.pvc frames/out_%04d.png --no-sample
  progvc decode clip.pvc out.mp4 --seed 7 --temperature 0.8 --top-k 50""",
    "truncate": """examples:
  progvc truncate clip.pvc small.pvc --scales 4
  progvc truncate clip.pvc small.pvc --max-bytes 20000     budget shared among GOPs by frame count
  progvc truncate clip.pvc small.pvc --bpp 0.02""",
    "info": """examples:
  progvc info clip.pvc
  progvc info clip.pvc --json""",
}


class CliError(Exception):
    """A failure with its exit code and a one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(EXIT_USAGE, f"{message} (see '{self.prog} --help')")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 352x288, got {text!r}") from None
    return w, h


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= bs.MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be in 0..2**64-1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    top = _Parser(prog="progvc", description="Progressive generative video compression: encode, decode, truncate "
                  "and describe .pvc streams, and run the rate-quality benchmark.", formatter_class=raw,
                  epilog="\n\n".join(list(_EXAMPLES.values()) + [EXIT_CODES]))
    top.add_argument("--version", action="version", version=f"progvc {__version__}")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=text, description=text, formatter_class=raw,
                                epilog=_EXAMPLES[name] + "\n\n" + EXIT_CODES)

    def model_options(p: argparse.ArgumentParser, what: str) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--model", metavar="NAME", help=f"shipped model to use (default: {what})")
        g.add_argument("--weights", metavar="FILE", help="a .safetensors weights file instead of a shipped model")
        p.add_argument("--device", metavar="D", help="cpu, cuda or cuda:N (default: cuda when present)")
        p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")

    p = verb("encode", "encode a video into a progressive .pvc stream")
    p.add_argument("input", help="video file (anything FFmpeg reads, .y4m, raw .yuv) or PNG pattern")
    p.add_argument("output", help="the .pvc stream to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scales", type=int, metavar="N", help="code the first N scales (default: all)")
    g.add_argument("--bpp", type=float, metavar="R", help="fit R bits per pixel; scales are picked per GOP")
    p.add_argument("--gop", type=int, metavar="G", help="frames per GOP (default: the model's)")
    p.add_argument("--frames", type=int, metavar="N", help="encode only the first N frames")
    p.add_argument("--size", type=_size, metavar="WxH", help="frame size of a raw .yuv file")
    p.add_argument("--fps", type=float, help="frame rate to record (default: the input's)")
    p.add_argument("--refine", type=int, metavar="S", default=REFINE_STEPS,
                   help=f"encoder-side refinement steps per frame (default {REFINE_STEPS}; 0: fastest)")
    model_options(p, "the default one")

    p = verb("decode", "decode a .pvc stream to a video or PNG frames")
    p.add_argument("input", help="the .pvc stream")
    p.add_argument("output", help="out.mp4 / out.mkv (lossless RGB), out.y4m, or a pattern like out_%%04d.png")
    p.add_argument("--scales", type=int, metavar="N", help="range-decode only the first N scales")
    p.add_argument("--no-sample", action="store_true", help="do not sample the scales that were not decoded")
    p.add_argument("--seed", type=_seed, help="sampling seed (default: the one in the stream)")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (default: the stream's)")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling mass in (0, 1]")
    p.add_argument("--partial", action="store_true", help="accept a stream cut short and decode what it holds")
    model_options(p, "the one named in the stream")

    p = verb("truncate", "keep fewer scales of a stream, without re-encoding")
    p.add_argument("input")
    p.add_argument("output")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--scales", type=int, metavar="N", help="keep the first N scales of every GOP")
    g.add_argument("--max-bytes", type=int, metavar="B", help="fit the whole stream in B bytes")
    g.add_argument("--bpp", type=float, metavar="R", help="fit R bits per pixel")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")

    p = verb("info", "describe a stream: header, GOPs, bytes per scale")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print JSON (StreamInfo.to_dict) instead of text")
    p.add_argument("--partial", action="store_true", help="describe a stream cut short")

    verbs.add_parser("bench", add_help=False, help="rate-quality benchmark (progvc bench --help)")
    return top


# -- files -------------------------------------------------------------------------------------
def _read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(EXIT_INPUT, f"input file {path!r} not found; check the path") from None


def _check_output(path: str | Path, force: bool) -> Path:
    out = Path(path)
    if not out.parent.is_dir():
        raise CliError(EXIT_INPUT, f"directory {str(out.parent)!r} does not exist; create it first")
    if out.exists() and not force:
        raise CliError(EXIT_EXISTS, f"{str(out)!r} exists; pass -f to overwrite it")
    return out


def _video_targets(output: str, n_frames: int, force: bool) -> list[Path]:
    """The files a decode will write (one, or one per frame for a PNG pattern), checked."""
    out = Path(output)
    if "%" not in out.name:
        if out.suffix.lower() not in _VIDEO_SUFFIXES:
            raise CliError(EXIT_USAGE, f"cannot write {out.name!r}: use .mp4, .mkv, .y4m or a pattern "
                                       "like out_%04d.png")
        return [_check_output(out, force)]
    try:
        ok = out.suffix.lower() == ".png" and out.name % 1 != out.name % 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CliError(EXIT_USAGE, f"{output!r} is not a PNG pattern like out_%04d.png")
    return [_check_output(out.parent / (out.name % (i + 1)), force) for i in range(n_frames)]


def _write_frames(output: str, frames: Any, fps: Any) -> None:
    """Write (T,H,W,3) uint8 frames; a PNG pattern is written into a temporary folder first."""
    from . import video_io

    out = Path(output)
    if "%" not in out.name:
        with atomic_path(out) as tmp:
            video_io.write_video(tmp, frames, fps)
        return
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name.split('%')[0]}progvc-"))
    try:
        video_io.write_video(folder / out.name, frames, fps)
        for i in range(len(frames)):
            os.chmod(folder / (out.name % (i + 1)), file_mode())
            os.replace(folder / (out.name % (i + 1)), out.parent / (out.name % (i + 1)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _codec(args: argparse.Namespace, name: str | None = None) -> Any:
    """Resolve the device first (a cheap, clear error), then load the model."""
    from .codec import Codec
    from .devices import resolve_device

    device = resolve_device(args.device)
    if args.weights is None:
        return Codec.from_pretrained(args.model or name, device=device)
    try:
        return Codec.from_file(args.weights, device=device)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {args.weights!r} ({exc.strerror}); check the path") from exc


# -- verbs -------------------------------------------------------------------------------------
def _encode(args: argparse.Namespace) -> None:
    from .video_io import read_video

    out = _check_output(args.output, args.force)
    if "%" not in Path(args.input).name and not Path(args.input).is_file():
        raise CliError(EXIT_INPUT, f"input file {args.input!r} not found; check the path")
    codec = _codec(args)
    clip = read_video(args.input, size=args.size, fps=args.fps, max_frames=args.frames)
    result = codec.encode_with_stats(clip.frames, args.scales, bpp=args.bpp, gop_size=args.gop, fps=clip.fps,
                                     refine=args.refine, progress=sys.stderr.isatty())
    write_bytes_atomic(out, result.bitstream)
    counts = sorted({len(chunks) for chunks in bs.unpack(result.bitstream).gops})
    t, h, w = clip.frames.shape[:3]
    print(f"{out}: {len(result.bitstream)} bytes, {result.bpp:.4f} bpp, {t} frames of {w}x{h}, "
          f"{'-'.join(map(str, counts))} of {codec.n_scales} scales per GOP, {result.seconds:.1f} s")


def _decode(args: argparse.Namespace) -> None:
    data = _read_input(args.input)
    header = bs.parse_header(data)
    _video_targets(args.output, header.n_frames, args.force)
    codec = _codec(args, header.model_name)
    frames = codec.decode(data, args.scales, not args.no_sample, args.seed, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, partial=args.partial, progress=sys.stderr.isatty())
    _write_frames(args.output, frames, header.fps)
    t, h, w = frames.shape[:3]
    print(f"{args.output}: {t} frames of {w}x{h} at {float(header.fps):.3f} fps")


def _truncate(args: argparse.Namespace) -> None:
    out = _check_output(args.output, args.force)
    data = _read_input(args.input)
    small = bs.truncate(data, n_scales=args.scales, max_bytes=args.max_bytes, bpp=args.bpp)
    write_bytes_atomic(out, small)
    counts = [len(chunks) for chunks in bs.unpack(small).gops]
    print(f"{out}: {len(small)} of {len(data)} bytes, {info(small).bpp:.4f} bpp, "
          f"scales per GOP {min(counts)}..{max(counts)}")


def _info(args: argparse.Namespace) -> None:
    facts = info(_read_input(args.input), partial=args.partial)
    print(json.dumps(facts.to_dict(), indent=2) if args.json else str(facts))


def _bench(argv: list[str]) -> int:
    from .bench import rd

    try:
        return int(rd.main(argv) or 0)
    except SystemExit as exc:  # its argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


# -- entry point -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring) instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            return _bench(argv[1:])
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        {"encode": _encode, "decode": _decode, "truncate": _truncate, "info": _info}[args.verb](args)
        return EXIT_OK
    except CliError as exc:
        return _fail(exc.code, str(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:  # `progvc info x.pvc | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        code = next((c for kind, c in _ERROR_CODES if isinstance(exc, kind)), EXIT_INTERNAL)
        if isinstance(exc, OSError) and exc.filename is not None:
            return _fail(code, f"{exc.strerror or exc}: {exc.filename}")
        if code == EXIT_INTERNAL and not isinstance(exc, ProgvcError):
            if os.environ.get("PROGVC_DEBUG"):
                traceback.print_exc()
            return _fail(code, f"internal error ({type(exc).__name__}: {exc}); please report it, "
                               "with the traceback that PROGVC_DEBUG=1 prints")
        return _fail(code, str(exc))


def _fail(code: int, message: str) -> int:
    print(f"progvc: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
