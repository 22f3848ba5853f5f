"""What the portable model costs in bits: BD-rate of one progression results file against another.

::

    python -m benchmarks.portable_bits benchmarks/results/progression_v4_format7.json \\
        benchmarks/results/progression_v4p.json

Both files come from ``benchmarks.progression`` in the dev setting (8 frames, long side <= 480,
GOP 8); only clips present in both count. For each clip, BD-rate of the second (test) against the
first (anchor) in PSNR (RGB) and MS-SSIM on two curves: the quality sweep (every scale, qualities
30..90) and the quality-60 stream cut to n = 5..K scales (the default fill below K, every scale at
K). Prints a Markdown table with the per-clip numbers and their mean.

A second table is the cut stream at equal rate, truncated points only (n = 5..K-1): BD-PSNR (dB)
and BD-MS-SSIM of test against anchor per clip, then the mean VMAF of each at every n (issue 30's
"truncated streams" target reads these).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("psnr_rgb", "ms_ssim")


def curves(clip: dict[str, Any], fill: str) -> dict[str, list[dict]]:
    """The two curves of one clip: the sweep's points and the cut stream's (``fill`` below K)."""
    k = max(p["n_scales"] for p in clip["points"])
    cut = [p for p in clip["points"] if (p["fill"] == fill and p["n_scales"] < k) or p["n_scales"] == k]
    return {"sweep": clip["sweep"], "cut": sorted(cut, key=lambda p: p["n_scales"])}


def compare(anchor: dict[str, Any], test: dict[str, Any], fill: str = "sample") -> list[dict[str, Any]]:
    """Per common clip and curve: BD-rate (%) of test against anchor for each metric."""
    from progvc.bench.bdrate import bd_rate

    rows = []
    for name in [c for c in anchor["clips"] if c in test["clips"]]:
        a, t = curves(anchor["clips"][name], fill), curves(test["clips"][name], fill)
        row: dict[str, Any] = {"clip": name}
        for curve in ("sweep", "cut"):
            for m in METRICS:
                row[f"{curve}_{m}"] = bd_rate([p["bpp"] for p in a[curve]], [p[m] for p in a[curve]],
                                              [p["bpp"] for p in t[curve]], [p[m] for p in t[curve]])
        rows.append(row)
    return rows


def cut_quality(anchor: dict[str, Any], test: dict[str, Any], fill: str = "sample") -> dict[str, Any]:
    """The cut stream's truncated points (n < K) at equal rate: per common clip BD-quality of test
    against anchor (``psnr_rgb`` in dB, ``ms_ssim``), and per n the mean VMAF of anchor and test."""
    from progvc.bench.bdrate import bd_quality

    rows, vmaf = [], {}
    for name in [c for c in anchor["clips"] if c in test["clips"]]:
        a, t = (curves(doc["clips"][name], fill)["cut"][:-1] for doc in (anchor, test))  # drop n = K
        rows.append({"clip": name, **{m: bd_quality([p["bpp"] for p in a], [p[m] for p in a],
                                                    [p["bpp"] for p in t], [p[m] for p in t]) for m in METRICS}})
        for pa, pt in zip(a, t, strict=True):
            vmaf.setdefault(pa["n_scales"], []).append((pa.get("vmaf", math.nan), pt.get("vmaf", math.nan)))
    return {"rows": rows, "vmaf": {n: tuple(float(np.mean([v[i] for v in vs])) for i in (0, 1))
                                   for n, vs in sorted(vmaf.items())}}


def cut_table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    out = ["| clip | BD-PSNR (dB) | BD-MS-SSIM |", "|---|---:|---:|"]
    out += [f"| {r['clip'].split('__')[1]} | {r['psnr_rgb']:+.2f} | {r['ms_ssim']:+.3f} |" for r in rows]
    out.append(f"| mean of {len(rows)} | {np.mean([r['psnr_rgb'] for r in rows]):+.2f} | "
               f"{np.mean([r['ms_ssim'] for r in rows]):+.3f} |")
    out += ["", "| n | VMAF anchor | VMAF test |", "|---:|---:|---:|"]
    out += [f"| {n} | {a:.1f} | {t:.1f} |" for n, (a, t) in result["vmaf"].items()]
    return "\n".join(out)


def table(rows: list[dict[str, Any]]) -> str:
    keys = [f"{c}_{m}" for c in ("sweep", "cut") for m in METRICS]
    out = ["| clip | sweep PSNR | sweep MS-SSIM | cut PSNR | cut MS-SSIM |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['clip'].split('__')[1]} | " + " | ".join(f"{r[k]:+.2f}%" for k in keys) + " |")
    out.append(f"| mean of {len(rows)} | " + " | ".join(f"{np.mean([r[k] for r in rows]):+.2f}%" for k in keys) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("anchor", type=Path)
    p.add_argument("test", type=Path)
    p.add_argument("--fill", default="sample", help="the cut stream's fill below K (default: the default fill)")
    args = p.parse_args(argv)
    anchor, test = json.loads(args.anchor.read_text()), json.loads(args.test.read_text())
    print(table(compare(anchor, test, args.fill)))
    print()
    print(cut_table(cut_quality(anchor, test, args.fill)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
