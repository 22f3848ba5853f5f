"""The tokenizer alone at every prefix of scales: PSNR, grid measure and code usage per scale (issue 30).

For each clip (first ``--frames`` frames, long side brought to ``--max-side`` or less as the
benchmarks read clips) the latent of ``g_a`` is quantised greedily (nearest codeword, no
refinement, no context model), and for n = 1..K the first n scales are embedded and synthesised:
``g_s(sum_{k<n} h_k)``, cropped. That is the picture a stream truncated to n scales holds before
any fill, at full quality (every token is the nearest codeword).

Per scale it also counts which codes the scale uses over all clips: perplexity (exp of the entropy
of the code histogram) and dead codes (entries never picked at that scale); and the tokens' share
of the rate if every token cost the same bits: ``dB per doubling`` = PSNR gain of scale n over
log2(tokens of the first n scales / tokens of the first n-1), the rate-quality slope of the
greedy pyramid when each token costs the same (a coded stream spends fewer bits on coarse tokens).

``--weights`` takes a shipped ``.safetensors`` or a training run's ``last.pt`` / ``tokenizer.safetensors``
(a ``last.pt`` takes its config from ``--config-from``).

    python -m benchmarks.tokenizer_prefixes ../shared/clips/dev --weights progvc/weights/progvc-small-v4p.safetensors \
        --clips 3 --out benchmarks/results/v5/v4_prefixes.json --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.grid_measure import grid_measure
from progvc.bench.metrics import ms_ssim, psnr
from progvc.bench.rd import find_clips, read_frames
from progvc.models.quantizer import resize
from progvc.models.tokenizer import Tokenizer
from progvc.weights import parse_weights

DEFAULT_CONFIG = "progvc/weights/progvc-small-v5.safetensors"  # v5 runs; v1-v4 runs (nearest): --config-from v4p


def load_tokenizer(path: str, config_from: str = DEFAULT_CONFIG) -> Tokenizer:
    """A tokenizer from shipped weights, an exported ``tokenizer.safetensors`` or a run's ``last.pt``:
    a tokenizer stage's, or a synthesis stage's (``g_s`` alone, the rest from ``config_from``); the
    config is ``config_from``'s with the run's up-sampling (its ``config.json``)."""
    weights = config_from if path.endswith(".pt") else path
    cfg, full = parse_weights(Path(weights).read_bytes(), weights)
    state = {k.split(".", 1)[1]: v for k, v in full.items() if k.startswith("tokenizer.")}
    if path.endswith(".pt"):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        run = json.loads((Path(path).parent / "config.json").read_text())
        extra = run.get("extra_blocks", -1)  # a synthesis stage's: -1 keeps the weights' blocks
        extra = cfg.tokenizer.synthesis_extra_blocks if extra < 0 else extra
        tok_cfg = dataclasses.replace(cfg.tokenizer, upsample=run.get("upsample") or cfg.tokenizer.upsample,
                                      synthesis_extra_blocks=extra,
                                      analysis_extra_blocks=run.get("analysis_extra_blocks",
                                                                    cfg.tokenizer.analysis_extra_blocks))
        if "g_s" in ckpt:
            tok_cfg = dataclasses.replace(tok_cfg, prefix_film=bool(run.get("film", True)))
            state = {k: v for k, v in state.items() if not k.startswith("g_s.")}
            state.update({f"g_s.{k}": v for k, v in ckpt["g_s"].items()})
        else:
            state = ckpt["tokenizer"]
        cfg = dataclasses.replace(cfg, tokenizer=tok_cfg)
    tok = Tokenizer(cfg.tokenizer)
    tok.load_state_dict(state)
    return tok.eval()


@torch.no_grad()
def prefix_latents(tok: Tokenizer, frames: np.ndarray, errors: torch.Tensor | None = None
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Greedy tokens of (T,H,W,3) uint8 frames and the latent of every prefix:
    (K token maps (T,h_k,w_k), K latents (T,C,h,w) where entry n-1 sums the first n scales).

    The arithmetic of ``MultiScaleResidualVQ.quantize``, spelt out to see each scale's vectors:
    ``errors`` (K,2), when given, accumulates per scale the summed ||z - e_r||^2 and ||z||^2 of
    the looked-up vectors z (how much of what a scale is asked to carry its nearest codes miss).
    """
    vq, grids = tok.vq, tok.grids(frames.shape[1], frames.shape[2])
    rest = tok.analyse(torch.from_numpy(np.ascontiguousarray(frames)))  # (T,C,h,w)
    tokens, parts = [], []
    for k, grid in enumerate(grids):
        z = resize(rest, grid)  # (T,C,h_k,w_k)
        r = vq.lookup(z)
        if errors is not None:
            q = vq.codebook(r).permute(0, 3, 1, 2)
            errors[k] += torch.stack([(z - q).pow(2).sum(), z.pow(2).sum()]).double()
        h = vq.embed_scale(r, k, grids)
        rest = rest - h
        tokens.append(r)
        parts.append(h)
    return tokens, list(torch.stack(parts).cumsum(0))


