"""Rate-quality benchmark: progvc and conventional codecs on every clip of a folder, one command.

::

    python -m benchmarks.rd CLIPS_DIR --out DIR [--frames 16] [--downscale 2] [--codecs progvc,x264]
    progvc bench CLIPS_DIR --out DIR ...                                   (same ``main``)

For each clip (its first ``frames`` frames, optionally area-downscaled by an integer factor):

- **progvc** encodes once at every scale and *truncates* the stream to n = 1..K scales (a byte
  operation: the product's point), then decodes every prefix with ``sample=True`` (missing scales
  sampled) and ``sample=False`` (coded scales only). ``encode_s`` of every progvc point is the one
  full encode; ``decode_s`` is that point's decode.
- **baselines** (x264, x265, SVT-AV1, optionally VP9) run over a CRF sweep with progvc's GOP length;
  see :mod:`progvc.bench.baselines`.

Every point is scored (:mod:`progvc.bench.metrics`) and appended to ``DIR/results.json``, which is
rewritten atomically after each point; rerunning the same command resumes, skipping stored points.
At the end ``DIR/summary.md`` (tables and BD-rates) and ``DIR/plots/*.png`` are (re)written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..coding.options import DEFAULT_PRESET, get_preset
from ..runtime.errors import ConfigError, ProgvcError
from ..stream.truncation import truncate
from ..video.downscale import downscale_area, factor_for

DEFAULT_CODECS = ("progvc", "x264", "x265", "svtav1")
DEFAULT_GOP = 8  # the shipped model's GOP (Codec.gop_size), used when progvc itself is not benchmarked.
# Every codec of a run is coded with one GOP, the model's unless --gop says otherwise; encode's own default
# is longer (progvc.coding.options.default_gop_size), so pass --gop to compare at it on long clips.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".y4m", ".yuv", ".ivf",
                  ".264", ".h264", ".265", ".h265", ".hevc", ".bit", ".266", ".obu", ".mpg", ".flv")
SEED = 0


def find_clips(clips: str | Path, only: str = "") -> list[Path]:
    """Video files (by suffix, hidden files skipped) directly in folder ``clips``, or ``[clips]``;
    ``only`` (the benchmarks' ``--only``): comma-separated parts of names, keep the clips whose name
    holds one of them (none given: every clip)."""
    root = Path(clips)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"{root} is neither a video file nor a folder of clips")
    found = sorted(p for p in root.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise ConfigError(f"no video files in {root} (looked for {' '.join(VIDEO_SUFFIXES)})")
    wanted = [part for part in only.split(",") if part]
    return [p for p in found if any(part in p.name for part in wanted)] if wanted else found


def read_clip(path: Path, max_frames: int) -> tuple[np.ndarray, Fraction | None]:
    """``(T,H,W,3)`` uint8 RGB frames (at most ``max_frames``) and frame rate of ``path``."""
    from ..video.io import read_video

    video = read_video(path, max_frames=max_frames)
    return np.ascontiguousarray(np.asarray(video.frames), dtype=np.uint8), video.fps


def read_frames(path: Path, max_frames: int, max_side: int) -> np.ndarray:
    """The first ``max_frames`` frames of ``path``, area-downscaled by the smallest whole factor
    that brings the long side to ``max_side`` or less (:func:`progvc.video.downscale.factor_for`): how
    the benchmarks read a clip in the setting of benchmarks/results/dev."""
    video, _ = read_clip(path, max_frames)
    return downscale_area(video[:max_frames], factor_for(video.shape[2], video.shape[1], max_side=max_side))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _model_settings(codec: Any, gop: int, device: str | None) -> dict[str, Any]:
    """What identifies a progvc encoding in the results file: model, weights, GOP, seed, device and
    the encoder's refinement steps (``encode``'s default)."""
    name = getattr(getattr(codec, "config", None), "name", None)
    weights = getattr(codec, "weights_sha256", None)
    weights = weights.hex() if isinstance(weights, bytes) else weights
    dev = device or getattr(codec, "device", None)
    return {"model": None if name is None else str(name), "weights": None if weights is None else str(weights),
            "n_scales": int(codec.n_scales), "gop": gop, "seed": SEED, "device": None if dev is None else str(dev),
            "refine": get_preset(DEFAULT_PRESET).refine}


def _bench_progvc(codec: Any, frames: np.ndarray, ctx: _ClipContext) -> None:
    """Encode once, truncate to each scale count, decode with and without sampling, score."""
    run = ctx.run("progvc", _model_settings(codec, ctx.gop, ctx.device))
    todo = [(n, s) for n in range(1, int(codec.n_scales) + 1) for s in (True, False)
            if not ctx.store.has_point(run, n, None, s)]
    if not todo:
        return
    if hasattr(codec, "encode_with_stats"):  # the model's own estimate: -sum log2 p per scale
        result, encode_s = _timed(lambda: codec.encode_with_stats(frames, None, gop_size=ctx.gop))
        data, per_scale = result.bitstream, list(result.estimated_bits)
    else:
        data, encode_s = _timed(lambda: codec.encode(frames, None, gop_size=ctx.gop))
        per_scale = None
    for n, sample in todo:
        part = truncate(data, n_scales=n)
        rec, decode_s = _timed(lambda part=part, n=n, sample=sample:
                               codec.decode(part, n_scales=n, fill="sample" if sample else "none", seed=SEED))
        rec = np.asarray(rec)
        if rec.shape != frames.shape or rec.dtype != np.uint8:
            raise ProgvcError(f"progvc decoded {rec.shape} {rec.dtype}, expected {frames.shape} uint8")
        est = float(sum(per_scale[:n])) if per_scale is not None else None
        ctx.add(run, len(part), rec, encode_s, decode_s, n_scales=n, sample=sample, estimated_bits=est)


def _bench_baseline(name: str, crfs: Sequence[int], preset: str | None, frames: np.ndarray,
                    fps: Fraction | None, ctx: _ClipContext) -> None:
    from .baselines import encode_decode, get_baseline

    run = ctx.run(name, get_baseline(name).settings(ctx.gop, preset))
    for crf in crfs:
        if ctx.store.has_point(run, None, crf, None):
            continue
        res = encode_decode(frames, name, crf, gop=ctx.gop, preset=preset, fps=fps or Fraction(25))
        if res.padded:
            ctx.store.note("frames padded to even sizes of at least 64x64 (padding bits counted)", run)
        ctx.add(run, res.nbytes, res.frames, res.encode_s, res.decode_s, crf=crf)


class _ClipContext:
    """What the per-codec loops share for one clip: the store, the metrics, the progress bar."""

    def __init__(self, store: Any, clip: str, metrics: Any, gop: int, device: str | None, bar: Any) -> None:
        self.store, self.clip, self.metrics, self.gop, self.device, self.bar = store, clip, metrics, gop, device, bar

    def run(self, codec: str, settings: dict[str, Any]) -> dict[str, Any]:
        t, h, w, _ = self.metrics.ref.shape
        return self.store.run(codec, self.clip, settings, t, w, h)

    def add(self, run: dict[str, Any], nbytes: int, rec: np.ndarray, encode_s: float, decode_s: float, *,
            n_scales: int | None = None, crf: int | None = None, sample: bool | None = None,
            estimated_bits: float | None = None) -> None:
        t, h, w, _ = rec.shape
        point = {"bpp": 8.0 * nbytes / (t * h * w), "bytes": int(nbytes), "n_scales": n_scales, "crf": crf,
                 "sample": sample, **self.metrics(rec), "encode_s": encode_s, "decode_s": decode_s,
                 "estimated_bits": estimated_bits}
        self.store.add_point(run, point)
        self.bar.set_postfix_str(f"{run['codec']} {'crf ' + str(crf) if crf is not None else f'n={n_scales}'}")
        self.bar.update(1)


def _parse_map(items: Iterable[str] | Mapping[str, Any] | None, what: str) -> dict[str, str]:
    """``["x264=22,27", ...]`` (or a mapping) -> ``{"x264": "22,27"}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {k: v for k, v in items.items()}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--{what} takes CODEC=VALUE (e.g. x264={'22,27,32' if what == 'crf' else 'fast'}), "
                              f"got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _crf_list(value: Any, codec: str) -> list[int]:
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--crf {codec}= needs comma-separated integers, got {value!r}") from None
    return [int(v) for v in value]


