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

from .. import __version__
from ..codec.limits import Limits
from ..coding.options import (
    COARSE_LAMBDA_MAX_GOP,
    DEFAULT_COARSE_LAMBDA_SCALE,
    DEFAULT_FILL,
    DEFAULT_INTER_LAMBDA_SCALE,
    DEFAULT_PRESET,
    DEFAULT_QUALITY,
    DEFAULT_SKIP_BLOCK,
    FILL_MODES,
    MAX_INTER_LAMBDA_SCALE,
    MAX_QUALITY,
    PRESETS,
)
from ..models.config import MAX_REFINE_STEPS
from ..stream import format as bs
from ..video.io import MAX_FPS, MAX_FRAMES, MAX_SIDE
from ..video.raw_yuv import PIX_FMTS
from .exit_codes import EXIT_CODES, EXIT_USAGE, CliError

EXAMPLES = {  # f-strings where they show a default
    "encode": """examples:
  progvc encode clip.mp4 clip.pvc
  progvc encode clip.mp4 clip.pvc --frames 32 --max-side 480      the first 32 frames, long side <= 480
  progvc encode clip.mp4 clip.pvc --quality 50                    smaller stream (0..100, default 60)
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

fill modes, measured on the 10 dev clips (quality-60 streams of progvc-small-v4 cut to n of 10 scales;
PSNR dB / MS-SSIM / VMAF / detail ratio, 1 = the source's fine detail; benchmarks/README.md, "The default fill"):
  --fill    n=6 (0.0047 bpp)            n=8 (0.0119 bpp)            decode of a cut stream
  sample    16.39 / 0.417 / 1.3 / 0.14  17.98 / 0.576 / 1.5 / 0.16  1.2-1.6x the whole stream's time
  none      16.44 / 0.424 / 1.2 / 0.06  18.05 / 0.581 / 1.3 / 0.09  3-7x faster than sample
  mean      15.68 / 0.380 / 2.0 / 0.11  17.56 / 0.549 / 1.7 / 0.12  0.85-0.9x sample's""",
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


def _pair(values: tuple[float, float]) -> str:
    return ",".join(f"{v:g}" for v in values)


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

    p = verb("encode", "encode a video into a progressive .pvc stream")
    p.add_argument("input", help="video file (anything FFmpeg reads, .y4m, raw .yuv) or PNG pattern")
    p.add_argument("output", help="the .pvc stream to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N", help="code the first N scales (default: all)")
    g.add_argument("--bpp", type=positive(what=" of bits per pixel such as 0.05"), metavar="R",
                   help="fit R bits per pixel: the quality is searched, scales dropped only if it must; at full, "
                        "half and third size unless --resize is given, keeping the one that decodes closest")
    p.add_argument("--quality", type=quality, metavar="Q",
                   help=f"rate-distortion trade-off, 0..100, higher is better and larger (default {DEFAULT_QUALITY:g}; "
                        "not with --bpp)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                   help="encoder effort: " + ", ".join(f"{p.name} (refine {p.refine}"
                                                       + (", intra trials)" if p.intra_trials else ")")
                                                       for p in PRESETS.values()) + " "
                        f"(default {DEFAULT_PRESET})")
    p.add_argument("--gop", type=whole(1, bs.MAX_GOP), metavar="G",
                   help="frames per GOP (default: 32 up to 854x480, 16 at 720p, 8 at 1080p: as many as fit the pixels "
                        "of 8 frames of 1080p). Shorter: finer random access and truncation, less latency, more bits")
    p.add_argument("--frames", type=whole(1, MAX_FRAMES, " of frames"), metavar="N",
                   help="encode only the first N frames (default: all)")
    p.add_argument("--max-side", type=whole(1, MAX_SIDE, " of pixels"), metavar="PX",
                   help="shrink by a whole factor (area average) until the long side is at most PX")
    p.add_argument("--downscale", type=whole(1, MAX_SIDE), metavar="F", default=1,
                   help="shrink by the whole factor F (area average; default 1)")
    p.add_argument("--size", type=frame_size, metavar="WxH", help="frame size of a raw .yuv file")
    p.add_argument("--pix-fmt", choices=PIX_FMTS, default="yuv420p", metavar="FMT",
                   help=f"sample layout of a raw .yuv file: {', '.join(PIX_FMTS)} (default: %(default)s)")
    p.add_argument("--fps", type=positive(MAX_FPS, " of frames per second"),
                   help="frame rate to record (default: the input's)")
    p.add_argument("--refine", type=whole(0, MAX_REFINE_STEPS), metavar="S",
                   help="encoder-side refinement steps per frame (default: the preset's; 0: fastest)")
    p.add_argument("--prefix-refine", type=whole(0, MAX_REFINE_STEPS), metavar="S",
                   help="further refinement steps that also fit the pictures of truncated streams, for the coarse "
                        "scales (default: the preset's; 0: none)")
    p.add_argument("--intra-trials", action=argparse.BooleanOptionalAction, default=None,
                   help="score every block of a later frame in intra mode too and keep the cheaper mode "
                        "(default: the preset's; fast does not)")
    p.add_argument("--inter-lambda-scale", type=in_range(1.0, MAX_INTER_LAMBDA_SCALE), metavar="S",
                   default=DEFAULT_INTER_LAMBDA_SCALE,
                   help="the rate-distortion multiplier of a GOP's later frames over its first frame's, as "
                        "conventional encoders code P frames below their I frame; 1 codes every frame alike "
                        "(default: %(default)g)")
    p.add_argument("--coarse-lambda-scale", type=one_or_two(in_range(1.0, MAX_INTER_LAMBDA_SCALE)),
                   metavar="F[,L]",
                   help="a further multiplier for every scale but the finest, in a GOP's first frame (F) and "
                        "its later frames (L; F if not given): the finest scale corrects their errors and later "
                        "frames copy more of the previous one, which makes truncated streams cheaper; 1 codes "
                        f"every scale of a frame alike (default: {_pair(DEFAULT_COARSE_LAMBDA_SCALE)} in GOPs of "
                        f"up to {COARSE_LAMBDA_MAX_GOP} frames, 1 in longer ones)")
    p.add_argument("--skip-block", type=int, choices=bs.SKIP_BLOCKS, default=DEFAULT_SKIP_BLOCK, metavar="B",
                   help="side in tokens of the blocks an inter frame may copy from the previous frame for the "
                        f"price of a flag: {', '.join(map(str, bs.SKIP_BLOCKS))}; 0 turns block skip off "
                        "(default: %(default)s)")
    p.add_argument("--resize", type=int, choices=bs.RESIZE_FACTORS, metavar="F",
                   help="code the frames at 1/F of their width and height and let the decoder scale them back "
                        f"up ({', '.join(map(str, bs.RESIZE_FACTORS))}); on the dev clips 2 gave more PSNR and "
                        "MS-SSIM for the bits below about 0.04 bpp (unlike --downscale, the decoded video keeps the "
                        "input's size; default: 1, or with --bpp whichever of 1, 2 and 3 decodes closest to the input)")
    _limit_options(p, total=False)
    _model_options(p, "the default one")
    _progress_options(p)

    p = verb("decode", "decode a .pvc stream to a video or PNG frames")
    p.add_argument("input", help="the .pvc stream")
    p.add_argument("output", help="out.mp4 / out.mkv / out.y4m, or a pattern like out_%%04d.png")
    p.add_argument("--exact", action="store_true",
                   help="write exactly the decoded frames: lossless RGB 4:4:4 H.264, 16-bit 4:4:4 .y4m (fewer "
                        "players open them; default: 8-bit 4:2:0 that every player opens)")
    p.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N",
                   help="range-decode only the first N scales (default: all the stream holds)")
    p.add_argument("--fill", choices=FILL_MODES, default=DEFAULT_FILL,
                   help="make the scales not decoded: mean (their expected embedding under the context model), "
                        f"sample (the decoded scales plus the finest detail of a seeded draw of the rest) or none (the "
                        f"decoded scales only); default {DEFAULT_FILL}")
    p.add_argument("--seed", type=whole(0, bs.MAX_SEED), help="sampling seed (default: the one in the stream)")
    p.add_argument("--temperature", type=positive(), metavar="T",  # its range: cli_checks.sampling
                   help="sampling temperature (default: the stream's)")
    p.add_argument("--top-k", type=whole(0, sys.maxsize), metavar="K", help="sample among the K likeliest tokens "
                   "(0: all; default: the stream's)")
    p.add_argument("--top-p", type=positive(), metavar="P", help="nucleus sampling mass in (0, 1] (default: the "
                   "stream's)")
    p.add_argument("--partial", action="store_true", help="accept a stream cut short and decode what it holds")
    _limit_options(p, total=True)
    _model_options(p, "the one named in the stream")
    _progress_options(p)

    p = verb("truncate", "keep fewer scales of a stream, without re-encoding")
    p.add_argument("input")
    p.add_argument("output")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--scales", type=whole(1, bs.MAX_SCALES), metavar="N", help="keep the first N scales of every GOP")
    g.add_argument("--max-bytes", type=whole(1, sys.maxsize), metavar="B", help="fit the whole stream in B bytes")
    g.add_argument("--bpp", type=positive(what=" of bits per pixel such as 0.02"), metavar="R",
                   help="fit R bits per pixel")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")

    p = verb("info", "describe a stream: header, GOPs, bytes per scale")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print JSON (StreamInfo.to_dict) instead of text")
    p.add_argument("--partial", action="store_true", help="describe a stream cut short")

    verbs.add_parser("bench", add_help=False, help="rate-quality benchmark (progvc bench --help)")
    return top


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
