"""What bounds a tokenizer's full-rate picture: its quantiser, or its autoencoder?

For each clip (first frames, long side <= ``--max-side``) the tokenizer alone decodes

- ``unquantised``: ``g_s(g_a(x))``, the latent as the encoder made it, no codebook;
- ``scales``: the K greedy scales (nearest codeword at each, as ``tokenizer_prefixes`` does);
- ``extra_1..N``: K scales plus N more residual passes at the finest grid with the same codebook
  and the finest scale's phi (what "extra residual passes at the finest grid" would buy before any
  retraining),

with PSNR-RGB and the residual's share of the latent's energy (``rel_error``). When the extra
passes reach the unquantised decode and stop there, no change of the quantiser lifts the ceiling:
the autoencoder bounds it (issue 30; progvc/weights/README.md, "progvc-small-v5").

    python -m benchmarks.tokenizer_ceiling ../shared/clips/dev --weights progvc/weights/progvc-small-v5.safetensors \\
        --only carphone,RaceHorses,BasketballDrill --out benchmarks/results/v5/ceiling_v5.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.tokenizer_prefixes import DEFAULT_CONFIG, load_tokenizer
from progvc.bench.metrics import psnr
from progvc.bench.rd import find_clips, read_frames
from progvc.models.tokenizer import Tokenizer


@torch.no_grad()
def ceiling(tok: Tokenizer, frames: np.ndarray, extra: int) -> dict[str, float]:
    """PSNR of the unquantised, K-scale and K+1..K+extra-pass decodes of (T,H,W,3) uint8 frames,
    and the residual latent energy over the latent's (``rel_error_*``) after each quantised one."""
    h, w = frames.shape[1:3]
    vq, grids = tok.vq, tok.grids(h, w)
    f = tok.analyse(torch.from_numpy(np.ascontiguousarray(frames)))  # (T,C,h,w)
    energy = f.pow(2).sum()
    row = {"unquantised": psnr(frames, tok.synthesise(f, h, w).numpy())}
    f_hat = vq.embed(vq.quantize(f, grids), grids)
    rest = f - f_hat
    row["scales"] = psnr(frames, tok.synthesise(f_hat, h, w).numpy())
    row["rel_error_scales"] = float(rest.pow(2).sum() / energy)
    for n in range(1, extra + 1):
        part = vq.embed_scale(vq.lookup(rest), len(grids) - 1, grids)  # the finest grid again
        rest, f_hat = rest - part, f_hat + part
        row[f"extra_{n}"] = psnr(frames, tok.synthesise(f_hat, h, w).numpy())
        row[f"rel_error_extra_{n}"] = float(rest.pow(2).sum() / energy)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips")
    p.add_argument("--weights", default=DEFAULT_CONFIG)
    p.add_argument("--only", default="", help="comma-separated substrings of clip names to keep")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--extra", type=int, default=3, help="residual passes at the finest grid beyond K")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tok = load_tokenizer(a.weights).eval()
    clips = find_clips(a.clips, a.only)
    rows = {}
    for clip in clips:
        rows[clip.name] = ceiling(tok, read_frames(clip, a.frames, a.max_side), a.extra)
        print(clip.name, " ".join(f"{k} {v:.3f}" for k, v in rows[clip.name].items()), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"settings": vars(a), "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
