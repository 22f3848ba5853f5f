"""Decode speed of two models on the same clip, measured in turns in one process: A B B A ...

::

    python -m benchmarks.decode_pair OLD.safetensors progvc-small-v5 --rounds 6 --json pair.json

This machine's speed drifts by 10-20% over minutes (other guests of the host), so two numbers taken
minutes apart compare the minutes as much as the models. Here both models decode the same stream
of their own (the smooth CIF pattern of :mod:`benchmarks.speed`, one GOP of 8 frames, every scale)
in the order A B B A, ``--rounds`` times, and the report gives each model's median and every
adjacent pair's ratio of seconds (B over A; below 1: B is faster), whose median is the number to read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from .machine import describe
from .speed import SIZES, load_codec, pattern


def timed_decode(codec: Any, data: bytes) -> float:
    start = time.perf_counter()
    codec.decode(data)
    return time.perf_counter() - start


def measure(models: Sequence[str], size: str, frames: int, rounds: int) -> dict[str, Any]:
    """Seconds of each model's decode, taken in A B B A order ``rounds`` times (after one untimed
    decode each), and the ratios B / A of the pairs decoded next to each other."""
    w, h = SIZES[size]
    video = pattern(frames, w, h)
    codecs = [load_codec(m, "cpu") for m in models]
    streams = [c.encode(video) for c in codecs]
    for c, data in zip(codecs, streams, strict=True):
        c.decode(data)
    seconds: list[list[float]] = [[], []]
    ratios = []
    for _ in range(rounds):
        a1 = timed_decode(codecs[0], streams[0])
        b1 = timed_decode(codecs[1], streams[1])
        b2 = timed_decode(codecs[1], streams[1])
        a2 = timed_decode(codecs[0], streams[0])
        seconds[0] += [a1, a2]
        seconds[1] += [b1, b2]
        ratios += [b1 / a1, b2 / a2]
    return {"models": list(models), "size": size, "frames": frames, "rounds": rounds, "machine": describe(),
            "seconds": seconds, "median_seconds": [statistics.median(s) for s in seconds],
            "median_fps": [frames / statistics.median(s) for s in seconds],
            "ratios_b_over_a": ratios, "median_ratio": statistics.median(ratios),
            "pairs_where_b_is_faster": sum(r < 1 for r in ratios)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_a", help="a shipped model's name or a .safetensors file")
    ap.add_argument("model_b")
    ap.add_argument("--size", choices=sorted(SIZES), default="cif")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6, help="A B B A rounds (4 decodes each)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    r = measure([args.model_a, args.model_b], args.size, args.frames, args.rounds)
    for name, fps, sec in zip(r["models"], r["median_fps"], r["median_seconds"], strict=True):
        print(f"{name}: median {sec:.3f} s = {fps:.3f} fps")
    print(f"B / A seconds: median {r['median_ratio']:.3f}, B faster in {r['pairs_where_b_is_faster']} of "
          f"{len(r['ratios_b_over_a'])} pairs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
