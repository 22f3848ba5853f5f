"""The decoder's synthesis in bfloat16 against float32: decode time and the pictures' difference.

::

    python -m benchmarks.decode_precision ../shared/clips/dev --json decode_precision.json

:meth:`progvc.models.tokenizer.Tokenizer.synthesise` runs ``g_s`` in bfloat16 (all but its last
convolution) where the CPU computes it natively (:func:`progvc.models.tokenizer.synthesis_in_bfloat16`).
This benchmark encodes each clip once (first ``--frames`` frames, long side <= ``--max-side``, one GOP
of ``--gop``: the setting of benchmarks/results/dev; ``--quality``, ``--preset``), then decodes the
stream and its cut to ``--cut`` scales (the default fill) in float32 and bfloat16 in A B B A turns,
and reports per decode: seconds (the median of each precision's two), PSNR-RGB and MS-SSIM of both,
and the largest and mean absolute difference between the two pictures in 8-bit levels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from .refine_precision import forced_switch
from .speed import load_codec

PRECISIONS = ("float32", "bfloat16")


def forced_synthesis(precision: str) -> AbstractContextManager[None]:
    """The decoder's synthesis in ``precision`` (the switch ``synthesis_in_bfloat16``)."""
    return forced_switch("synthesis_in_bfloat16", precision)


def measure_stream(codec: Any, frames: np.ndarray, data: bytes) -> dict[str, Any]:
    """Both precisions' decodes of one stream, in A B B A turns."""
    from progvc.bench.metrics import ms_ssim, psnr

    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    pictures: dict[str, np.ndarray] = {}
    for precision in (*PRECISIONS, *reversed(PRECISIONS)):
        with forced_synthesis(precision):
            start = time.perf_counter()
            pictures[precision] = codec.decode(data)
            seconds[precision].append(time.perf_counter() - start)
    diff = np.abs(pictures["bfloat16"].astype(np.int16) - pictures["float32"])
    row: dict[str, Any] = {"bytes": len(data), "max_diff": int(diff.max()), "mean_diff": float(diff.mean())}
    for p in PRECISIONS:
        row[p] = {"seconds": statistics.median(seconds[p]), "psnr": psnr(frames, pictures[p]),
                  "ms_ssim": ms_ssim(frames, pictures[p])}
    row["seconds_ratio"] = row["bfloat16"]["seconds"] / row["float32"]["seconds"]
    return row


def measure_clip(codec: Any, frames: np.ndarray, quality: float, preset: str, gop: int, cut: int) -> dict[str, Any]:
    """The full stream's and its cut's rows (:func:`measure_stream`)."""
    import progvc

    data = codec.encode(frames, quality=quality, preset=preset, gop_size=gop)
    return {"full": measure_stream(codec, frames, data),
            f"cut_{cut}": measure_stream(codec, frames, progvc.truncate(data, n_scales=cut))}


def report(clips: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per clip and decode, and the means."""
    lines = ["| clip | decode | seconds f32 / bf16 (ratio) | PSNR f32 / bf16 | MS-SSIM f32 / bf16 | max / mean diff |",
             "|---|---|---:|---:|---:|---:|"]
    rows = [(name, kind, r) for name, c in clips.items() for kind, r in c.items()]
    for name, kind, r in rows:
        f, b = r["float32"], r["bfloat16"]
        lines.append(f"| {name} | {kind} | {f['seconds']:.2f} / {b['seconds']:.2f} ({r['seconds_ratio']:.3f}) | "
                     f"{f['psnr']:.4f} / {b['psnr']:.4f} | {f['ms_ssim']:.5f} / {b['ms_ssim']:.5f} | "
                     f"{r['max_diff']} / {r['mean_diff']:.3f} |")
    for kind in sorted({k for _, k, _ in rows}):
        sel = [r for _, k, r in rows if k == kind]
        dpsnr = [r["bfloat16"]["psnr"] - r["float32"]["psnr"] for r in sel]
        ratio = np.mean([r["seconds_ratio"] for r in sel])
        lines.append(f"| **mean of {len(sel)}** | {kind} | ratio **{ratio:.3f}** | "
                     f"bf16 - f32: {np.mean(dpsnr):+.4f} dB ({min(dpsnr):+.4f}..{max(dpsnr):+.4f}) | | "
                     f"{max(r['max_diff'] for r in sel)} / {np.mean([r['mean_diff'] for r in sel]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from progvc.bench.rd import find_clips, read_frames

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", type=Path)
    p.add_argument("--only", default="", help="comma-separated parts of clip names to keep")
    p.add_argument("--model", default=None)
    p.add_argument("--quality", type=float, default=60.0)
    p.add_argument("--preset", default="medium")
    p.add_argument("--cut", type=int, default=7, help="scales of the cut stream")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--gop", type=int, default=8)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    codec = load_codec(args.model, "cpu")
    clips: dict[str, dict[str, Any]] = {}
    for path in find_clips(args.clips, args.only):
        frames = read_frames(path, args.frames, args.max_side)
        clips[path.name] = measure_clip(codec, frames, args.quality, args.preset, args.gop, args.cut)
        print(f"{path.name}: {json.dumps({k: round(v['seconds_ratio'], 3) for k, v in clips[path.name].items()})}",
              file=sys.stderr, flush=True)
    print(report(clips))
    if args.json:
        settings = {k: getattr(args, k) for k in ("model", "quality", "preset", "cut", "frames", "max_side", "gop")}
        args.json.write_text(json.dumps({"settings": settings, "clips": clips}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
