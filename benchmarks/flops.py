"""FLOPs per frame of the coding path, and the floor they put on speed on this machine.

Counts with ``torch.utils.flop_counter.FlopCounterMode`` while really encoding and decoding (matmuls
and convolutions; softmax, norms and the range coder are not counted, so the floor is optimistic),
and measures this device's dense float32 matmul rate. floor_fps = measured FLOP/s / FLOPs per frame.

    python -m benchmarks.flops --size 352x288 [--weights FILE] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from progvc.codec.codec import Codec
from progvc.video.samples import sample_clip


def matmul_rate(device: torch.device, n: int = 2048, threads: int | None = None) -> float:
    """Sustained float32 FLOP/s of an n x n matmul (median of 5)."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for _ in range(6):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times[1:]))


def count(fn):
    """(FLOPs, result) of ``fn()``. The counter's dispatch changes float rounding, so a stream must be
    encoded and decoded both inside it or both outside (the token checksums refuse a mix)."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return counter.get_total_flops(), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="352x288")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--weights", help="a .safetensors file (default: the shipped model)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    codec = Codec.from_file(args.weights, args.device) if args.weights else Codec.from_pretrained(device=args.device)
    frames = sample_clip(args.frames, h, w).frames
    # the fast preset: FlopCounterMode cannot follow refinement's autograd.grad (each refinement
    # step adds about one g_s forward and backward per frame on top of this)
    enc, data = count(lambda: codec.encode(frames, preset="fast"))
    dec, _ = count(lambda: codec.decode(data))
    enc, dec = enc / args.frames, dec / args.frames
    dev = torch.device(args.device)
    rate_1 = matmul_rate(dev, threads=1) if dev.type == "cpu" else None
    rate = matmul_rate(dev, threads=torch.get_num_threads() if dev.type != "cpu" else 2)
    out = {"size": args.size, "model": codec.config.name, "encode_gflop_per_frame": enc / 1e9,
           "decode_gflop_per_frame": dec / 1e9, "matmul_gflops": rate / 1e9,
           "matmul_gflops_1_thread": None if rate_1 is None else rate_1 / 1e9,
           "encode_floor_fps": rate / enc, "decode_floor_fps": rate / dec}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
