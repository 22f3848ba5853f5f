"""What a longer GOP buys on longer clips: the same frames coded with GOPs of 8 and of more frames.

    python -m benchmarks.gop_length ../shared/clips/dev --out gop.jsonl \\
        --only cars-highway,BlowingBubbles,BasketballDrill,park-path-walkers
    python -m benchmarks.gop_length --report gop.jsonl

Each clip: its first ``--frames`` frames, long side area-downscaled to at most ``--max-side`` (the
dev setting, with more frames), coded at every ``--qualities`` with every ``--gops`` (full size,
every scale), decoded and scored; one JSON line per stream, appended (a rerun skips what is there).
``--report`` prints, per clip, the change in bits at each quality and the BD-PSNR of the longer
GOP's curve against GOP 8's over the rates both reach.

``--anchors x265`` (or x264, svtav1) also codes the same frames with that codec at every ``--gops``
(a keyframe exactly every GOP, its CRF sweep; :mod:`progvc.bench.baselines`), and the report adds
progvc's BD-rate against it at each GOP length: whether a longer GOP narrows the gap or the
conventional codec gains as much.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def run(args: argparse.Namespace) -> None:
    import progvc
    from progvc.bench.baselines import encode_decode, get_baseline
    from progvc.bench.metrics import SequenceMetrics
    from progvc.bench.rd import find_clips, read_frames

    out = Path(args.out)
    done = {(r["clip"], _key(r), r["gop"]) for r in _rows(out)} if out.exists() else set()
    codec = progvc.Codec.from_pretrained(device="cpu")
    for path in find_clips(args.clips, args.only):
        video = read_frames(path, args.frames, args.max_side)
        metrics = SequenceMetrics(video)
        for q in args.qualities:
            for gop in args.gops:
                if (path.name, q, gop) in done:
                    continue
                res = codec.encode_with_stats(video, quality=q, gop_size=gop, resize=1)
                _append(out, {"clip": path.name, "q": q, "gop": gop, "frames": len(video), "bpp": res.bpp,
                              **metrics(codec.decode(res.bitstream))})
        for name in args.anchors:
            for gop in args.gops:
                for crf in get_baseline(name).default_crfs:
                    if (path.name, f"{name}:{crf}", gop) in done:
                        continue
                    res = encode_decode(video, name, crf, gop=gop)
                    _append(out, {"clip": path.name, "codec": name, "crf": crf, "gop": gop, "frames": len(video),
                                  "bpp": 8 * res.nbytes / video[..., 0].size, **metrics(res.frames)})


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    what = f"q={row['q']:g}" if "q" in row else f"{row['codec']} crf={row['crf']}"
    print(f"{row['clip']} {what} gop={row['gop']}: {row['bpp']:.4f} bpp {row['psnr_rgb']:.2f} dB", flush=True)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(row: dict) -> float | str:
    """What a row was coded at: progvc's quality, or "codec:crf" for an anchor."""
    return row["q"] if "codec" not in row else f"{row['codec']}:{row['crf']}"


def report(path: Path) -> str:
    """Per clip and longer GOP: bits against GOP 8 at each quality, and the BD-PSNR of its curve
    against GOP 8's (:func:`progvc.bench.bdrate.bd_quality`: over the rates both reach, no
    extrapolation); then progvc's BD-rate against each anchor per GOP (:func:`_against`)."""
    from progvc.bench.bdrate import BDRateError, bd_quality

    every = _rows(path)
    rows = [r for r in every if "codec" not in r]
    lines = ["| clip | GOP | bits against GOP 8, per quality | BD-PSNR-RGB against GOP 8 |", "|---|---:|---:|---:|"]
    bits: dict[int, list[float]] = {}
    gains: dict[int, list[float]] = {}
    for clip in sorted({r["clip"] for r in rows}):
        by = {(r["gop"], r["q"]): r for r in rows if r["clip"] == clip}
        qs = sorted({q for g, q in by if g == 8})
        for gop in sorted({g for g, _ in by if g != 8}):
            pts = [(by[(8, q)], by[(gop, q)]) for q in qs if (gop, q) in by]
            b = [100 * (o["bpp"] / a["bpp"] - 1) for a, o in pts]
            try:
                d = bd_quality([a["bpp"] for a, _ in pts], [a["psnr_rgb"] for a, _ in pts],
                               [o["bpp"] for _, o in pts], [o["psnr_rgb"] for _, o in pts])
            except BDRateError:  # fewer than two qualities, or rates that do not overlap
                d = None
            bits.setdefault(gop, []).extend(b)
            if d is not None:
                gains.setdefault(gop, []).append(d)
            lines.append(f"| {clip[:40]} | {gop} | " + ", ".join(f"{x:+.0f}%" for x in b) + " | "
                         + ("n/a" if d is None else f"{d:+.2f} dB") + " |")
    lines += [f"| mean | {gop} | {np.mean(bits[gop]):+.0f}% | "
              + (f"{np.mean(gains[gop]):+.2f} dB ({len(gains[gop])})" if gop in gains else "n/a") + " |"
              for gop in sorted(bits)]
    anchors = sorted({r["codec"] for r in every if "codec" in r})
    return "\n".join(lines + [t for name in anchors for t in ("", _against(every, name))])


def _against(rows: list[dict], anchor: str) -> str:
    """progvc's BD-rate (PSNR-RGB / MS-SSIM) against ``anchor`` on each clip, both at the same GOP."""
    from progvc.bench.bdrate import BDRateError, bd_rate

    gops = sorted({r["gop"] for r in rows if r.get("codec") == anchor})
    lines = [f"progvc's BD-rate against {anchor} at the same GOP (PSNR-RGB / MS-SSIM; negative: fewer bits):", "",
             "| clip | " + " | ".join(f"GOP {g}" for g in gops) + " |", "|---|" + "---:|" * len(gops)]
    found: dict[int, list[tuple[float, float]]] = {g: [] for g in gops}
    for clip in sorted({r["clip"] for r in rows}):
        cells = []
        for g in gops:
            ours = [r for r in rows if r["clip"] == clip and r["gop"] == g and "codec" not in r]
            theirs = [r for r in rows if r["clip"] == clip and r["gop"] == g and r.get("codec") == anchor]
            try:
                bd = tuple(bd_rate([r["bpp"] for r in theirs], [r[m] for r in theirs],
                                   [r["bpp"] for r in ours], [r[m] for r in ours]) for m in ("psnr_rgb", "ms_ssim"))
            except BDRateError:
                cells.append("n/a")
                continue
            found[g].append(bd)
            cells.append(f"{bd[0]:+.0f}% / {bd[1]:+.0f}%")
        lines.append(f"| {clip[:40]} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([b[0] for b in found[g]]):+.0f}% / {np.mean([b[1] for b in found[g]]):+.0f}% "
             f"({len(found[g])})" if found[g] else "n/a" for g in gops]
    lines.append("| mean (clips) | " + " | ".join(means) + " |")
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
    p.add_argument("--anchors", type=lambda s: [x for x in s.split(",") if x], default=[],
                   help="conventional codecs to code at the same GOPs too (x264, x265, svtav1)")
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
