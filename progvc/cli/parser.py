"""The ``progvc`` argument parser: every option, its default, its examples, and its value checks.

Each option's value is checked by its ``type=`` function when the command line is parsed, before
anything is read or loaded, and a bad value fails with argparse's ``argument --flag: ...`` prefix, so
the message names the flag the user typed. Checks that need the model or the stream (``--scales``
against the model's scale count, ...) live in :mod:`progvc.cli.checks`. A new option is one
``add_argument`` line here (with a checked ``type=``) and, if it depends on the model or the
stream, one check there.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..codec.limits import Limits
from ..codec.options import DecodeOptions, EncodeOptions, spec
from ..coding.options import DEFAULT_FILL, FILL_MODES, MAX_INTER_LAMBDA_SCALE, MAX_QUALITY, PRESETS
from ..stream import format as bs
from ..video.io import MAX_FPS, MAX_FRAMES, MAX_SIDE
from ..video.raw_yuv import PIX_FMTS
from .exit_codes import EXIT_CODES, EXIT_USAGE, CliError

EXAMPLES = {  # f-strings where they show a default
    "encode": """examples:
  progvc encode clip.mp4 clip.pvc
  progvc encode clip.mp4 clip.pvc --frames 32 --max-side 480      the first 32 frames, long side <= 480
  progvc encode clip.mp4 clip.pvc --quality 50                    smaller stream (0..100, higher is better)
  progvc encode clip.mp4 clip.pvc --preset slow                   slower encoder, better compression
  progvc encode clip.mp4 clip.pvc --scales 6 --preset fast --device cuda
  progvc encode clip.mp4 clip.pvc --bpp 0.05                      the quality (and size) that fit a bit budget
  progvc encode clip.mp4 clip.pvc --resize 2                      code at half width and height
  progvc encode seq_352x288.yuv seq.pvc --size 352x288 --fps 30
  progvc encode clip.mp4 clip.pvc --weights run/final.safetensors""",
    "decode": f"""examples:
  progvc decode clip.pvc out.mp4                 H.264 8-bit 4:2:0 that players open (.mkv the same)
  progvc decode clip.pvc out.mkv --exact         lossless RGB 4:4:4: exactly the decoded frames
  progvc decode clip.pvc out.y4m --scales 3      decode 3 scales, fill the rest (--fill, default {DEFAULT_FILL})
  progvc decode clip.pvc frames/out_%04d.png --fill none
  progvc decode clip.pvc out.mp4 --scales 8 --fill sample --seed 7 --temperature 0.8 --top-k 50
  progvc decode big.pvc out.mp4 --max-frame-pixels 4096x2160 --max-pixels 1e10 --max-memory 6G


what each fill mode costs and buys: benchmarks/README.md, section The default fill""",
    "truncate": """examples:
  progvc truncate clip.pvc small.pvc --scales 4
  progvc truncate clip.pvc small.pvc --max-bytes 20000     budget shared among GOPs by frame count
  progvc truncate clip.pvc small.pvc --bpp 0.02""",
    "info": """examples:
  progvc info clip.pvc
  progvc info clip.pvc --json""",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(EXIT_USAGE, f"{message} (see '{self.prog} --help')")


# -- value types: argparse prefixes their messages with "argument --flag:" -------------------------
def whole(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    """A whole number in lo..hi."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            bound = f"in {lo}..{hi}" if hi < sys.maxsize else f"of at least {lo}"
            raise argparse.ArgumentTypeError(f"give a whole number{what} {bound}, not {text!r}")
        return value
    return parse


def positive(hi: float = math.inf, what: str = "", closed: bool = True) -> Callable[[str], float]:
    """A number in (0, hi] (``closed``) or (0, hi)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value <= hi if closed else 0 < value < hi):
            bound = "" if hi == math.inf else f" {'up to' if closed else 'below'} {hi:g}"
            raise argparse.ArgumentTypeError(f"give a positive number{what}{bound}, not {text!r}")
        return value
    return parse


def in_range(lo: float, hi: float, hint: str = "") -> Callable[[str], float]:
    """A number in lo..hi."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"give a number in {lo:g}..{hi:g}{hint}, not {text!r}")
        return value
    return parse


quality = in_range(0, MAX_QUALITY, " (higher is better)")


