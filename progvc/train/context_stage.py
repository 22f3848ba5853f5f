"""Stage 2: train the context transformer on token pyramids of GOP windows (tokenizer frozen).

The loss is the cross-entropy of every token given its context, computed teacher-forced over the
whole window under the same sparse block mask that coding uses (``teacher_forced_logits``), so the
bits measured here are the bits the range coder will spend. Logged: bits per token per scale, and
on the same batch without temporal context (every frame coded as if it opened a GOP).

The tokens are the ones the encoder sends: with ``quality_min < 100`` every window draws a quality
uniformly in [quality_min, quality_max] and its tokens are chosen rate-distortion-wise
(:mod:`progvc.coding.rd_choice`) by the model being trained (on-policy: as the model grows surer of repeats,
the encoder picks them more often), and the model is told that window's lambda.

    python -m progvc.train.context_stage --tokenizer runs/tok/tokenizer.safetensors --out runs/ctx
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..codec.codec import CodecModel
from ..coding.gop import GopEncoder
from ..coding.options import quality_of, rd_lambda
from ..coding.state import flatten_targets, teacher_forced_logits
from ..models.config import PRESETS
from ..weights import parse_weights
from . import common


@dataclass
class ContextTrainConfig:
    tokenizer: str = "runs/tokenizer/tokenizer.safetensors"
    cache: str = "cache/train"
    out: str = "runs/context"
    name: str = ""
    context_preset: str = ""  # take the context model's config from this preset (else from --tokenizer's file)
    dim: int = 0  # > 0 overrides the preset's context width / depth / heads / temporal window
    depth: int = 0
    heads: int = 0
    window: int = -1
    steps: int = 2000
    batch: int = 4
    gop: int = 4
    crop: int = 192
    lr: float = 5e-4
    warmup: int = 100
    refine: int = 0  # encoder refinement steps when tokenizing (train on the tokens encode will send)
    refine_share: float = 1.0  # share of windows refined (the others use the plain encoder latent)
    quality_min: float = 100.0  # < 100: rate-distortion tokens at a quality drawn per window
    quality_max: float = 100.0
    log_every: int = 25
    save_every: int = 200
    max_minutes: float = 0.0
    lr_by_time: bool = False  # the cosine also follows the share of max_minutes spent (common.time_share)
    init_from: str = ""  # warm start: copy what fits from these weights (see common.warm_start)
    seed: int = 0
    device: str | None = None
    workers: int = 0
    threads: int = 0


def bits_per_scale(logits: torch.Tensor, targets: torch.Tensor, sizes: list[int], n_frames: int) -> list[float]:
    """Mean bits per token of each scale. logits (B,T*L,V), targets (B,T*L)."""
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") / math.log(2)  # (B, T*L)
    nll = nll.view(nll.shape[0], n_frames, -1)
    out, off = [], 0
    for n in sizes:
        out.append(round(nll[:, :, off:off + n].mean().item(), 4))
        off += n
    return out


class TeacherForced(torch.nn.Module):
    """The context model's training pass as one module call, so that DDP sees it and syncs the
    gradients (calling ``teacher_forced_logits`` on the bare model would bypass the wrapper)."""

    def __init__(self, context: torch.nn.Module, vq: torch.nn.Module) -> None:
        super().__init__()
        self.context, self.vq = context, vq  # vq is frozen: DDP only syncs the context model

    def forward(self, tokens: list[torch.Tensor], grids: list[tuple[int, int]], lam: torch.Tensor) -> torch.Tensor:
        return teacher_forced_logits(self.context, self.vq, tokens, grids, lam=lam)  # type: ignore[arg-type]


def window_tokens(model: CodecModel, frames: torch.Tensor, b: int, cfg: ContextTrainConfig,
                  gen: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Tokens (K maps (B,G,h_k,w_k)) of B windows of G frames ``frames`` (B*G,H,W,3) uint8, as the
    encoder would send them, and each window's lambda (B,)."""
    tok = model.tokenizer
    grids = tok.grids(frames.shape[1], frames.shape[2])
    g = frames.shape[0] // b
    u = torch.rand(b, generator=gen)
    refine = [cfg.refine if r < cfg.refine_share else 0 for r in torch.rand(b, generator=gen).tolist()]
    lams = [rd_lambda(cfg.quality_min + float(x) * (cfg.quality_max - cfg.quality_min)) for x in u]
    encoder = GopEncoder(tok, model.context, grids)
    maps = []
    was_training = model.context.training
    model.context.eval()
    with torch.no_grad():
        for i in range(b):
            f = encoder.latent(frames[i * g:(i + 1) * g], refine[i])
            maps.append(encoder.choose_tokens(f, lams[i]))
    model.context.train(was_training)
    tokens = [torch.stack([m[k] for m in maps]) for k in range(len(grids))]  # (B, G, h_k, w_k)
    return tokens, torch.tensor(lams, dtype=torch.float32, device=frames.device)


