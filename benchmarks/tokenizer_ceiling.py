"""What bounds a tokenizer's full-rate picture: its quantiser, or its autoencoder?

For each clip (first frames, long side <= ``--max-side``) the tokenizer alone decodes

- ``unquantised``: ``g_s(g_a(x))``, the latent as the encoder made it, no codebook;
- ``scales``: the K greedy scales (nearest codeword at each, as ``tokenizer_prefixes`` does);
- ``extra_1..N``: K scales plus N more residual passes at the finest grid with the same codebook
  and the finest scale's phi (what "extra residual passes at the finest grid" would buy before any
  retraining),

with PSNR-RGB and the residual's share of the latent's energy (``rel_error``); and with
``--price``, the first extra pass priced (:func:`priced_pass`): at each Lagrange multiplier, its
tokens chosen for latent error plus lambda times their bits, and the bits an adaptive order-0 coder
would pay for them (no context model), in bits per pixel beside the PSNR they buy. When the extra
passes reach the unquantised decode and stop there, no change of the quantiser lifts the ceiling:
the autoencoder bounds it (issue 30; progvc/weights/README.md, "progvc-small-v5").

    python -m benchmarks.tokenizer_ceiling ../shared/clips/dev --weights progvc/weights/progvc-small-v5.safetensors \\
        --only carphone,RaceHorses,BasketballDrill --out benchmarks/results/v5/ceiling_v5.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.tokenizer_prefixes import DEFAULT_CONFIG, load_tokenizer
from progvc.bench.metrics import psnr
from progvc.bench.rd import find_clips, read_frames
from progvc.models.tokenizer import Tokenizer


def greedy_scales(tok: Tokenizer, frames: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The latent f (T,C,h,w) of (T,H,W,3) uint8 frames, its K greedy token maps, and their sum f_hat."""
    grids = tok.grids(*frames.shape[1:3])
    f = tok.analyse(torch.from_numpy(np.ascontiguousarray(frames)))
    tokens = tok.vq.quantize(f, grids)
    return f, tokens, tok.vq.embed(tokens, grids)


@torch.no_grad()
def ceiling(tok: Tokenizer, frames: np.ndarray, extra: int, price: Sequence[float] = ()) -> dict[str, Any]:
    """PSNR of the unquantised, K-scale and K+1..K+extra-pass decodes of (T,H,W,3) uint8 frames,
    and the residual latent energy over the latent's (``rel_error_*``) after each quantised one;
    with ``price`` (lambdas), also ``priced_pass``: :func:`priced_pass` of the same greedy scales."""
    h, w = frames.shape[1:3]
    vq, grids = tok.vq, tok.grids(h, w)
    f, tokens, f_hat = greedy_scales(tok, frames)
    energy = f.pow(2).sum()
    row: dict[str, Any] = {"unquantised": psnr(frames, tok.synthesise(f, h, w).numpy())}
    rest = f - f_hat
    row["scales"] = psnr(frames, tok.synthesise(f_hat, h, w).numpy())
    row["rel_error_scales"] = float(rest.pow(2).sum() / energy)
    if price:
        row["priced_pass"] = price_pass(tok, frames, tokens, f_hat, rest, price, row["scales"])
    for n in range(1, extra + 1):
        part = vq.embed_scale(vq.lookup(rest), len(grids) - 1, grids)  # the finest grid again
        rest, f_hat = rest - part, f_hat + part
        row[f"extra_{n}"] = psnr(frames, tok.synthesise(f_hat, h, w).numpy())
        row[f"rel_error_extra_{n}"] = float(rest.pow(2).sum() / energy)
    return row


def adaptive_bits(symbols: np.ndarray, alphabet: int) -> float:
    """Bits an adaptive order-0 coder pays for ``symbols`` coded in turn, each with the
    Krichevsky-Trofimov estimate (counts from one half each; the total does not depend on the order)."""
    counts = np.bincount(symbols, minlength=alphabet)
    nats = (sum(math.lgamma(c + 0.5) - math.lgamma(0.5) for c in counts if c)
            - math.lgamma(len(symbols) + alphabet / 2) + math.lgamma(alphabet / 2))
    return -nats / math.log(2)