def one_or_two(number: Callable[[str], float]) -> Callable[[str], tuple[float, float]]:
    """``A`` or ``A,B``, each parsed by ``number``: a pair, ``A`` standing for both."""
    def parse(text: str) -> tuple[float, float]:
        parts = text.split(",")
        if len(parts) > 2:
            raise argparse.ArgumentTypeError(f"give one number or two separated by a comma, not {text!r}")
        values = [number(part) for part in parts]
        return values[0], values[-1]
    return parse


def frame_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H), each side 1..MAX_SIDE."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not all(1 <= int(v) <= MAX_SIDE for v in match.groups()):
        raise argparse.ArgumentTypeError(f"give the frame size as WIDTHxHEIGHT like 352x288 (sides 1..{MAX_SIDE}), "
                                         f"not {text!r}")
    return int(match.group(1)), int(match.group(2))


def pixels(text: str) -> int:
    """A pixel count: 8847360, 1e10, or a frame size like 4096x2160 (its area)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    try:
        value = int(match.group(1)) * int(match.group(2)) if match else float(text)
    except ValueError:
        value = 0
    if not 1 <= value < math.inf or value != int(value):
        raise argparse.ArgumentTypeError(f"give a pixel count like 8847360, 1e10 or 4096x2160, not {text!r}")
    return int(value)


def byte_size(text: str) -> int:
    """A byte count: 3000000000, 3G, 512M (binary units K, M, G, T)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    scale = units.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        value = 0
    if not 1 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"give a memory size like 3G, 512M or 3000000000, not {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    top = _Parser(prog="progvc", description="Progressive generative video compression: encode, decode, truncate "
                  "and describe .pvc streams, and run the rate-quality benchmark.", formatter_class=raw,
                  epilog="\n\n".join([*EXAMPLES.values(), "bench: see 'progvc bench --help'", EXIT_CODES]))
    top.add_argument("--version", action="version", version=f"progvc {__version__}")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=text, description=text, formatter_class=raw,
                                epilog=EXAMPLES[name] + "\n\n" + EXIT_CODES)

    _encode_options(verb("encode", "encode a video into a progressive .pvc stream"))
    _decode_options(verb("decode", "decode a .pvc stream to a video or PNG frames"))
    _truncate_options(verb("truncate", "keep fewer scales of a stream, without re-encoding"))
    p = verb("info", "describe a stream: header, GOPs, bytes per scale")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print JSON (StreamInfo.to_dict) instead of text")
    p.add_argument("--partial", action="store_true", help="describe a stream cut short")
    verbs.add_parser("bench", add_help=False, help="rate-quality benchmark (progvc bench --help)")
    return top


def _help(kind: type, name: str, default: str = "") -> dict[str, Any]:
    """``help=`` (the option's own text, :mod:`progvc.codec.options`) and ``default=`` of a flag. A
    field whose default is a value (not None) is the flag's default, shown in its help."""
    value, text, _ = spec(kind, name)
    if value is None:
        return {"help": text}
    return {"help": f"{text} (default: {default or '%(default)s'})", "default": value}


def _whole(kind: type, name: str) -> Callable[[str], int]:
    """The parser of a whole-number option, in the range its field checks."""
    check = spec(kind, name)[2]
    return whole(check.lo, check.hi)


