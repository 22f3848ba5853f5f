"""How the deblocking filter's settings were chosen: grid excess and PSNR of training-clip decodes
with and without it (progvc.video.deblock; benchmarks/README.md, "Deblocking").

Each clip (first 8 frames, long side <= 480) is coded with the default model at qualities 30..90
(full decodes) and at quality 60 cut to n = 5..9 scales (prefixes, fill none and sample); every
decode is made with ``deblock=False`` and then filtered here by each candidate:

* ``shipped``: :func:`progvc.video.deblock.deblock` at the given (alpha, beta, tc);
* ``h264``: the same plus H.264's p1 / q1 update where the second pixel is flat too;
* ``ramp``: the shipped rule with the ramp-preserving step ``3 (q0 - p0) + (p1 - q1)``.

Prints, for full decodes and for prefixes apart, the largest and mean grid excess over the
decodes, how many are above +0.03 (issue 30's bound), and the mean and smallest PSNR change.
Decodes are kept in ``--cache`` (``tune_CLIP_qQ.npy``, ``tunep_CLIP_nNFILL.npy``) and reused.

    python -m benchmarks.deblock_tune soccer BQSquare bikes-street office-woman --prefix-clips 2 --cache /tmp/deblock
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.grid_measure import grid_measure
from progvc.bench.metrics import psnr
from progvc.bench.rd import read_frames
from progvc.video.deblock import ALPHA, BETA, TC, deblock

QUALITIES = (30, 45, 60, 75, 90)
PREFIXES = (5, 6, 7, 8, 9)


def variant(frames: np.ndarray, alpha: int, beta: int, tc: int, kind: str) -> np.ndarray:
    """One candidate filter on uint8 frames (T,H,W,3), period 8, in NumPy (``shipped`` calls the library)."""
    if kind == "shipped":
        return deblock(torch.from_numpy(frames), 8, alpha, beta, tc).numpy()
    y = frames.astype(np.int32)
    for axis in (2, 1):
        v = np.moveaxis(y, axis, 0).copy()
        b = np.arange(8, v.shape[0] - 2, 8)
        b = b[b >= 3]
        p2, p1, p0, q0, q1, q2 = (v[b + o] for o in (-3, -2, -1, 0, 1, 2))
        on = (np.abs(q0 - p0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
        step = 3 * (q0 - p0) + (p1 - q1) if kind == "ramp" else 4 * (q0 - p0) + (p1 - q1)
        delta = np.clip((step + 4) >> 3, -tc, tc) * on
        if kind == "h264":
            mid = (p0 + q0 + 1) >> 1
            v[b - 2] = p1 + np.clip((p2 + mid - 2 * p1) >> 1, -tc, tc) * (on & (np.abs(p2 - p0) < beta))
            v[b + 1] = q1 + np.clip((q2 + mid - 2 * q1) >> 1, -tc, tc) * (on & (np.abs(q2 - q0) < beta))
        v[b - 1], v[b] = p0 + delta, q0 - delta
        y = np.moveaxis(np.clip(v, 0, 255), 0, axis)
    return y.astype(np.uint8)


def decodes(clip: str, clips: Path, cache: Path, with_prefixes: bool
            ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(source, full decodes at QUALITIES, prefix decodes or none) of the training clip whose name holds ``clip``."""
    import progvc
    from progvc.codec.codec import Codec

    def kept(name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        path = cache / f"{name}.npy"
        if not path.exists():
            np.save(path, make())
        return np.load(path)

    codec = Codec.from_pretrained(device="cpu")
    src = kept(f"tune_{clip}_src", lambda: read_frames(next(clips.glob(f"*{clip}*")), 8, 480))
    full = [kept(f"tune_{clip}_q{q}", lambda q=q: codec.decode(codec.encode(src, quality=q), deblock=False))
            for q in QUALITIES]
    stream = None

    def cut(n: int, fill: str) -> np.ndarray:
        nonlocal stream
        stream = stream or codec.encode(src, quality=60)
        return codec.decode(progvc.truncate(stream, n_scales=n), fill=fill, deblock=False)

    prefixes = [kept(f"tunep_{clip}_n{n}{fill}", lambda n=n, fill=fill: cut(n, fill))
                for n in PREFIXES for fill in ("none", "sample")] if with_prefixes else []
    return src, full, prefixes


def table(sets: list[tuple[np.ndarray, np.ndarray]], fn: Callable[[np.ndarray], np.ndarray]) -> str:
    rows = []
    for src, d in sets:
        base = grid_measure(src).score
        e = fn(d)
        rows.append((grid_measure(e).score - base, psnr(src, e) - psnr(src, d)))
    r = np.array(rows)
    return (f"grid excess max {r[:, 0].max():+.3f} mean {r[:, 0].mean():+.3f}, above +0.03: "
            f"{int((r[:, 0] > 0.03).sum())} of {len(r)}; PSNR {r[:, 1].mean():+.4f} dB (lowest {r[:, 1].min():+.4f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", help="parts of training clip names")
    p.add_argument("--train", type=Path, default=Path("../shared/clips/train"))
    p.add_argument("--cache", type=Path, required=True, help="folder for the decodes (made if missing)")
    p.add_argument("--prefix-clips", type=int, default=0, help="cut the streams of only the first N clips (0: all)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    full, prefix = [], []
    for i, clip in enumerate(args.clips):
        src, f, pre = decodes(clip, args.train, args.cache, not args.prefix_clips or i < args.prefix_clips)
        full += [(src, d) for d in f]
        prefix += [(src, d) for d in pre]
    candidates = [("none", None), ("shipped", (ALPHA, BETA, TC)), ("shipped", (16, 6, 3)), ("shipped", (16, 8, 2)),
                  ("h264", (16, 6, 3)), ("ramp", (16, 4, 2)), ("ramp", (16, 8, 3))]
    for kind, params in candidates:
        fn = (lambda d: d) if params is None else (lambda d, k=kind, s=params: variant(d, *s, k))
        label = kind if params is None else f"{kind} {params}"
        print(f"{label:20s} full:     {table(full, fn)}")
        print(f"{'':20s} prefixes: {table(prefix, fn)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
