"""What a wider autoencoder would cost the decoder: g_s (and g_a) seconds per frame for candidate widths.

Issue 30's targets pull two ways: the picture needs a bigger autoencoder, and CIF decode with every
scale must stay no slower than v4 (v5 decodes at 1.07-1.10x v4's speed: a margin of under a tenth).
The synthesis is part of every decode (in bfloat16 where the CPU computes it natively, from 0.4.5),
the analysis only of encodes. This times both, seeded random
weights (speed does not depend on training), for the shipped tokenizer's layout with each candidate's
``channels`` (widths per level, full resolution first), so a leg on a lent GPU
(:mod:`progvc.train.device_leg`) picks a width the decoder can afford.

    python -m benchmarks.synthesis_cost --widths "32,64,128,192;32,64,128,256;32,64,192,256" \\
        --size 352x288 --threads 2 --out benchmarks/results/v7/synthesis_cost.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from progvc.models.config import small_config
from progvc.models.tokenizer import Tokenizer


def median_seconds(fn, runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def cost(channels: tuple[int, ...], height: int, width: int, runs: int) -> dict:
    """Parameters and median seconds of g_s (in float32, and as the decoder runs it where bfloat16 is
    native: ``bfloat16=True``) and g_a on one frame of ``height`` x ``width``."""
    torch.manual_seed(0)
    tok = Tokenizer(dataclasses.replace(small_config().tokenizer, channels=channels)).eval()
    x = tok.pad(torch.rand(1, 3, height, width) * 2 - 1)
    f = tok.g_a(x)
    return {
        "channels": list(channels),
        "g_s_params": sum(p.numel() for p in tok.g_s.parameters()),
        "g_a_params": sum(p.numel() for p in tok.g_a.parameters()),
        "g_s_seconds": round(median_seconds(lambda: tok.g_s(f), runs), 4),
        "g_s_bfloat16_seconds": round(median_seconds(lambda: tok.g_s(f, bfloat16=True), runs), 4),
        "g_a_seconds": round(median_seconds(lambda: tok.g_a(x), runs), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="32,64,128,192;32,64,128,256;32,64,192,256;32,96,192,256",
                   help="candidates, ';' between them (the first is the baseline)")
    p.add_argument("--size", default="352x288")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    rows = [cost(tuple(int(c) for c in w.split(",")), height, width, args.runs) for w in args.widths.split(";")]
    base = rows[0]["g_s_seconds"]
    for r in rows:
        r["g_s_vs_first"] = round(r["g_s_seconds"] / base, 3)
        name = ",".join(map(str, r["channels"]))
        print(f"{name:>16}  g_s {r['g_s_params'] / 1e6:.2f} M, {r['g_s_seconds'] * 1e3:6.1f} ms "
              f"({r['g_s_vs_first']:.2f}x), bf16 {r['g_s_bfloat16_seconds'] * 1e3:6.1f} ms   "
              f"g_a {r['g_a_params'] / 1e6:.2f} M, {r['g_a_seconds'] * 1e3:6.1f} ms")
    if args.out:
        doc = {"size": args.size, "threads": args.threads, "runs": args.runs, "torch": torch.__version__, "rows": rows}
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
