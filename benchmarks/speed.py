"""Speed of progvc: encode / decode frames per second and peak memory, plus its two hot components.

::

    python -m benchmarks.speed                       # CIF on the CPU (and on CUDA when present)
    python -m benchmarks.speed --720p --1080p --devices cuda --json speed.json
    python -m benchmarks.speed --model random-small  # the shipped architecture, random weights

Each measurement runs ``--warmup`` times untimed, then ``--runs`` times; the median is reported
(robust to one slow run from a page fault or a background process). Frames are a smooth moving
pattern of one GOP (``--frames``): speed does not depend on content for a fixed token count.

- **encode fps**: ``codec.encode`` of every scale (tokenizer, context model, range coder) at the
  default quality, for each preset (``fast``, ``medium``, ``slow``: refinement steps differ).
- **decode fps**: ``codec.decode`` of every coded scale, and of the stream cut by two scales with
  the rest filled in the default fill mode (filling replaces range decoding with the mean or a draw).
- **peak memory**: on CUDA ``torch.cuda.max_memory_allocated`` (reset before each call); on the CPU
  the peak resident set size sampled every 2 ms during the call (``/proc/self/statm``; torch's
  allocations are invisible to ``tracemalloc``), minus the RSS before it, next to the process's
  lifetime ``ru_maxrss`` from ``resource.getrusage``.
- **context-model tokens/s** and **range-coder symbols/s**, reported apart: see
  :func:`context_model_workload` and :func:`range_coder_workloads`, the two functions to update if
  ``progvc.coding.state`` or ``progvc.coding.entropy`` change names.

Output: a Markdown table (one row per device and size) on stdout and, with ``--json``, the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SIZES = {"cif": (352, 288), "720p": (1280, 720), "1080p": (1920, 1080)}


def median_seconds(fn: Callable[[], Any], *, warmup: int = 1, runs: int = 3) -> float:
    """Median wall-clock seconds of ``fn()`` over ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def items_per_second(fn: Callable[[], int], *, warmup: int = 1, runs: int = 3) -> float:
    """Throughput of a workload ``fn`` that returns how many items (tokens, symbols) it processed."""
    count = fn()
    return count / median_seconds(fn, warmup=max(0, warmup - 1), runs=runs)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory_mb(fn: Callable[[], Any], device: str) -> float:
    """Peak memory of one call of ``fn`` in MiB: CUDA allocator peak, or sampled RSS growth on CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return (max(peak[0], _rss_bytes()) - base) / 2**20


# -- component workloads: wired to progvc.coding.state / progvc.coding.entropy; update here if they move ------
def context_model_workload(codec: Any, frames: np.ndarray) -> Callable[[], int]:
    """One GOP through the context model alone: ``GopState.run`` with the known tokens, no coder.

    Returns a callable that runs it and returns the number of tokens predicted.
    """
    import torch

    from progvc.coding.state import GopState
    from progvc.runtime.determinism import coding_mode

    with coding_mode():
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(codec.device)
        maps = codec.tokenizer.tokenize(x)  # K x (T,h_k,w_k), computed once, outside the timing
    grids = codec.tokenizer.grids(frames.shape[1], frames.shape[2])

    def run() -> int:
        with coding_mode():
            state = GopState(codec.context, codec.tokenizer.vq, grids, frames.shape[0])
            state.run(range(len(grids)), lambda t, k, logits: maps[k][t].flatten().cpu().numpy())
        return sum(int(m.numel()) for m in maps)

    return run


def range_coder_workloads(vocab: int, n_symbols: int = 50_000, rows: int = 1024
                          ) -> tuple[Callable[[], int], Callable[[], int]]:
    """Range encoder and decoder over ``n_symbols`` ``vocab``-way symbols, in tables of ``rows`` rows.

    Tables come from random logits through ``progvc.coding.entropy.probability_table`` (the coding path's
    quantisation), tokens are drawn from them. Returns ``(encode, decode)`` callables returning the
    number of symbols.
    """
    import torch

    from progvc.coding.entropy import ChunkDecoder, ChunkEncoder, probability_table

    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    batches = []
    for start in range(0, n_symbols, rows):
        table = probability_table(2.0 * torch.randn(min(rows, n_symbols - start), vocab, generator=gen))
        p = table / table.sum(axis=1, keepdims=True)
        tokens = np.array([rng.choice(vocab, p=row) for row in p])
        batches.append((tokens, table))
    enc = ChunkEncoder()
    for tokens, table in batches:
        enc.add(tokens, table)
    payload = enc.finish()

    def encode() -> int:
        coder = ChunkEncoder()
        for tokens, table in batches:
            coder.add(tokens, table)
        coder.finish()
        return n_symbols

    def decode() -> int:
        coder = ChunkDecoder(payload)
        for _, table in batches:
            coder.take(table)
        return n_symbols

    return encode, decode


def pattern(frames: int, width: int, height: int) -> np.ndarray:
    """A smooth moving colour pattern, (T,H,W,3) uint8."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        out[t, ..., 0] = 128 + 100 * np.sin((xx + 3 * t) / 23) * np.cos(yy / 31)
        out[t, ..., 1] = 128 + 90 * np.cos((xx - yy + 2 * t) / 37)
        out[t, ..., 2] = 128 + 60 * np.sin(xx * yy / 9000 + t / 5)
    return out


