"""Evaluate a trained model on a folder of clips: the numbers in progvc/weights/README.md.

For each clip (first ``--frames`` frames, long side scaled down to ``--max-side``):

* tokenizer alone at full scales: PSNR-RGB and MS-SSIM of ``g_s(embed(tokenize(x, refine)))``, with
  the encoder-side refinement ``encode`` uses (``--refine``), and of the greedy tokenizer (refine 0);
* codebook usage: share of entries used over all clips, and perplexity;
* coded bits per token at every scale, from the real chunk bytes of a real stream (``info``),
  against log2(codebook size);
* the same stream coded without temporal context (``temporal=False``): what the temporal context saves.

Rate-quality points at every n_scales (with and without sampling) come from ``progvc bench``
(``benchmarks/results/dev``), which decodes each truncated stream once.

    python -m benchmarks.eval_model ../shared/clips/dev --out benchmarks/results/eval_dev.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import progvc
from progvc.bench.metrics import ms_ssim, psnr
from progvc.codec.codec import Codec
from progvc.models.config import REFINE_STEPS
from progvc.runtime.determinism import coding_mode
from progvc.train.data import downscale
from progvc.video.io import read_video

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".ivf", ".264", ".265", ".h264", ".hevc", ".bit", ".266", ".y4m", ".yuv"}


def tokenizer_only(codec: Codec, frames: np.ndarray, refine: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Full-scale reconstruction of the tokenizer alone, and the token counts per code."""
    tok = codec.tokenizer
    h, w = frames.shape[1:3]
    out, counts = [], torch.zeros(codec.config.tokenizer.codebook_size, dtype=torch.long)
    with coding_mode():
        for i in range(0, len(frames), 4):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + 4])).to(codec.device)
            maps = tok.tokenize(x, refine)
            for r in maps:
                counts += torch.bincount(r.flatten().cpu(), minlength=len(counts))
            f_hat = tok.vq.embed(maps, tok.grids(h, w))
            out.append(tok.synthesise(f_hat, h, w).cpu().numpy())
    return np.concatenate(out), counts


def bits_per_token(data: bytes) -> list[float]:
    """Chunk payload bits per token at each coded scale (checksum trailers excluded)."""
    info = progvc.info(data)
    return [8 * (b - 8 * info.n_gops) / (n * info.n_frames)
            for b, n in zip(info.bytes_per_scale, info.tokens_per_frame, strict=False)]


def evaluate_clip(codec: Codec, path: Path, frames_n: int, max_side: int, refine: int) -> dict:
    clip = read_video(path, max_frames=frames_n)
    frames = downscale(clip.frames, max_side)
    t, h, w = frames.shape[:3]
    row: dict = {"clip": path.name, "frames": t, "width": w, "height": h}
    rec, counts = tokenizer_only(codec, frames, refine)
    row["tokenizer_psnr"], row["tokenizer_ms_ssim"] = psnr(frames, rec), ms_ssim(frames, rec)
    greedy = tokenizer_only(codec, frames)[0] if refine else rec
    row["greedy_tokenizer_psnr"], row["greedy_tokenizer_ms_ssim"] = psnr(frames, greedy), ms_ssim(frames, greedy)
    t0 = time.perf_counter()
    result = codec.encode_with_stats(frames, fps=clip.fps, refine=refine)
    row["encode_s"] = time.perf_counter() - t0
    intra = codec.encode(frames, fps=clip.fps, temporal=False, refine=refine)
    row["bits_per_token"] = bits_per_token(result.bitstream)
    row["intra_bits_per_token"] = bits_per_token(intra)
    row["bytes"], row["intra_bytes"] = len(result.bitstream), len(intra)
    row["estimated_bytes"] = sum(result.estimated_bits) / 8
    t0 = time.perf_counter()
    out = codec.decode(result.bitstream, fill="none")
    row["decode_s"] = time.perf_counter() - t0
    row["full_psnr"], row["full_ms_ssim"] = psnr(frames, out), ms_ssim(frames, out)
    row["bpp"] = 8 * len(result.bitstream) / (t * h * w)
    return row | {"_counts": counts}


def summarize(rows: list[dict], codebook_size: int) -> dict:
    counts = sum(r.pop("_counts") for r in rows)
    p = counts.double() / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum().item()
    full = [r["bits_per_token"][-1] for r in rows]
    saved = [1 - r["bytes"] / r["intra_bytes"] for r in rows]
    return {
        "tokenizer_psnr": float(np.mean([r["tokenizer_psnr"] for r in rows])),
        "tokenizer_ms_ssim": float(np.mean([r["tokenizer_ms_ssim"] for r in rows])),
        "greedy_tokenizer_psnr": float(np.mean([r["greedy_tokenizer_psnr"] for r in rows])),
        "greedy_tokenizer_ms_ssim": float(np.mean([r["greedy_tokenizer_ms_ssim"] for r in rows])),
        "codebook_used": float((counts > 0).double().mean()), "codebook_perplexity": math.exp(ent),
        "log2_codebook": math.log2(codebook_size),
        "full_scale_bits_per_token": float(np.mean(full)),
        "full_scale_saving_vs_log2V": 1 - float(np.mean(full)) / math.log2(codebook_size),
        "temporal_saving": float(np.mean(saved)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, help="a .safetensors file (default: the shipped model)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--device", default=None)
    p.add_argument("--refine", type=int, default=REFINE_STEPS, help="encoder refinement steps (0: greedy)")
    args = p.parse_args(argv)
    codec = Codec.from_file(args.weights, args.device) if args.weights else Codec.from_pretrained(device=args.device)
    paths = sorted(q for q in args.clips.iterdir() if q.suffix in VIDEO_SUFFIXES)
    rows = []
    for path in paths:
        rows.append(evaluate_clip(codec, path, args.frames, args.max_side, args.refine))
        r = rows[-1]
        print(f"{path.name}: tokenizer {r['tokenizer_psnr']:.2f} dB / {r['tokenizer_ms_ssim']:.4f}, "
              f"{8 * r['bytes'] / (r['frames'] * r['width'] * r['height']):.4f} bpp, "
              f"full-scale {r['bits_per_token'][-1]:.2f} bits/token (intra {r['intra_bits_per_token'][-1]:.2f})",
              file=sys.stderr, flush=True)
    summary = summarize(rows, codec.config.tokenizer.codebook_size)
    doc = {"model": codec.config.name, "weights_sha256": codec.weights_sha256.hex(), "frames": args.frames,
           "max_side": args.max_side, "refine": args.refine,
           "command": "python -m benchmarks.eval_model " + " ".join(argv or sys.argv[1:]),
           "summary": summary, "clips": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
