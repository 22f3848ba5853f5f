"""progvc in under a minute: encode a clip once, cut the stream down three times, decode each cut.

    python examples/quickstart.py                  # the quick tour: built-in sample, fast encoder
    python examples/quickstart.py --full           # the full demo: CIF, encoder refinement, every scale
    python examples/quickstart.py clip.mp4 --frames 16 --max-side 480

It prints the bytes, bits per pixel and PSNR of each cut, and writes into ``--out``
(``progvc-quickstart/`` by default) the stream ``clip.pvc``, a player-friendly ``scales_N.mp4`` per
cut, and ``original.mp4`` to compare with. Cutting is ``progvc.truncate``: a byte operation on the
stream, no re-encoding; the decoder fills the scales a cut leaves out from the context model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import progvc
from progvc.video.io import read_video, write_video
from progvc.video.samples import sample_clip

QUICK = {"n_frames": 4, "height": 144, "width": 176}
"""The quick tour's built-in clip: four frames of 176x144 (one GOP), coded in seconds on two CPU cores."""
FULL = {"n_frames": 8, "height": 288, "width": 352}
"""The full demo's built-in clip: eight CIF frames (one GOP)."""
FAST_ENCODER = {"preset": "fast"}
"""The encoder's fastest setting (the greedy tokenizer), used by the quick tour."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def cuts(n_scales: int, full: bool) -> list[int]:
    """Scale counts to decode: every one for the full demo, else a coarse, a middle and the whole."""
    return list(range(1, n_scales + 1)) if full else sorted({max(1, n_scales // 3), max(1, 2 * n_scales // 3),
                                                             n_scales})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", help="any video PyAV reads (default: the built-in sample)")
    p.add_argument("--full", action="store_true", help="the full demo: 8 CIF frames, encoder refinement, every "
                   "number of scales (minutes on a CPU)")
    p.add_argument("--frames", type=int, default=None, help="frames of the video to code (default: 4, --full 8)")
    p.add_argument("--max-side", type=int, default=None, help="shrink the video until its long side fits")
    p.add_argument("--out", type=Path, default=Path("progvc-quickstart"), help="folder for the outputs")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)

    shape = FULL if args.full else QUICK
    n_frames = args.frames or shape["n_frames"]
    if args.video:
        clip = read_video(args.video, max_frames=n_frames, max_side=args.max_side)
    else:
        clip = sample_clip(n_frames, shape["height"], shape["width"])
    frames = clip.frames  # (T,H,W,3) uint8
    t, h, w = frames.shape[:3]
    codec = progvc.Codec.from_pretrained(device=args.device)
    print(f"{args.video or 'built-in sample'}: {t} frames of {w}x{h}; model {codec.config.name} on {codec.device}")

    start = time.perf_counter()
    options = {} if args.full else FAST_ENCODER
    data = codec.encode(frames, fps=clip.fps, progress=True, **options)
    print(f"encoded every scale in {time.perf_counter() - start:.1f} s: {len(data)} bytes")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clip.pvc").write_bytes(data)
    write_video(args.out / "original.mp4", frames, clip.fps, player=True)
    print(f"\n{'scales':>6} {'bytes':>8} {'bpp':>8} {'PSNR':>9}   decoded video")
    for n in cuts(codec.n_scales, args.full):
        small = progvc.truncate(data, n_scales=n)  # a valid stream with the first n scales of every GOP
        decoded = codec.decode(small, seed=0)      # the scales left out are filled by the context model
        target = args.out / f"scales_{n}.mp4"
        write_video(target, decoded, clip.fps, player=True)
        bpp = 8 * len(small) / (t * h * w)
        print(f"{n:>6} {len(small):>8} {bpp:>8.4f} {psnr(frames, decoded):>6.2f} dB   {target}")
    print(f"\nwrote {args.out}/: clip.pvc (the stream), original.mp4 and one scales_N.mp4 per cut")
    if not args.full:
        print("the full demo (8 CIF frames, encoder refinement, every number of scales; minutes on a CPU): "
              "python examples/quickstart.py --full")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
