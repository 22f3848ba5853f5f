"""Markdown summary and rate-quality plots of a ``progvc-bench/1`` results document.

Curves: a baseline run is one curve named after its codec; a progvc run is two curves, ``progvc``
(``sample=True``: scales that were not transmitted are sampled by the context model, the product's
default) and ``progvc-nosample`` (``sample=False``: the coded scales only). BD-rates are of each
progvc curve (test) against each baseline (anchor), per metric, per clip, and their mean over the
clips where the curves overlap (the usual way codec test conditions average BD-rates). The averaged
plot averages bpp and each metric over clips at equal settings (same CRF, same scale count), using
only the settings every clip has.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .bdrate import BDRateError, bd_rate
from .results import HIGHER_IS_BETTER, OPTIONAL_METRICS, REQUIRED_METRICS

Curves = dict[str, dict[str, list[dict[str, Any]]]]  # clip -> curve label -> points sorted by bpp


def curves(doc: dict[str, Any]) -> Curves:
    """Group the points of ``doc`` by clip and curve label; labels are unique within a clip."""
    out: Curves = defaultdict(dict)
    for run in doc["runs"]:
        if run["codec"] == "progvc":
            parts = [("progvc", [p for p in run["points"] if p["sample"]]),
                     ("progvc-nosample", [p for p in run["points"] if not p["sample"]])]
        else:
            parts = [(run["codec"], run["points"])]
        for label, points in parts:
            if not points:
                continue
            name, n = label, 2
            while name in out[run["clip"]]:
                name, n = f"{label}#{n}", n + 1
            out[run["clip"]][name] = sorted(points, key=lambda p: p["bpp"])
    return dict(out)


def metrics_present(doc: dict[str, Any]) -> list[str]:
    """Metric keys with at least one value in ``doc``, in table order."""
    points = [p for r in doc["runs"] for p in r["points"]]
    extra = [m for m in OPTIONAL_METRICS if any(p.get(m) is not None for p in points)]
    return [*REQUIRED_METRICS, *extra]


def _bd(anchor: list[dict[str, Any]], test: list[dict[str, Any]], metric: str) -> float:
    """BD-rate in percent, NaN when the curves cannot be compared for this metric."""
    try:
        return bd_rate([p["bpp"] for p in anchor], [_nan(p.get(metric)) for p in anchor],
                       [p["bpp"] for p in test], [_nan(p.get(metric)) for p in test],
                       higher_is_better=HIGHER_IS_BETTER[metric])
    except BDRateError:
        return math.nan


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def bd_rates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{"test", "anchor", "clip", metric: BD-rate % or NaN}``; clip ``"mean"`` averages clips."""
    metrics = metrics_present(doc)
    rows: list[dict[str, Any]] = []
    by_clip = curves(doc)
    pairs = sorted({(t, a) for c in by_clip.values() for t in c if t.startswith("progvc")
                    for a in c if not a.startswith("progvc")})
    for test, anchor in pairs:
        group = []
        for clip, cs in sorted(by_clip.items()):
            if test in cs and anchor in cs:
                group.append({"test": test, "anchor": anchor, "clip": clip,
                              **{m: _bd(cs[anchor], cs[test], m) for m in metrics}})
        mean: dict[str, Any] = {"test": test, "anchor": anchor, "clip": "mean"}
        for m in metrics:
            vals = [g[m] for g in group if math.isfinite(g[m])]
            mean[m] = float(np.mean(vals)) if vals else math.nan
            mean[f"{m}_clips"] = (len(vals), len(group))
        rows += [*group, mean]
    return rows


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _setting(p: dict[str, Any]) -> str:
    return f"crf {p['crf']}" if p["crf"] is not None else f"{p['n_scales']} scales"


