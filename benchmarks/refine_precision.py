"""The encoder's latent refinement with its synthesis in bfloat16 against float32: time and rate-quality.

::

    python -m benchmarks.refine_precision ../shared/clips/dev --preset medium --json refine_precision.json

:meth:`progvc.models.tokenizer.Tokenizer.refine_latent` runs the synthesis in bfloat16 where the
device computes it natively (:func:`progvc.runtime.devices.bfloat16_pays`); this benchmark encodes
each clip (first ``--frames`` frames, long side <= ``--max-side``, one GOP of ``--gop``: the setting
of benchmarks/results/dev) at each ``--qualities`` both ways, float32 first, then bfloat16, and
reports each encode's seconds, bpp, PSNR and MS-SSIM, and per clip the BD-rate of bfloat16 against
float32 (negative: fewer bits for the same quality) and the ratio of the encode seconds. The decodes
are the library's default (every scale, deblocked).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .speed import load_codec

PRECISIONS = ("float32", "bfloat16")


@contextmanager
def forced_switch(switch: str, precision: str) -> Iterator[None]:
    """``progvc.models.tokenizer``'s precision switch ``switch`` (device -> bool) set for ``precision``:
    "bfloat16" forces it (even where it is emulated), "float32" turns it off; restored afterwards."""
    from progvc.models import tokenizer

    native = getattr(tokenizer, switch)
    setattr(tokenizer, switch, lambda device: precision == "bfloat16")
    try:
        yield
    finally:
        setattr(tokenizer, switch, native)


def forced_precision(precision: str) -> AbstractContextManager[None]:
    """Refinement in ``precision`` (the switch ``search_in_bfloat16``)."""
    return forced_switch("search_in_bfloat16", precision)


def measure_clip(codec: Any, frames: Any, qualities: Sequence[int], preset: str, gop: int) -> dict[str, Any]:
    """Each precision's points (quality, seconds, bpp, PSNR, MS-SSIM) on one clip, taken in turns per
    quality, and the BD-rates and encode-time ratio of bfloat16 against float32."""
    from progvc.bench.bdrate import BDRateError, bd_rate
    from progvc.bench.metrics import ms_ssim, psnr

    pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
    points: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
    for q in qualities:
        for precision in PRECISIONS:
            with forced_precision(precision):
                start = time.perf_counter()
                data = codec.encode(frames, quality=q, preset=preset, gop_size=gop)
                seconds = time.perf_counter() - start
            out = codec.decode(data)
            points[precision].append({"quality": q, "seconds": seconds, "bpp": 8 * len(data) / pixels,
                                      "psnr": psnr(frames, out), "ms_ssim": ms_ssim(frames, out)})

    def bd(metric: str) -> float | None:
        """None where the two curves cannot be compared (too few points where both rise)."""
        curves = [([x["bpp"] for x in points[p]], [x[metric] for x in points[p]]) for p in PRECISIONS]
        try:
            return bd_rate(*curves[0], *curves[1])
        except BDRateError:
            return None

    return {"points": points, "bd_rate_psnr": bd("psnr"), "bd_rate_ms_ssim": bd("ms_ssim"),
            "seconds_ratio": sum(x["seconds"] for x in points["bfloat16"])
            / sum(x["seconds"] for x in points["float32"])}


def report(clips: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per clip and the means (of the clips where a BD-rate exists)."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.2f}%"

    def mean(key: str) -> float | None:
        values = [r[key] for r in clips.values() if r[key] is not None]
        return statistics.mean(values) if values else None

    lines = ["| clip | BD-rate PSNR | BD-rate MS-SSIM | encode seconds bf16 / f32 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {pct(r['bd_rate_psnr'])} | {pct(r['bd_rate_ms_ssim'])} | {r['seconds_ratio']:.3f} |"
              for name, r in clips.items()]
    lines.append(f"| **mean of {len(clips)}** | **{pct(mean('bd_rate_psnr'))}** | **{pct(mean('bd_rate_ms_ssim'))}** "
                 f"| **{mean('seconds_ratio'):.3f}** |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", type=Path, help="a folder of clips (../shared/clips/dev)")
    ap.add_argument("--model", default=None, help="a shipped model or a .safetensors file (default: the default)")
    ap.add_argument("--only", default="", help="comma-separated parts of clip names to keep")
    ap.add_argument("--qualities", default="30,45,60,75,90")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-side", type=int, default=480)
    ap.add_argument("--gop", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from progvc.bench.rd import find_clips, read_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = load_codec(args.model, "cpu")
    qualities = [int(q) for q in args.qualities.split(",")]
    clips: dict[str, dict[str, Any]] = {}
    for path in find_clips(args.clips, args.only):
        frames = read_frames(path, args.frames, args.max_side)
        clips[path.name] = measure_clip(codec, frames, qualities, args.preset, args.gop)
        print(report({path.name: clips[path.name]}).splitlines()[2], file=sys.stderr, flush=True)
    print(report(clips))
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "qualities": qualities, "frames": args.frames,
                                         "max_side": args.max_side, "gop": args.gop,
                                         "bfloat16_pays": _native(), "clips": clips}, indent=1) + "\n")
    return 0


def _native() -> bool:
    import torch

    from progvc.runtime.devices import bfloat16_pays

    return bfloat16_pays(torch.device("cpu"))


if __name__ == "__main__":
    sys.exit(main())
