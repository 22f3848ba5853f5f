"""Encode a clip with the shipped model, decode it at every number of scales, print bpp and PSNR.

    python examples/quickstart.py                  # built-in sample: a camera pan over a photo
    python examples/quickstart.py clip.mp4 --frames 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import progvc
from progvc.samples import sample_clip
from progvc.video_io import read_video


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", help="any video PyAV reads (default: built-in sample)")
    p.add_argument("--frames", type=int, default=8, help="frames to code (default 8)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)

    clip = read_video(args.video, max_frames=args.frames) if args.video else sample_clip(args.frames)
    frames = clip.frames
    codec = progvc.Codec.from_pretrained(device=args.device)
    t0 = time.perf_counter()
    data = codec.encode(frames, fps=clip.fps)
    enc_s = time.perf_counter() - t0
    t, h, w = frames.shape[:3]
    print(f"{args.video or 'built-in sample'}: {t} frames of {w}x{h}, model {codec.config.name} on {codec.device}, "
          f"encoded in {enc_s:.1f} s")
    print(" scales      bytes      bpp   PSNR sent-only   PSNR sampled")
    for n in range(1, codec.n_scales + 1):
        small = progvc.truncate(data, n_scales=n)
        coarse = codec.decode(small, fill="none")
        sampled = codec.decode(small, fill="mean")
        print(f"{n:>7} {len(small):>10} {8 * len(small) / (t * h * w):>8.4f} {psnr(frames, coarse):>13.2f} dB"
              f" {psnr(frames, sampled):>11.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
