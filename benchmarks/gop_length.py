"""What a longer GOP buys on longer clips: the same frames coded with GOPs of 8 and of more frames.

    python -m benchmarks.gop_length ../shared/clips/dev --out gop.jsonl \\
        --only cars-highway,BlowingBubbles,BasketballDrill,park-path-walkers
    python -m benchmarks.gop_length --report gop.jsonl

Each clip: its first ``--frames`` frames, long side area-downscaled to at most ``--max-side`` (the
dev setting, with more frames), coded at every ``--qualities`` with every ``--gops`` (full size,
every scale), decoded and scored; one JSON line per stream, appended (a rerun skips what is there).
``--report`` prints, per clip, the change in bits and the PSNR at the longer GOP's rates minus the
GOP-8 curve's there (the two-quality line through GOP 8's points, in log-rate).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def run(args: argparse.Namespace) -> None:
    import progvc
    from progvc.bench.metrics import SequenceMetrics
    from progvc.bench.rd import find_clips, read_frames

    out = Path(args.out)
    done = {(r["clip"], r["q"], r["gop"]) for r in _rows(out)} if out.exists() else set()
    codec = progvc.Codec.from_pretrained(device="cpu")
    wanted = [s for s in args.only.split(",") if s]
    for path in find_clips(args.clips):
        if wanted and not any(w in path.name for w in wanted):
            continue
        video = read_frames(path, args.frames, args.max_side)
        metrics = SequenceMetrics(video)
        for q in args.qualities:
            for gop in args.gops:
                if (path.name, q, gop) in done:
                    continue
                res = codec.encode_with_stats(video, quality=q, gop_size=gop, resize=1)
                row = {"clip": path.name, "q": q, "gop": gop, "frames": len(video), "bpp": res.bpp,
                       **metrics(codec.decode(res.bitstream))}
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{path.name} q={q:g} gop={gop}: {res.bpp:.4f} bpp {row['psnr_rgb']:.2f} dB", flush=True)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(path: Path) -> str:
    """Per clip and longer GOP: bits against GOP 8 at each quality, and PSNR at its rates against
    GOP 8's curve (a line in log-rate through GOP 8's lowest and highest quality)."""
    rows = _rows(path)
    lines = ["| clip | GOP | bits against GOP 8, per quality | PSNR-RGB at its rates minus GOP 8's curve |",
             "|---|---:|---:|---:|"]
    bits, gains = [], []
    for clip in sorted({r["clip"] for r in rows}):
        by = {(r["gop"], r["q"]): r for r in rows if r["clip"] == clip}
        qs = sorted({q for g, q in by if g == 8})
        if len(qs) < 2:
            continue
        lo, hi = by[(8, qs[0])], by[(8, qs[-1])]
        slope = (hi["psnr_rgb"] - lo["psnr_rgb"]) / math.log2(hi["bpp"] / lo["bpp"])
        for gop in sorted({g for g, _ in by if g != 8}):
            pts = [(by[(8, q)], by[(gop, q)]) for q in qs if (gop, q) in by]
            b = [100 * (o["bpp"] / a["bpp"] - 1) for a, o in pts]
            d = [o["psnr_rgb"] - (lo["psnr_rgb"] + slope * math.log2(o["bpp"] / lo["bpp"])) for _, o in pts]
            bits += b
            gains += d
            lines.append(f"| {clip[:40]} | {gop} | " + ", ".join(f"{x:+.0f}%" for x in b) + " | "
                         + ", ".join(f"{x:+.2f} dB" for x in d) + " |")
    lines.append(f"| mean | | {np.mean(bits):+.0f}% | {np.mean(gains):+.2f} dB |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="?")
    p.add_argument("--out", help="JSON lines file (appended)")
    p.add_argument("--only", default="", help="comma-separated parts of clip names to keep")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--gops", type=lambda s: [int(x) for x in s.split(",")], default=[8, 24])
    p.add_argument("--qualities", type=lambda s: [float(x) for x in s.split(",")], default=[45.0, 60.0])
    p.add_argument("--report", metavar="JSONL")
    args = p.parse_args(argv)
    if args.report:
        print(report(Path(args.report)))
        return 0
    if not (args.clips and args.out):
        p.error("give the clips folder and --out, or --report")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
