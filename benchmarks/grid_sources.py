"""Where the 8-pixel grid of truncated decodes comes from (issue 30): one-off decodes of latents
that isolate each suspect, scored with :func:`benchmarks.grid_measure.grid_measure`.

For each clip (first ``--frames`` frames, long side <= ``--max-side``), f = g_a(x) and at each
prefix n in ``--scales``:

* ``prefix``: g_s of the greedy prefix latent (the truncated stream, no fill);
* ``prefix_bilinear``: the same latent through g_s with its three nearest-neighbour 2x up-samplings
  switched to bilinear (same weights, not retrained): what the synthesis' up-sampling adds;
* ``lowpass``: g_s of f area-downsampled to grid n and bicubic-upsampled back (no quantiser at
  all): what a smooth latent alone does to g_s;
* ``lowpass_pixels``: the full decode g_s(f) itself area-downsampled by the same factor and
  bicubic-upsampled in pixels: the smooth picture a prefix could be, for its grid and PSNR.

Once per clip: ``full`` = g_s(f) (no quantiser) and ``flat`` = g_s of a constant latent (each
frame's mean latent vector everywhere), whose whole picture is the synthesis' per-cell stamp.

    python -m benchmarks.grid_sources ../shared/clips/dev --only two-people,BasketballDrill --scales 6,8 \
        --out benchmarks/results/v5/grid_sources_v4.json --threads 1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.grid_measure import grid_measure
from benchmarks.tokenizer_prefixes import DEFAULT_CONFIG, load_tokenizer, prefix_latents
from progvc.bench.metrics import psnr
from progvc.bench.rd import find_clips, read_frames
from progvc.models.quantizer import resize
from progvc.models.tokenizer import Tokenizer


@contextmanager
def upsampling(tok: Tokenizer, mode: str) -> Iterator[None]:
    """Switch every ``nn.Upsample`` of g_s to ``mode`` for the duration (restored after)."""
    ups = [m for m in tok.g_s.modules() if isinstance(m, nn.Upsample)]
    old = [m.mode for m in ups]
    for m in ups:
        m.mode = mode
    try:
        yield
    finally:
        for m, o in zip(ups, old, strict=True):
            m.mode = o


def smooth_pixels(frames: np.ndarray, grid: tuple[int, int], latent: tuple[int, int]) -> np.ndarray:
    """(T,H,W,3) uint8 area-downsampled by the factor latent/grid and bicubic-upsampled back."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    size = (max(1, round(x.shape[2] * grid[0] / latent[0])), max(1, round(x.shape[3] * grid[1] / latent[1])))
    y = resize(resize(x, size), tuple(x.shape[2:]))
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def score(frames: np.ndarray, dec: np.ndarray, src_grid: float) -> dict[str, float]:
    """PSNR-RGB, grid measure and grid measure minus the source's of a decode (T,H,W,3) uint8."""
    g = grid_measure(dec).score
    return {"psnr": psnr(frames, dec), "grid": g, "grid_excess": g - src_grid}


@torch.no_grad()
def clip_sources(tok: Tokenizer, frames: np.ndarray, scales: list[int]) -> dict[str, dict[str, float]]:
    """Scores of every suspect decode of one clip (see the module docstring)."""
    h, w = frames.shape[1:3]
    grids = tok.grids(h, w)
    synth: Callable[[torch.Tensor], np.ndarray] = lambda f: tok.synthesise(f, h, w).numpy()  # noqa: E731
    f = tok.analyse(torch.from_numpy(np.ascontiguousarray(frames)))
    _, latents = prefix_latents(tok, frames)
    src = grid_measure(frames).score
    full = synth(f)
    out = {"source": {"grid": src}, "full": score(frames, full, src),
           "flat": {"grid": grid_measure(synth(f.mean(dim=(2, 3), keepdim=True).expand_as(f).contiguous())).score}}
    for n in scales:
        with upsampling(tok, "bilinear"):
            bil = synth(latents[n - 1])
        out[f"prefix_{n}"] = score(frames, synth(latents[n - 1]), src)
        out[f"prefix_bilinear_{n}"] = score(frames, bil, src)
        out[f"lowpass_{n}"] = score(frames, synth(resize(resize(f, grids[n - 1]), grids[-1])), src)
        out[f"lowpass_pixels_{n}"] = score(frames, smooth_pixels(full, grids[n - 1], grids[-1]), src)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips")
    p.add_argument("--weights", default=DEFAULT_CONFIG)
    p.add_argument("--only", default="")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--scales", default="6,8")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tok = load_tokenizer(a.weights)
    clips = find_clips(a.clips, a.only)
    scales = [int(s) for s in a.scales.split(",")]
    result = {}
    for clip in clips:
        result[clip.name] = clip_sources(tok, read_frames(clip, a.frames, a.max_side), scales)
        print(clip.name, json.dumps({k: {m: round(v, 3) for m, v in d.items()} for k, d in result[clip.name].items()}),
              flush=True)
    result["settings"] = vars(a)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