def summary_markdown(doc: dict[str, Any]) -> str:
    """The whole report as Markdown: notes, BD-rate table, then every point of every clip."""
    metrics = metrics_present(doc)
    cfg = doc.get("config", {})
    lines = ["# progvc rate-quality benchmark", "",
             f"Schema `{doc['schema']}`; {len(doc['clips'])} clips; "
             + ", ".join(f"{k} {v}" for k, v in cfg.items()), ""]
    notes = [*doc.get("notes", []), *(f"{r['codec']} on {r['clip']}: {n}" for r in doc["runs"]
                                      for n in r.get("notes", []))]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in dict.fromkeys(notes)), ""]
    lines += ["## BD-rate of progvc against each anchor (%)", "",
              "Negative: progvc needs fewer bits for the same quality. PCHIP over the overlapping quality "
              "range; n/a where the curves do not overlap. Mean rows average the clips that overlap "
              "(count in brackets).", "",
              "| progvc curve | anchor | clip | " + " | ".join(metrics) + " |",
              "|---|---|---|" + "---:|" * len(metrics)]
    rows = bd_rates(doc)
    if not rows:
        lines.append("| (no progvc and baseline curves on a common clip) | | |" + " |" * len(metrics))
    for row in rows:
        cells = []
        for m in metrics:
            cell = _fmt(row[m], 1)
            if row["clip"] == "mean":
                cell = f"**{cell}** ({row[m + '_clips'][0]}/{row[m + '_clips'][1]})"
            cells.append(cell)
        lines.append(f"| {row['test']} | {row['anchor']} | {row['clip']} | " + " | ".join(cells) + " |")
    lines.append("")
    sizes = {c["name"]: c for c in doc["clips"]}
    for clip, cs in sorted(curves(doc).items()):
        c = sizes[clip]
        lines += [f"## {clip} ({c['width']}x{c['height']}, {c['frames']} frames)", "",
                  "| curve | bpp range | points |", "|---|---|---:|"]
        for label, pts in cs.items():
            lines.append(f"| {label} | {pts[0]['bpp']:.4f} - {pts[-1]['bpp']:.4f} | {len(pts)} |")
        lines += ["", "| curve | setting | bpp | bytes | " + " | ".join(metrics)
                  + " | encode s | decode s | estimated bits |",
                  "|---|---|---:|---:|" + "---:|" * (len(metrics) + 3)]
        for label, pts in cs.items():
            for p in pts:
                vals = " | ".join(_fmt(p.get(m), 4 if m in ("ms_ssim", "lpips", "dists", "kid_vgg") else 2)
                                  for m in metrics)
                lines.append(f"| {label} | {_setting(p)} | {p['bpp']:.4f} | {p['bytes']} | {vals} | "
                             f"{p['encode_s']:.2f} | {p['decode_s']:.2f} | {_fmt(p['estimated_bits'], 0)} |")
        lines.append("")
    return "\n".join(lines)


def write_summary(doc: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`summary_markdown` to ``path``."""
    path = Path(path)
    path.write_text(summary_markdown(doc))
    return path


def averaged_curves(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per curve label, points averaged over clips at equal settings present in every clip."""
    by_clip = curves(doc)
    labels = sorted({label for cs in by_clip.values() for label in cs})
    metrics = metrics_present(doc)
    out: dict[str, list[dict[str, Any]]] = {}
    for label in labels:
        per_clip = [{_setting(p): p for p in cs[label]} for cs in by_clip.values() if label in cs]
        if len(per_clip) != len(by_clip):
            continue  # a curve missing on some clip has no fair average
        common = set.intersection(*(set(d) for d in per_clip))
        pts = []
        for s in common:
            group = [d[s] for d in per_clip]
            avg = {"bpp": float(np.mean([p["bpp"] for p in group]))}
            for m in metrics:
                vals = [p.get(m) for p in group]
                avg[m] = float(np.mean(vals)) if all(v is not None for v in vals) else None
            pts.append(avg)
        out[label] = sorted(pts, key=lambda p: p["bpp"])
    return out


def _plot(cs: dict[str, list[dict[str, Any]]], metrics: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; called at plot time, never at import
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, metrics, strict=False):
        for label, pts in cs.items():
            xy = [(p["bpp"], p[m]) for p in pts if p.get(m) is not None and p["bpp"] > 0]
            if xy:
                style = "-o" if label.startswith("progvc") else "--s"
                ax.plot([x for x, _ in xy], [y for _, y in xy], style, label=label, markersize=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap on short ranges
        ax.set_xlabel("bpp")
        ax.set_ylabel(m + ("" if HIGHER_IS_BETTER[m] else " (lower is better)"))
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(doc: dict[str, Any], folder: str | Path) -> list[Path]:
    """One PNG per clip (bpp vs each metric, one curve per codec) and ``average.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = metrics_present(doc)
    written = []
    for clip, cs in sorted(curves(doc).items()):
        path = folder / (Path(clip).name.replace(" ", "_") + ".png")
        _plot(cs, metrics, clip, path)
        written.append(path)
    avg = averaged_curves(doc)
    if avg:
        path = folder / "average.png"
        _plot(avg, metrics, f"mean over {len(doc['clips'])} clips", path)
        written.append(path)
    return written