def run_benchmark(
    clips_dir: str | Path,
    out_dir: str | Path,
    *,
    frames: int = 16,
    downscale: int = 1,
    max_side: int = 0,
    codecs: Sequence[str] = DEFAULT_CODECS,
    crfs: Mapping[str, Sequence[int]] | None = None,
    device: str | None = None,
    codec_factory: Callable[[], Any] | None = None,
    gop: int | None = None,
    progress: bool = True,
    presets: Mapping[str, str] | None = None,
    perceptual_weights: str | Path | None = None,
    model: str | None = None,
) -> Path:
    """Benchmark every clip of ``clips_dir``; return the path of ``out_dir/results.json``.

    ``crfs`` and ``presets`` map baseline names to CRF lists and presets (defaults in
    :data:`progvc.bench.baselines.BASELINES`). ``codec_factory`` builds the progvc codec (tests);
    otherwise ``progvc.Codec.from_pretrained(name=model, device=device)``. ``gop`` defaults to the
    codec's own GOP. ``max_side`` > 0 raises the downscale factor of each clip until its long side
    fits (1080p -> 640x360 at 640), so large clips stay affordable on a CPU.
    ``perceptual_weights`` (or ``$PROGVC_PERCEPTUAL_WEIGHTS``) enables LPIPS, DISTS
    and FID/KID columns.
    """
    from tqdm import tqdm

    from .baselines import get_baseline, missing_codecs
    from .metrics import SequenceMetrics
    from .perceptual import SKIP_NOTE, load_perceptual
    from .report import write_plots, write_summary
    from .results import ResultsStore

    if frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    clips = find_clips(clips_dir)
    codecs = list(dict.fromkeys(codecs))
    baselines = [c for c in codecs if c != "progvc"]
    for name in baselines:
        get_baseline(name)  # unknown names fail before any work
    crf_map = {k: _crf_list(v, k) for k, v in _parse_map(crfs, "crf").items()}
    preset_map = _parse_map(presets, "preset")
    for name in [*crf_map, *preset_map]:
        if name not in baselines:
            raise ConfigError(f"--crf/--preset name {name!r}, which is not among the benchmarked baselines "
                              f"({', '.join(baselines) or 'none'}); add it to --codecs or drop the option")
    codec = None
    if "progvc" in codecs:
        if codec_factory is None:
            from ..codec.codec import Codec

            codec = Codec.from_pretrained(name=model, device=device)
        else:
            codec = codec_factory()
    gop = int(gop or (codec.gop_size if codec is not None else DEFAULT_GOP))
    out = Path(out_dir)
    config = {"frames": frames, "downscale": downscale, "gop": gop} | ({"max_side": max_side} if max_side else {})
    store = ResultsStore(out / "results.json", config)
    perceptual = load_perceptual(perceptual_weights)
    if perceptual is None:
        store.note(SKIP_NOTE)
    for name in list(baselines):
        if missing := missing_codecs(name):
            store.note(f"{name}: skipped, PyAV's FFmpeg lacks {', '.join(missing)}")
            baselines.remove(name)
    show = progress and sys.stderr.isatty()
    for path in clips:
        video, fps = read_clip(path, frames)
        factor = factor_for(video.shape[2], video.shape[1], downscale, max_side if max_side > 0 else None)
        video = downscale_area(video[:frames], factor)
        t, h, w, _ = video.shape
        store.add_clip({"name": path.name, "path": str(path), "frames": t, "width": w, "height": h,
                        "fps": None if fps is None else float(fps)})
        metrics = SequenceMetrics(video, perceptual)
        for n in metrics.notes:
            store.note(f"{path.name}: {n}")
        total = (2 * int(codec.n_scales) if codec is not None else 0) + sum(
            len(crf_map.get(b, get_baseline(b).default_crfs)) for b in baselines)
        with tqdm(total=total, desc=path.name[:40], disable=not show, leave=True) as bar:
            ctx = _ClipContext(store, path.name, metrics, gop, device, bar)
            if codec is not None:
                _bench_progvc(codec, video, ctx)
            for name in baselines:
                crf_list = crf_map.get(name, get_baseline(name).default_crfs)
                _bench_baseline(name, crf_list, preset_map.get(name), video, fps, ctx)
        store.save()
    write_summary(store.doc, out / "summary.md")
    write_plots(store.doc, out / "plots")
    return store.path