def clip_rows(tok: Tokenizer, frames: np.ndarray, latents: list[torch.Tensor], scales: list[int]
              ) -> list[dict[str, float]]:
    """PSNR-RGB, MS-SSIM and grid measure (decode and decode minus source) of each prefix n in
    ``scales``; ``latents`` from :func:`prefix_latents` of ``frames`` (T,H,W,3) uint8."""
    h, w = frames.shape[1:3]
    src_grid = grid_measure(frames).score
    rows = []
    for n in scales:
        dec = tok.synthesise(latents[n - 1], h, w).numpy()
        g = grid_measure(dec).score
        rows.append({"n": n, "psnr": psnr(frames, dec), "ms_ssim": ms_ssim(frames, dec), "grid": g,
                     "grid_source": src_grid, "grid_excess": g - src_grid})
    return rows


def usage_per_scale(counts: torch.Tensor, errors: torch.Tensor) -> list[dict[str, float]]:
    """counts (K,V) code histograms and errors (K,2) (see :func:`prefix_latents`) -> per scale:
    tokens, codes used, dead codes, perplexity, relative quantisation error ||z-e||^2 / ||z||^2."""
    out = []
    for c, (err, norm) in zip(counts.double(), errors.tolist(), strict=True):
        p = c / c.sum().clamp(min=1)
        ent = -(p[p > 0] * p[p > 0].log()).sum().item()
        out.append({"tokens": int(c.sum()), "used": int((c > 0).sum()), "dead": int((c == 0).sum()),
                    "perplexity": math.exp(ent), "rel_vq_error": err / max(norm, 1e-12)})
    return out


def slopes(rows: list[dict[str, float]], tokens: list[int]) -> list[float | None]:
    """dB gained by each scale per doubling of the cumulative token count (None for the first)."""
    cum = np.cumsum(tokens)
    out: list[float | None] = [None]
    for i in range(1, len(rows)):
        out.append((rows[i]["psnr"] - rows[i - 1]["psnr"]) / math.log2(cum[i] / cum[i - 1]))
    return out


def evaluate(tok: Tokenizer, clips: list[Path], frames: int, max_side: int, scales: list[int]) -> dict:
    """Per clip rows for every prefix in ``scales``, their means, and code usage per scale."""
    k_all, v = tok.cfg.n_scales, tok.cfg.codebook_size
    counts = torch.zeros(k_all, v, dtype=torch.long)
    errors = torch.zeros(k_all, 2, dtype=torch.float64)
    per_clip = {}
    for clip in clips:
        t0 = time.perf_counter()
        x = read_frames(clip, frames, max_side)
        tokens, latents = prefix_latents(tok, x, errors)
        for k, r in enumerate(tokens):
            counts[k] += torch.bincount(r.flatten(), minlength=v)
        per_clip[clip.name] = clip_rows(tok, x, latents, scales)
        line = " ".join(f"{r['n']}:{r['psnr']:.2f}" for r in per_clip[clip.name])
        print(f"{clip.name}: {line} ({time.perf_counter() - t0:.0f} s)", flush=True)
    mean = [{key: float(np.mean([rows[i][key] for rows in per_clip.values()])) for key in per_clip[clips[0].name][i]}
            for i in range(len(scales))]
    usage = usage_per_scale(counts, errors)
    if scales == list(range(1, k_all + 1)):
        for u, s in zip(usage, slopes(mean, [u["tokens"] for u in usage]), strict=True):
            u["db_per_doubling"] = s
    return {"clips": per_clip, "mean": mean, "usage": usage,
            "all_scales": {"used": int((counts.sum(0) > 0).sum()), "codes": v}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips")
    p.add_argument("--weights", default=DEFAULT_CONFIG)
    p.add_argument("--config-from", default=DEFAULT_CONFIG)
    p.add_argument("--clips-max", "--clips", dest="n_clips", type=int, default=0, help="first N clips (0: all)")
    p.add_argument("--only", default="", help="comma-separated substrings of clip names to keep")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--scales", default="", help="comma-separated prefixes (default: every n; none: usage only)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tok = load_tokenizer(a.weights, a.config_from)
    clips = find_clips(a.clips, a.only)
    clips = clips[:a.n_clips] if a.n_clips else clips
    scales = ([] if a.scales == "none" else [int(s) for s in a.scales.split(",")] if a.scales
              else list(range(1, tok.cfg.n_scales + 1)))
    t0 = time.perf_counter()
    result = evaluate(tok, clips, a.frames, a.max_side, scales)
    result["settings"] = {**vars(a), "seconds": round(time.perf_counter() - t0, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    for row in result["mean"]:
        print(f"n={int(row['n']):2d} psnr {row['psnr']:.2f} ms-ssim {row['ms_ssim']:.4f} grid {row['grid']:.3f} "
              f"(source {row['grid_source']:.3f}, excess {row['grid_excess']:+.3f})")


if __name__ == "__main__":
    main()
