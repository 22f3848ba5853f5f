"""The ``progvc`` command: encode, decode, truncate and describe streams, and run the benchmark.

::

    progvc encode clip.mp4 clip.pvc                    every scale of the default model
    progvc encode clip.mp4 clip.pvc --bpp 0.05         scales picked per GOP to fit 0.05 bits/pixel
    progvc decode clip.pvc out.mp4                     8-bit 4:2:0 H.264; also .mkv, .y4m, out_%04d.png
    progvc decode big.pvc out.mp4 --max-frame-pixels 4096x2160 --max-pixels 1e10 --max-memory 6G
    progvc truncate clip.pvc small.pvc --max-bytes 20000
    progvc info clip.pvc --json
    progvc bench CLIPS_DIR --out results/              see progvc.bench.rd

Each verb first checks every option, its input and its output (:mod:`progvc.cli.checks`), so a run
that cannot succeed fails before a model is loaded or a frame is read; a stream is checked against
the resource limits (``--max-frame-pixels``, ``--max-pixels``, ``--max-memory``) from its header
alone. ``encode`` reads its input one GOP at a time and ``decode`` writes frames GOP by GOP as they
come, so memory holds one GOP. Every output is written to a temporary file beside it and renamed
into place when complete, so an interrupted run never leaves a file that looks whole; an existing
output is kept unless ``-f``. Errors are one line on stderr
(``progvc: error: ...``) naming the flag and what to do, with these exit codes:
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..codec.admission import admit
from ..codec.options import DecodeOptions, EncodeOptions
from ..runtime.atomic import file_mode, write_bytes_atomic
from ..runtime.errors import VideoError, WeightsError
from ..stream import format as bs
from ..stream.info import info
from ..stream.truncation import truncate
from . import checks as check
from .exit_codes import EXIT_CODES, EXIT_OK, EXIT_USAGE, CliError, report
from .parser import build_parser

__doc__ = (__doc__ or "") + "\n" + EXIT_CODES.split("\n", 1)[1] + "\n"


# -- verbs -------------------------------------------------------------------------------------
def _encode(args: argparse.Namespace) -> None:
    out = check.output_file(args.output, args.force)
    check.video_source(args)
    device = check.device(args)
    check.encode_scales(args, check.model_config(args))
    if args.bpp is not None and args.quality is not None:
        raise CliError(EXIT_USAGE, "--bpp searches the quality itself: give --bpp or --quality, not both")
    options = _options(EncodeOptions, args)
    codec = _load(args, device)
    result = codec.encode_with_stats(args.input, options=options)
    data = result.bitstream
    write_bytes_atomic(out, data)
    if not args.quiet:
        counts = sorted({len(chunks) for chunks in bs.unpack(data).gops})
        bpp = 8 * len(data) / (result.n_frames * result.width * result.height)
        print(f"{out}: {len(data)} bytes, {bpp:.4f} bpp, {result.n_frames} frames of {result.width}x{result.height}, "
              f"{'-'.join(map(str, counts))} of {codec.n_scales} scales per GOP, {result.seconds:.1f} s")


def _decode(args: argparse.Namespace) -> None:
    data = check.input_file(args.input)
    check.sampling(args)
    options = _options(DecodeOptions, args)
    h = admit(data, options).header  # the header and the limits: before parsing a million GOPs or loading a model
    stream = check.stream(data, args.input, args.partial)
    check.decode_scales(args, stream)
    n_frames = sum(h.gop_frames(g) for g in range(len(stream.gops)))
    check.video_targets(args.output, n_frames, args.force)
    device = check.device(args)
    admit(data, options, config=check.model_config(args, h.model_name))  # the memory, before loading the model
    codec = _load(args, device, h.model_name)
    gops = codec.iter_decode(data, options=options)
    t, written = _write_frames(args.output, gops, h.fps, (h.width, h.height), exact=args.exact)
    if not args.quiet:
        print(f"{args.output}: {t} frames of {h.width}x{h.height} at {float(h.fps):.3f} fps, {written}")


def _truncate(args: argparse.Namespace) -> None:
    out = check.output_file(args.output, args.force)
    data = check.input_file(args.input)
    check.stream(data, args.input, partial=False, hint="truncate needs a whole stream; 'progvc decode --partial' "
                 "and 'progvc info --partial' use what it holds")
    small = truncate(data, n_scales=args.scales, max_bytes=args.max_bytes, bpp=args.bpp)
    write_bytes_atomic(out, small)
    counts = [len(chunks) for chunks in bs.unpack(small).gops]
    print(f"{out}: {len(small)} of {len(data)} bytes, {info(small).bpp:.4f} bpp, "
          f"scales per GOP {min(counts)}..{max(counts)}")


def _info(args: argparse.Namespace) -> None:
    data = check.input_file(args.input)
    check.stream(data, args.input, args.partial)
    facts = info(data, partial=args.partial)
    print(json.dumps(facts.to_dict(), indent=2) if args.json else str(facts))


def _bench(argv: list[str]) -> int:
    from ..bench import rd

    try:
        return int(rd.main(argv) or 0)
    except SystemExit as exc:  # its argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


# -- helpers -----------------------------------------------------------------------------------
FLAGS = {"n_scales": "scales", "gop_size": "gop", "max_frames": "frames", "pix_fmt_in": "pix_fmt"}
"""The options whose flag is not their name (``--gop`` is ``gop_size``); the others are spelt alike."""


def _options(kind: type, args: argparse.Namespace, **given: Any) -> Any:
    """The :class:`EncodeOptions` or :class:`DecodeOptions` of the parsed command line: every
    option that has a flag (those not given are None: the option's default), ``--progress`` /
    ``--quiet`` and the limits flags."""
    flags = {f.name: FLAGS.get(f.name, f.name) for f in fields(kind)}
    values = {name: getattr(args, flag) for name, flag in flags.items() if hasattr(args, flag)}
    return kind.build(None, **{**values, "progress": _progress(args), "limits": check.limits(args), **given})


def _load(args: argparse.Namespace, device: Any, name: str | None = None) -> Any:
    """The model, on a device already checked."""
    from ..codec.codec import Codec

    if args.weights is None:
        return Codec.from_pretrained(args.model or name, device=device)
    try:
        return Codec.from_file(args.weights, device=device)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {args.weights!r} ({exc.strerror}); check the path") from exc


def _progress(args: argparse.Namespace) -> bool:
    """--progress: always; --quiet: never; neither: when stderr is a terminal."""
    if args.quiet:
        return False
    return True if args.progress else sys.stderr.isatty()


def _write_frames(output: str, chunks: Iterable[Any], fps: Fraction, size: tuple[int, int], exact: bool
                  ) -> tuple[int, str]:
    """Write (T,H,W,3) uint8 chunks of ``size`` (W, H) frames as they come (a decoder's GOPs);
    returns how many frames were written and what, in words. A video file is written atomically by
    ``write_frames``; a PNG pattern goes into a temporary folder first, so either every frame appears
    or none. An error of the producer (a corrupt GOP) passes through as itself."""
    from ..video import io as video_io

    out = Path(output)
    if "%" not in out.name:
        n = video_io.write_frames(out, chunks, fps, player=not exact)
        if exact:
            return n, "exact RGB 4:4:4"
        fmt = video_io.player_pix_fmt(out, *size)
        return n, {"yuv420p": "8-bit 4:2:0", "yuv444p": "8-bit 4:4:4 (odd frame size: 4:2:0 needs even sides)"}[fmt]
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name.split('%')[0]}progvc-"))
    try:
        n = video_io.write_frames(folder / out.name, chunks, fps)
        for i in range(n):
            os.chmod(folder / (out.name % (i + 1)), file_mode())
            os.replace(folder / (out.name % (i + 1)), out.parent / (out.name % (i + 1)))
    except (VideoError, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, VideoError) and exc.__cause__ is not None else exc
        reason = getattr(cause, "strerror", None) or cause
        raise VideoError(f"writing the frames {output!r} failed ({reason}); check the folder and free space") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return n, "exact RGB PNG"


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
    except BrokenPipeError:  # `progvc info x.pvc | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc)


if __name__ == "__main__":
    raise SystemExit(main())
