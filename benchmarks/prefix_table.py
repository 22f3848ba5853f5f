"""Markdown table of :mod:`benchmarks.tokenizer_prefixes` results side by side: per prefix n, the mean
PSNR / MS-SSIM / grid excess of each run over the clips they share, and the difference to the first.

    python -m benchmarks.prefix_table benchmarks/results/v5/v4_prefixes.json \
        benchmarks/results/v5/leg1_step500_prefixes.json --names v4,step500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def means(result: dict, clips: list[str]) -> dict[int, dict[str, float]]:
    """n -> mean psnr / ms_ssim / grid_excess over ``clips`` of one result file's ``clips`` rows."""
    out: dict[int, dict[str, float]] = {}
    for n in sorted({int(r["n"]) for c in clips for r in result["clips"][c]}):
        rows = [r for c in clips for r in result["clips"][c] if int(r["n"]) == n]
        if len(rows) == len(clips):
            out[n] = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ms_ssim", "grid_excess")}
    return out


def table(results: list[dict], names: list[str]) -> str:
    """One row per prefix n present in every result; the first result is the baseline."""
    clips = sorted(set.intersection(*(set(r["clips"]) for r in results)))
    cols = [means(r, clips) for r in results]
    ns = sorted(set.intersection(*(set(c) for c in cols)))
    head = "| n | " + " | ".join(f"{m}: PSNR / MS-SSIM / grid excess" for m in names)
    head += "".join(f" | {m} - {names[0]} dB" for m in names[1:]) + " |"
    lines = [f"clips: {', '.join(clips)}", "", head, "|---:" * (1 + len(names) + len(names) - 1) + "|"]
    for n in ns:
        cells = [f"{c[n]['psnr']:.2f} / {c[n]['ms_ssim']:.3f} / {c[n]['grid_excess']:+.3f}" for c in cols]
        diffs = [f"{c[n]['psnr'] - cols[0][n]['psnr']:+.2f}" for c in cols[1:]]
        lines.append(f"| {n} | " + " | ".join(cells + diffs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+")
    p.add_argument("--names", default="")
    a = p.parse_args(argv)
    names = a.names.split(",") if a.names else [Path(r).stem for r in a.results]
    print(table([json.loads(Path(r).read_text()) for r in a.results], names))


if __name__ == "__main__":
    main()