def train(cfg: ContextTrainConfig) -> Path:
    from .data import ClipWindows

    d = common.setup(cfg.device, cfg.seed, cfg.threads)
    out = Path(cfg.out)
    codec_cfg, tok_state = parse_weights(Path(cfg.tokenizer).read_bytes(), cfg.tokenizer)
    if cfg.name:
        codec_cfg = dataclasses.replace(codec_cfg, name=cfg.name)
    if cfg.context_preset:
        codec_cfg = dataclasses.replace(codec_cfg, context=PRESETS[cfg.context_preset]().context)
    overrides = {k: v for k, v in (("dim", cfg.dim), ("depth", cfg.depth), ("heads", cfg.heads)) if v > 0}
    if cfg.window >= 0:
        overrides["temporal_window"] = cfg.window
    codec_cfg = dataclasses.replace(codec_cfg, context=dataclasses.replace(codec_cfg.context, **overrides))
    model = CodecModel(codec_cfg).to(d.device)
    model.load_state_dict(tok_state, strict=False)
    tok, ctx = model.tokenizer.eval().requires_grad_(False), model.context
    opt = torch.optim.AdamW(ctx.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.05)
    modules = {"context": ctx, "opt": opt}
    start = common.load_checkpoint(out, modules, d.device)
    common.init_from(ctx, cfg, start)
    if d.main:
        common.save_config(out, cfg)
    net = common.wrap(TeacherForced(ctx, tok.vq), d)
    data = torch.utils.data.DataLoader(
        ClipWindows(cfg.cache, gop=cfg.gop, crop=cfg.crop, seed=cfg.seed * 1000 + d.rank * 100 + start + 7),
        batch_size=cfg.batch, num_workers=cfg.workers)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + d.rank * 31 + start)
    log = common.RunLog(out, cfg.steps, start, d.main)
    t0, step = time.time(), start
    for batch in data:
        if common.finished(step, cfg, t0, d):
            break
        b, g = batch.shape[:2]
        frames = (batch.flatten(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).to(d.device)
        grids = tok.grids(cfg.crop, cfg.crop)
        tokens, lam = window_tokens(model, frames, b, cfg, gen)
        targets = flatten_targets(tokens)
        logits = net(tokens, grids, lam)
        loss = F.cross_entropy(logits.transpose(1, 2), targets)
        common.set_lr(opt, step, cfg, t0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctx.parameters(), 1.0)
        opt.step()
        step += 1
        log.step()
        if step % cfg.log_every == 0:
            sizes = [h * w for h, w in grids]
            with torch.no_grad():
                intra = teacher_forced_logits(ctx, tok.vq, tokens, grids, temporal=False, lam=lam)
            log.log(step, loss_bits=loss.item() / math.log(2), lr=opt.param_groups[0]["lr"],
                    bits_per_scale=bits_per_scale(logits.detach(), targets, sizes, g),
                    intra_bits_per_scale=bits_per_scale(intra, targets, sizes, g),
                    intra_loss_bits=F.cross_entropy(intra.transpose(1, 2), targets).item() / math.log(2),
                    quality=[round(quality_of(float(x)), 1) for x in lam])
        if d.main and step % cfg.save_every == 0:
            common.save_checkpoint(out, step, modules)
    return common.finish_stage(out, step, modules, ctx, model, codec_cfg, d)


def parse_args(argv: list[str] | None = None) -> ContextTrainConfig:
    return common.parse_config(ContextTrainConfig, argv, __doc__)


if __name__ == "__main__":
    train(parse_args())
    common.teardown()