@torch.no_grad()
def priced_pass(tok: Tokenizer, frames: np.ndarray, lambdas: Sequence[float]) -> dict[str, list[float]]:
    """One residual pass at the finest grid after the K greedy scales, priced at each lambda.

    Each cell of the pass takes a codeword or nothing (one more symbol): the one that minimises the
    residual's squared error left (before the finest ``phi``, which mixes neighbours) plus lambda
    times its bits under an order-0 model of the pass, fitted by re-choosing four times. Returns the
    (T,H,W,3) uint8 frames' ``bpp`` (:func:`adaptive_bits` of the chosen symbols over the pixels),
    ``psnr`` and ``share_skipped`` per lambda; for reference, ``psnr_scales`` (no pass) and
    ``bpp_finest_scale``, what the same coder pays for the finest scale's greedy tokens."""
    f, tokens, f_hat = greedy_scales(tok, frames)
    scales = psnr(frames, tok.synthesise(f_hat, *frames.shape[1:3]).numpy())
    return price_pass(tok, frames, tokens, f_hat, f - f_hat, lambdas, scales)


def price_pass(tok: Tokenizer, frames: np.ndarray, tokens: list[torch.Tensor], f_hat: torch.Tensor,
               rest: torch.Tensor, lambdas: Sequence[float], psnr_scales: float) -> dict[str, list[float]]:
    """:func:`priced_pass` of greedy scales already found: their ``tokens``, sum ``f_hat`` and the
    residual ``rest`` = f - f_hat (T,C,h,w), whose decode has ``psnr_scales``."""
    h, w = frames.shape[1:3]
    vq, grids = tok.vq, tok.grids(h, w)
    codes = vq.codebook.weight  # (V,C)
    z = rest.permute(0, 2, 3, 1).reshape(-1, rest.shape[1])  # (N,C), the pass's cells
    err = torch.cat([(z * z).sum(1, keepdim=True) - 2 * z @ codes.t() + (codes * codes).sum(1)[None],
                     (z * z).sum(1, keepdim=True)], dim=1)  # (N,V+1): each codeword, then nothing
    alphabet, pixels = err.shape[1], frames.shape[0] * h * w
    out: dict[str, list[float]] = {"lambda": list(lambdas), "bpp": [], "psnr": [], "share_skipped": [],
                                   "psnr_scales": [psnr_scales],
                                   "bpp_finest_scale": [adaptive_bits(tokens[-1].flatten().numpy(), alphabet - 1)
                                                        / pixels]}
    for lam in lambdas:
        bits = torch.full((alphabet,), math.log2(alphabet))
        for _ in range(4):
            sym = (err + lam * bits[None]).argmin(1)
            counts = torch.bincount(sym, minlength=alphabet).double() + 0.5
            bits = (-(counts / counts.sum()).log2()).float()
        q = codes[sym.clamp(max=alphabet - 2)] * (sym < alphabet - 1)[:, None]
        q = q.view(rest.shape[0], rest.shape[2], rest.shape[3], -1).permute(0, 3, 1, 2)
        part = vq.embed_vectors(q, len(grids) - 1, grids)
        out["bpp"].append(adaptive_bits(sym.numpy(), alphabet) / pixels)
        out["psnr"].append(psnr(frames, tok.synthesise(f_hat + part, h, w).numpy()))
        out["share_skipped"].append(float((sym == alphabet - 1).float().mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips")
    p.add_argument("--weights", default=DEFAULT_CONFIG)
    p.add_argument("--only", default="", help="comma-separated substrings of clip names to keep")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--extra", type=int, default=3, help="residual passes at the finest grid beyond K")
    p.add_argument("--price", default="", help="comma-separated lambdas: price the first extra pass at each")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tok = load_tokenizer(a.weights).eval()
    clips = find_clips(a.clips, a.only)
    rows = {}
    for clip in clips:
        price = [float(v) for v in a.price.split(",") if v]
        rows[clip.name] = ceiling(tok, read_frames(clip, a.frames, a.max_side), a.extra, price)
        print(clip.name, " ".join(f"{k} {v:.3f}" for k, v in rows[clip.name].items() if k != "priced_pass"),
              flush=True)
        for lam, bpp, db in zip(*(rows[clip.name].get("priced_pass", {}).get(k, []) for k in ("lambda", "bpp", "psnr")),
                                strict=True):
            print(f"  pass at lambda {lam:g}: {bpp:.4f} bpp, {db:.3f} dB", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"settings": vars(a), "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
