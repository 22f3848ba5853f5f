"""Decode one stream at every number of scales and save the results side by side as a PNG grid.

    python examples/progressive_preview.py                         # built-in sample, shipped model
    python examples/progressive_preview.py clip.mp4 --frames 8 --out grid.png
    python examples/progressive_preview.py --weights run/final.safetensors --size 176x144

The video is encoded once with every scale; ``progvc.truncate`` then keeps the first n chunks of
each GOP (a byte operation, no re-encode) for n = 1..K, and each truncated stream is decoded.
Row n of the grid shows one frame (``--frame``) decoded from n scales:

    column 1: the n sent scales only (``fill="none"``): the blurry coarse picture
    column 2: the missing scales filled by the context model (``fill="sample"``, ``--seed``)
    column 3: the original frame

A table of bytes, bits per pixel and PSNR per row is printed as well. The PNG is written with
PyAV's PNG encoder (no extra dependency) to a temporary file that is renamed when complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

import progvc
from progvc.runtime.atomic import write_bytes_atomic
from progvc.video.io import read_video
from progvc.video.samples import sample_clip

GAP = 4  # white pixels between the cells of the grid


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of the same shape (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def grid(rows: list[list[np.ndarray]], gap: int = GAP) -> np.ndarray:
    """Tile equally sized (H,W,3) uint8 images, rows x columns, with white gaps -> one (H',W',3) image."""
    h, w = rows[0][0].shape[:2]
    out = np.full((len(rows) * (h + gap) + gap, len(rows[0]) * (w + gap) + gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            out[y:y + h, x:x + w] = image
    return out


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write one (H,W,3) uint8 image as PNG, atomically (temporary file + rename)."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")) + codec.encode(None)
    write_bytes_atomic(path, b"".join(bytes(p) for p in packets))


def load_codec(weights: str | None, device: str | None) -> progvc.Codec:
    """A weights file when given, else the shipped default model."""
    if weights:
        return progvc.Codec.from_file(weights, device=device)
    return progvc.Codec.from_pretrained(device=device)


def load_clip(video: str | None, frames: int, size: tuple[int, int]) -> tuple[np.ndarray, object]:
    """(T,H,W,3) uint8 frames and their rate, from a file or the built-in sample of ``size`` (W,H)."""
    clip = read_video(video, max_frames=frames) if video else sample_clip(frames, height=size[1], width=size[0])
    return clip.frames, clip.fps


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", help="any video PyAV reads (default: built-in sample)")
    p.add_argument("--out", default="progressive_preview.png", help="the PNG grid to write")
    p.add_argument("--frames", type=int, default=8, help="frames to encode (default 8)")
    p.add_argument("--frame", type=int, default=0, help="which frame to show (default 0)")
    p.add_argument("--size", type=parse_size, default=(352, 288), help="size of the built-in sample, WxH")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for the missing scales")
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped model)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)

    frames, fps = load_clip(args.video, args.frames, args.size)
    if not 0 <= args.frame < len(frames):
        p.error(f"--frame must be in 0..{len(frames) - 1}")
    codec = load_codec(args.weights, args.device)
    data = codec.encode(frames, fps=fps)
    t, h, w = frames.shape[:3]
    original = frames[args.frame]
    print(f"{t} frames of {w}x{h}, model {codec.config.name}; row n = first n scales of {codec.n_scales}")
    print(" scales    bytes      bpp  PSNR sent-only  PSNR sampled")
    rows = []
    for n in range(1, codec.n_scales + 1):
        small = progvc.truncate(data, n_scales=n)
        coarse = codec.decode(small, fill="none")[args.frame]
        sampled = codec.decode(small, fill="sample", seed=args.seed)[args.frame]
        rows.append([coarse, sampled, original])
        print(f"{n:>7} {len(small):>8} {8 * len(small) / (t * h * w):>8.4f} {psnr(coarse, original):>12.2f} dB"
              f" {psnr(sampled, original):>10.2f} dB")
    write_png(args.out, grid(rows))
    print(f"wrote {args.out}: rows = scales 1..{codec.n_scales}; columns = sent only, sampled, original")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
