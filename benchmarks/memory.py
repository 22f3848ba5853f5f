"""Peak memory of ``progvc encode`` / ``progvc decode`` by resolution and length (issue 15).

::

    python -m benchmarks.memory --json benchmarks/results/memory_cpu.json        # every row: hours on 2 cores
    python -m benchmarks.memory --only cif-30 cif-300 --json /tmp/m.json         # some rows
    python -m benchmarks.memory --tiles                                          # tiled vs whole g_s on a real frame

Each row runs the command line a user runs, ``progvc encode IN.y4m OUT.pvc --refine 0`` then
``progvc decode OUT.pvc DEC.y4m``, each in a fresh process, and reports that process's peak
resident set size (``ru_maxrss`` from ``os.wait4``: every page it ever touched, model and
libraries included) and its wall time. The first row measures a process that only loads the model,
the floor under every other number. Input frames come from ``../shared/clips`` (looped back and
forth to the row's length, resized to its size) written to a ``.y4m`` first, so the encoder reads
them from a path one GOP at a time, as ``progvc encode`` does. Decoding writes frames as they come.

``--tiles`` decodes one real frame at 1080p with ``g_s`` whole and in tiles (exact GroupNorm
statistics, :mod:`progvc.models.tiling`) and prints the PSNR between the two and their times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips" / "dev"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    """One measurement: ``frames`` frames of ``clip`` at ``size`` (W, H); ``scales`` caps the coded
    scales (None: all); ``decode_args`` are extra ``progvc decode`` options."""

    name: str
    clip: str
    size: tuple[int, int]
    frames: int
    scales: int | None = None
    decode_args: tuple[str, ...] = ()
    encode_args: tuple[str, ...] = ()
    notes: str = ""
    steps: tuple[str, ...] = field(default=("encode", "decode"))


FOUR_K = ("--max-frame-pixels", "4096x2160", "--fill", "none")
ROWS = [
    Row("cif-30", "mobile-calendar", (352, 288), 30),
    Row("cif-300", "mobile-calendar", (352, 288), 300, notes="the 30 frames looped back and forth"),
    Row("720p-8", "park-path-walkers", (1280, 720), 8),
    Row("720p-16", "park-path-walkers", (1280, 720), 16, notes="one GOP of 16 frames, the default GOP at 720p"),
    Row("720p-8-gop2", "park-path-walkers", (1280, 720), 8, encode_args=("--gop", "2"),
        notes="GOPs of 2 frames: the context caches hold 2 frames, not 8"),
    Row("1080p-8", "street-drive", (1920, 1080), 8),
    Row("4k-1", "street-drive", (4096, 2160), 1, scales=8, decode_args=FOUR_K,
        encode_args=("--max-frame-pixels", "4096x2160"), notes="a 1080p frame upscaled; 8 of 10 scales sent, "
        "decoded with fill none (--fill none: the sent scales only)"),
]


def frames_for(row: Row) -> np.ndarray:
    """(T,H,W,3) uint8: the row's clip, looped back and forth to ``row.frames``, resized to its size."""
    import torch
    import torch.nn.functional as F

    from progvc.video.io import read_video

    path = next(CLIPS.glob(f"*{row.clip}*"))
    clip = read_video(path, max_frames=min(row.frames, 64)).frames
    order = np.concatenate([np.arange(len(clip)), np.arange(len(clip) - 2, 0, -1)]) if len(clip) > 1 else [0]
    clip = clip[np.resize(order, row.frames)]
    w, h = row.size
    if clip.shape[1:3] != (h, w):
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        clip = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(clip)


def run_measured(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` in a child process; its exit code, peak RSS (MiB) and wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace").strip()
    return {"rc": proc.returncode, "peak_mib": usage.ru_maxrss / 1024, "seconds": seconds,
            "output": out.splitlines()[-1:]}


def measure(row: Row, work: Path) -> dict[str, Any]:
    """Encode and decode one row through the CLI, each in its own process."""
    from progvc.video.io import write_video

    src, pvc, dec = work / f"{row.name}.y4m", work / f"{row.name}.pvc", work / f"{row.name}-out.y4m"
    write_video(src, frames_for(row), fps=25, pix_fmt="yuv420p")
    cli = [sys.executable, "-m", "progvc.cli"]
    result: dict[str, Any] = {"row": asdict(row)}
    if "encode" in row.steps:
        scales = ["--scales", str(row.scales)] if row.scales else []
        result["encode"] = run_measured(cli + ["encode", str(src), str(pvc), "--refine", "0", "-f", "--device",
                                               "cpu", *scales, *row.encode_args])
    if "decode" in row.steps:
        result["decode"] = run_measured(cli + ["decode", str(pvc), str(dec), "-f", "--device", "cpu",
                                               *row.decode_args])
        result["stream_bytes"] = pvc.stat().st_size if pvc.exists() else None
    for f in (src, pvc, dec):
        f.unlink(missing_ok=True)
    return result


def model_floor() -> dict[str, Any]:
    """A process that imports progvc and loads the shipped model, and does nothing else."""
    code = "import progvc; progvc.Codec.from_pretrained(device='cpu')"
    return {"row": {"name": "load"}, "load": run_measured([sys.executable, "-c", code])}


def tiles_vs_whole() -> dict[str, Any]:
    """One real 1080p frame's latent through g_s whole and tiled: PSNR between them, and times."""
    import torch

    from progvc import Codec
    from progvc.models import tiling
    from progvc.runtime.determinism import coding_mode

    codec = Codec.from_pretrained(device="cpu")
    frames = torch.from_numpy(frames_for(Row("t", "street-drive", (1920, 1080), 1)))
    tok = codec.tokenizer
    out = {}
    with coding_mode():
        f_hat = tok.vq.embed(tok.vq.quantize(tok.analyse(frames), tok.grids(1080, 1920)), tok.grids(1080, 1920))
        for name, pixels in (("whole", tiling.TILE_PIXELS), ("tiled", 1 << 19)):
            tok.tile_pixels = pixels
            t0 = time.perf_counter()
            out[name] = tok.synthesise(f_hat, 1080, 1920).numpy().astype(np.float64)
            out[f"{name}_seconds"] = time.perf_counter() - t0
        tok.tile_pixels = tiling.TILE_PIXELS
    mse = float(np.mean((out["whole"] - out["tiled"]) ** 2))
    return {"psnr_tiled_vs_whole_db": float("inf") if mse == 0 else 10 * np.log10(255**2 / mse),
            "max_abs_diff": float(np.abs(out["whole"] - out["tiled"]).max()),
            "pixels_differing": float(np.mean(out["whole"] != out["tiled"])),
            "whole_seconds": out["whole_seconds"], "tiled_seconds": out["tiled_seconds"], "tile_pixels": 1 << 19}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help=f"rows to run (default: all): {', '.join(r.name for r in ROWS)}")
    p.add_argument("--tiles", action="store_true", help="only the tiled-vs-whole comparison")
    p.add_argument("--encode-only", action="store_true", help="measure encoding only")
    p.add_argument("--json", help="append one JSON line per row to this file")
    args = p.parse_args(argv)
    if args.tiles:
        print(json.dumps(tiles_vs_whole()))
        return 0
    rows = [r for r in ROWS if not args.only or r.name in args.only]
    rows = [replace(r, steps=("encode",)) for r in rows] if args.encode_only else rows
    with tempfile.TemporaryDirectory(prefix="progvc-memory-") as tmp:
        for job in [model_floor] + [lambda r=r: measure(r, Path(tmp)) for r in rows]:
            res = job()
            print(json.dumps(res), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
