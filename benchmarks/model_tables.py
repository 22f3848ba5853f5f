"""Markdown tables for progvc/weights/README.md from the evaluation files (no numbers typed by hand).

    python -m benchmarks.model_tables benchmarks/results/eval_dev.json benchmarks/results/dev/results.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def floors(ev: dict) -> str:
    s = ev["summary"]
    how = f"refine {ev['refine']}, as encode does" if ev.get("refine") else "greedy"
    rows = [
        (f"tokenizer alone, full scales ({how}): mean PSNR-RGB", f"{s['tokenizer_psnr']:.2f} dB", ">= 24 dB",
         s["tokenizer_psnr"] >= 24),
        (f"tokenizer alone, full scales ({how}): mean MS-SSIM", f"{s['tokenizer_ms_ssim']:.4f}", ">= 0.90",
         s["tokenizer_ms_ssim"] >= 0.90),
        ("codebook entries used on dev", f"{100 * s['codebook_used']:.1f}% (perplexity {s['codebook_perplexity']:.0f})",
         ">= 50%", s["codebook_used"] >= 0.5),
        ("coded bits per token, full scale", f"{s['full_scale_bits_per_token']:.2f} of {s['log2_codebook']:.0f} "
         f"({100 * s['full_scale_saving_vs_log2V']:.1f}% below)", ">= 30% below",
         s["full_scale_saving_vs_log2V"] >= 0.3),
        ("bytes saved by temporal context", f"{100 * s['temporal_saving']:.1f}%", ">= 15%",
         s["temporal_saving"] >= 0.15),
    ]
    if ev.get("refine"):
        rows[2:2] = [("the same, greedy tokenizer (refine 0): PSNR-RGB / MS-SSIM",
                      f"{s['greedy_tokenizer_psnr']:.2f} dB / {s['greedy_tokenizer_ms_ssim']:.4f}", "", None)]
    out = ["| measure (dev clips) | reached | floor | met |", "|---|---:|---:|:---:|"]
    out += [f"| {a} | {b} | {c} | {'' if d is None else 'yes' if d else '**no**'} |" for a, b, c, d in rows]
    return "\n".join(out)


def per_clip(ev: dict) -> str:
    out = ["| clip | size | tokenizer PSNR / MS-SSIM | bpp (all scales) | bits/token full scale (intra) | "
           "temporal saving |", "|---|---|---:|---:|---:|---:|"]
    for r in ev["clips"]:
        bpp = 8 * r["bytes"] / (r["frames"] * r["width"] * r["height"])
        greedy = (f" (greedy {r['greedy_tokenizer_psnr']:.2f} / {r['greedy_tokenizer_ms_ssim']:.3f})"
                  if "greedy_tokenizer_psnr" in r and ev.get("refine") else "")
        out.append(f"| {r['clip'][:44]} | {r['width']}x{r['height']} | {r['tokenizer_psnr']:.2f} / "
                   f"{r['tokenizer_ms_ssim']:.3f}{greedy} | {bpp:.4f} | {r['bits_per_token'][-1]:.2f} "
                   f"({r['intra_bits_per_token'][-1]:.2f}) | {100 * (1 - r['bytes'] / r['intra_bytes']):.1f}% |")
    return "\n".join(out)


def rd_points(doc: dict) -> str:
    out = ["| clip | n_scales | bpp | PSNR sent only | MS-SSIM sent only | PSNR sampled | MS-SSIM sampled |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for run in doc["runs"]:
        if run["codec"] != "progvc":
            continue
        pts = {(p["n_scales"], p["sample"]): p for p in run["points"]}
        for n in sorted({k[0] for k in pts}):
            a, b = pts.get((n, False)), pts.get((n, True))
            if a is None or b is None:
                continue
            out.append(f"| {run['clip'][:36]} | {n} | {a['bpp']:.4f} | {a['psnr_rgb']:.2f} | {a['ms_ssim']:.4f} | "
                       f"{b['psnr_rgb']:.2f} | {b['ms_ssim']:.4f} |")
    return "\n".join(out)


def at_rate(points: list[dict], bpp: float, key: str) -> float | None:
    """A baseline's ``key`` at ``bpp``, linear in log(bpp) between its two nearest CRF points;
    None outside the range it was measured over (no extrapolation)."""
    pts = sorted((p["bpp"], p[key]) for p in points if p.get(key) is not None)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:], strict=False):
        if r0 <= bpp <= r1:
            w = 0.0 if r1 == r0 else (math.log(bpp) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return q0 + w * (q1 - q0)
    return None


def versus_baselines(doc: dict, baselines: tuple[str, ...] = ("x265", "svtav1")) -> str:
    """progvc with every scale sent, against each baseline at the same bpp (interpolated over its
    CRF sweep, same clip, frames and GOP): PSNR-RGB / MS-SSIM / VMAF."""
    runs = {(r["codec"], r["clip"]): r for r in doc["runs"]}
    keys = ("psnr_rgb", "ms_ssim", "vmaf")
    out = ["| clip | progvc bpp | progvc PSNR / MS-SSIM / VMAF | "
           + " | ".join(f"{b} at that bpp" for b in baselines) + " |",
           "|---|---:|---|" + "---|" * len(baselines)]

    def fmt(vals: list[float | None]) -> str:
        if any(v is None for v in vals):
            return "outside its range"
        return f"{vals[0]:.2f} / {vals[1]:.3f} / {vals[2]:.1f}"

    for (codec, clip), run in runs.items():
        if codec != "progvc":
            continue
        full = max((p for p in run["points"] if not p["sample"]), key=lambda p: p["n_scales"])
        cells = [fmt([at_rate(runs[(b, clip)]["points"], full["bpp"], k) if (b, clip) in runs else None
                      for k in keys]) for b in baselines]
        out.append(f"| {clip[:36]} | {full['bpp']:.4f} | {fmt([full[k] for k in keys])} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    ev = json.loads(Path(args[0]).read_text())
    print("## Floors\n\n" + floors(ev) + "\n\n## Per clip\n\n" + per_clip(ev))
    if len(args) > 1:
        doc = json.loads(Path(args[1]).read_text())
        print("\n## Every n_scales, with and without sampling\n\n" + rd_points(doc))
        print("\n## Against x265 and SVT-AV1 at the same bitrate\n\n" + versus_baselines(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