def build_parser() -> argparse.ArgumentParser:
    """The ``progvc bench`` / ``python -m benchmarks.rd`` argument parser."""
    from .baselines import BASELINES

    p = argparse.ArgumentParser(prog="progvc bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Rate-quality curves of progvc and conventional codecs on a folder of "
                                "clips. A run resumes: pointed at an existing --out folder it only computes the "
                                "points that are missing.", epilog=_BENCH_EXAMPLES)
    p.add_argument("clips", nargs="?", help="folder of video clips, or one video file")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="output folder for results.json, summary.md and plots/ (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames per clip, from the start (default: %(default)s)")
    p.add_argument("--downscale", type=int, default=1, metavar="F",
                   help="whole area-downscale factor (default: %(default)s, full size)")
    p.add_argument("--max-side", type=int, default=0, metavar="PX",
                   help="also downscale by a whole factor until the long side is at most PX (default: 0, off)")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS), metavar="LIST",
                   help=f"comma list of progvc,{','.join(BASELINES)} (default: %(default)s)")
    p.add_argument("--crf", action="append", metavar="CODEC=LIST",
                   help="CRF sweep, e.g. x264=22,27,32 (default: each codec's own sweep)")
    p.add_argument("--preset", action="append", metavar="CODEC=NAME",
                   help="encoder preset, e.g. x265=fast (default: each codec's own)")
    p.add_argument("--gop", type=int, default=None, metavar="G", help="GOP length (default: the progvc model's)")
    p.add_argument("--device", default=None, help="torch device for progvc (default: cuda when present)")
    p.add_argument("--model", default=None, help="progvc model name (default: the shipped default)")
    p.add_argument("--perceptual-weights", default=None, metavar="PATH",
                   help="VGG16/LPIPS/DISTS safetensors (default: $PROGVC_PERCEPTUAL_WEIGHTS, else skipped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: bars on a terminal)")
    p.add_argument("--report-only", action="store_true", help="rewrite summary.md and plots from results.json")
    return p