def _encode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file (anything FFmpeg reads, .y4m, raw .yuv) or PNG pattern")
    p.add_argument("output", help="the .pvc stream to write")
    e = EncodeOptions
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N", **_help(e, "n_scales"))
    g.add_argument("--bpp", type=positive(what=" of bits per pixel such as 0.05"), metavar="R", **_help(e, "bpp"))
    p.add_argument("--quality", type=quality, metavar="Q", **_help(e, "quality"))
    p.add_argument("--preset", choices=tuple(PRESETS), **_help(e, "preset"))
    p.add_argument("--gop", type=_whole(e, "gop_size"), metavar="G", **_help(e, "gop_size"))
    p.add_argument("--frames", type=whole(1, MAX_FRAMES, " of frames"), metavar="N", **_help(e, "max_frames"))
    p.add_argument("--max-side", type=whole(1, MAX_SIDE, " of pixels"), metavar="PX", **_help(e, "max_side"))
    p.add_argument("--downscale", type=whole(1, MAX_SIDE), metavar="F", **_help(e, "downscale"))
    p.add_argument("--size", type=frame_size, metavar="WxH", **_help(e, "size"))
    p.add_argument("--pix-fmt", choices=PIX_FMTS, metavar="FMT", **_help(e, "pix_fmt_in"))
    p.add_argument("--fps", type=positive(MAX_FPS, " of frames per second"), **_help(e, "fps"))
    p.add_argument("--refine", type=_whole(e, "refine"), metavar="S", **_help(e, "refine"))
    p.add_argument("--prefix-refine", type=_whole(e, "prefix_refine"), metavar="S", **_help(e, "prefix_refine"))
    p.add_argument("--intra-trials", action=argparse.BooleanOptionalAction, **_help(e, "intra_trials"))
    lambda_scale = in_range(1.0, MAX_INTER_LAMBDA_SCALE)
    p.add_argument("--inter-lambda-scale", type=lambda_scale, metavar="S", **_help(e, "inter_lambda_scale"))
    p.add_argument("--coarse-lambda-scale", type=one_or_two(lambda_scale), metavar="F[,L]",
                   **_help(e, "coarse_lambda_scale"))
    p.add_argument("--skip-block", type=int, choices=bs.SKIP_BLOCKS, metavar="B", **_help(e, "skip_block"))
    p.add_argument("--resize", type=int, choices=bs.RESIZE_FACTORS, metavar="F", **_help(e, "resize"))
    p.add_argument("--no-deblock", dest="deblock", action="store_false", default=None,
                   help="do not ask the decoder to deblock (default: ask; progvc.video.deblock)")
    _limit_options(p, total=False)
    _model_options(p, "the default one")
    _progress_options(p)


def _decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="the .pvc stream")
    p.add_argument("output", help="out.mp4 / out.mkv / out.y4m, or a pattern like out_%%04d.png")
    p.add_argument("--exact", action="store_true",
                   help="write exactly the decoded frames: lossless RGB 4:4:4 H.264, 16-bit 4:4:4 .y4m (fewer "
                        "players open them; default: 8-bit 4:2:0 that every player opens)")
    d = DecodeOptions
    p.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N", **_help(d, "n_scales"))
    p.add_argument("--fill", choices=FILL_MODES, **_help(d, "fill"))
    p.add_argument("--seed", type=whole(0, bs.MAX_SEED), **_help(d, "seed"))
    p.add_argument("--temperature", type=positive(), metavar="T", **_help(d, "temperature"))  # range: checks.sampling
    p.add_argument("--top-k", type=whole(0, sys.maxsize), metavar="K", **_help(d, "top_k"))
    p.add_argument("--top-p", type=positive(), metavar="P", **_help(d, "top_p"))
    p.add_argument("--partial", action="store_true", help=spec(d, "partial")[1])
    p.add_argument("--no-deblock", dest="deblock", action="store_false", default=None,
                   help="give the synthesis' pictures as they are (default: deblocked where the stream asks)")
    _limit_options(p, total=True)
    _model_options(p, "the one named in the stream")
    _progress_options(p)


def _truncate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input")
    p.add_argument("output")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N", help="keep the first N scales of every GOP")
    g.add_argument("--max-bytes", type=whole(1, sys.maxsize), metavar="B", help="fit the whole stream in B bytes")
    g.add_argument("--bpp", type=positive(what=" of bits per pixel such as 0.02"), metavar="R",
                   help="fit R bits per pixel")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")


def _model_options(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", metavar="NAME", help=f"shipped model to use (default: {what})")
    g.add_argument("--weights", metavar="FILE", help="a .safetensors weights file instead of a shipped model")
    p.add_argument("--device", metavar="D", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")


def _limit_options(p: argparse.ArgumentParser, total: bool) -> None:
    """--max-frame-pixels, --max-memory and (``total``: decode) --max-pixels, a :class:`Limits`'s
    fields; :func:`progvc.cli.checks.limits` makes the ``Limits``."""
    defaults = Limits()
    p.add_argument("--max-frame-pixels", type=pixels, metavar="N", default=defaults.max_frame_pixels,
                   help=f"refuse frames larger than N pixels, or WxH (default {defaults.max_frame_pixels})")
    if total:
        p.add_argument("--max-pixels", type=pixels, metavar="N", default=defaults.max_pixels,
                       help=f"refuse streams that decode to more than N pixels in all (default {defaults.max_pixels})")
    p.add_argument("--max-memory", type=byte_size, metavar="B",
                   help="refuse a job whose estimated memory exceeds B bytes, e.g. 3G (default: what is available)")


def _progress_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", default=None,
                   help="show progress per frame and scale on stderr (default: only on a terminal)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line")