def measure(codec: Any, size: str, device: str, frames: int, warmup: int, runs: int) -> dict[str, Any]:
    """Every number of one table row for ``codec`` at ``size`` on ``device``."""
    w, h = SIZES[size]
    video = pattern(frames, w, h)
    k = codec.n_scales
    from progvc import truncate
    from progvc.coding.options import DEFAULT_FILL, DEFAULT_PRESET, PRESETS

    data = codec.encode(video)
    enc_s = {p: median_seconds(lambda p=p: codec.encode(video, preset=p), warmup=warmup, runs=runs) for p in PRESETS}
    dec_s = median_seconds(lambda: codec.decode(data), warmup=warmup, runs=runs)
    cut = max(1, k - 2)
    small = truncate(data, n_scales=cut)
    samp_s = median_seconds(lambda: codec.decode(small), warmup=warmup, runs=runs)
    encode_rc, decode_rc = range_coder_workloads(codec.config.tokenizer.codebook_size)
    return {
        "device": device, "size": size, "width": w, "height": h, "frames": frames, "n_scales": k,
        "bpp": 8 * len(data) / (frames * w * h),
        "encode_fps": frames / enc_s[DEFAULT_PRESET], "encode_fps_by_preset": {p: frames / v for p, v in enc_s.items()},
        "decode_fps": frames / dec_s, "decode_sampled_fps": frames / samp_s, "sampled_from_scale": cut + 1,
        "fill": DEFAULT_FILL,
        "encode_peak_mb": peak_memory_mb(lambda: codec.encode(video), device),
        "decode_peak_mb": peak_memory_mb(lambda: codec.decode(data), device),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "context_tokens_per_s": items_per_second(context_model_workload(codec, video), warmup=warmup, runs=runs),
        "range_encode_symbols_per_s": items_per_second(encode_rc, warmup=warmup, runs=runs),
        "range_decode_symbols_per_s": items_per_second(decode_rc, warmup=warmup, runs=runs),
    }


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    head = ("| device | size | frames | encode fps fast / medium / slow | decode fps | decode fps (cut by 2, "
            "filled) | enc peak MiB | dec peak MiB | context tokens/s | range enc sym/s | range dec sym/s |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        enc = " / ".join(f"{v:.2f}" for v in r["encode_fps_by_preset"].values())
        lines.append(f"| {r['device']} | {r['size']} | {r['frames']} | {enc} | "
                     f"{r['decode_fps']:.2f} | {r['decode_sampled_fps']:.2f} | {r['encode_peak_mb']:.0f} | "
                     f"{r['decode_peak_mb']:.0f} | {r['context_tokens_per_s']:.3g} | "
                     f"{r['range_encode_symbols_per_s']:.3g} | {r['range_decode_symbols_per_s']:.3g} |")
    return "\n".join(lines)


def load_codec(model: str | None, device: str) -> Any:
    """The shipped model ``model``, or ``random-small`` / ``random-tiny``: that architecture with
    random weights (speed does not depend on the weights' values)."""
    import progvc

    if model in ("random-small", "random-tiny"):
        from progvc.models import config

        cfg = config.small_config() if model == "random-small" else config.tiny_config()
        return progvc.Codec.from_config(cfg, device=device)
    if model is not None and model.endswith(".safetensors"):
        return progvc.Codec.from_file(model, device=device)
    return progvc.Codec.from_pretrained(model, device=device)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; 0 on success, 1 on a progvc error."""
    import torch

    from progvc.runtime.errors import ProgvcError

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    for size in SIZES:
        p.add_argument(f"--{size}", action="store_true", help=f"measure {SIZES[size][0]}x{SIZES[size][1]}")
    p.add_argument("--devices", default=None, help="comma list (default: cpu, and cuda when present)")
    p.add_argument("--model", default=None,
                   help="shipped model name, a .safetensors file, or random-small / random-tiny")
    p.add_argument("--frames", type=int, default=None, help="frames per measurement (default: one GOP)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    sizes = [s for s in SIZES if getattr(args, s)] or ["cif"]
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    try:
        for device in devices:
            codec = load_codec(args.model, device)
            for size in sizes:
                rows.append(measure(codec, size, device, args.frames or codec.gop_size, args.warmup, args.runs))
                print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)
    except ProgvcError as exc:
        print(f"speed: error: {exc}", file=sys.stderr)
        return 1
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"schema": "progvc-speed/1", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