_BENCH_EXAMPLES = """examples:
  progvc bench ../shared/clips/dev --out results/dev --frames 8 --max-side 480 --gop 8
  progvc bench clip.mp4 --out results/one --codecs progvc,x265 --crf x265=28,32,36
  progvc bench clips/ --out results/quick --frames 4 --downscale 2 --codecs x264 --no-progress
  progvc bench --out results/dev --report-only        redraw summary.md and plots from results.json"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from command-line arguments; 0 on success, 1 on a progvc error."""
    args = build_parser().parse_args(argv)
    try:
        out = Path(args.out)
        if args.report_only:
            from .report import write_plots, write_summary
            from .results import load

            doc = load(out / "results.json")
            write_summary(doc, out / "summary.md")
            write_plots(doc, out / "plots")
        elif args.clips is None:
            raise ConfigError("give a folder of clips (or one video file), or --report-only")
        else:
            run_benchmark(args.clips, out, frames=args.frames, downscale=args.downscale, max_side=args.max_side,
                          codecs=[c.strip() for c in args.codecs.split(",") if c.strip()],
                          crfs=_parse_map(args.crf, "crf"), presets=_parse_map(args.preset, "preset"),
                          device=args.device, gop=args.gop, progress=not args.no_progress,
                          perceptual_weights=args.perceptual_weights, model=args.model)
    except ProgvcError as exc:
        print(f"progvc bench: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'results.json'}, {out / 'summary.md'} and {out / 'plots'}")
    return 0
