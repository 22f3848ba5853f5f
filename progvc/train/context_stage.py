"""Stage 2: train the context transformer on token pyramids of GOP windows (tokenizer frozen).

The loss is the cross-entropy of every token given its context, computed teacher-forced over the
whole window under the same sparse block mask that coding uses (``teacher_forced_logits``), so the
bits measured here are the bits the range coder will spend. Logged: bits per token per scale, and
on the same batch without temporal context (every frame coded as if it opened a GOP).

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

from ..codec import CodecModel
from ..coding import flatten_targets, teacher_forced_logits
from ..weights import parse_weights, save_weights
from . import common


@dataclass
class ContextTrainConfig:
    tokenizer: str = "runs/tokenizer/tokenizer.safetensors"
    cache: str = "cache/train"
    out: str = "runs/context"
    name: str = ""
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
    log_every: int = 25
    save_every: int = 200
    max_minutes: float = 0.0
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

    def forward(self, tokens: list[torch.Tensor], grids: list[tuple[int, int]]) -> torch.Tensor:
        return teacher_forced_logits(self.context, self.vq, tokens, grids)  # type: ignore[arg-type]


def train(cfg: ContextTrainConfig) -> Path:
    from .data import ClipWindows

    d = common.setup(cfg.device, cfg.seed, cfg.threads)
    out = Path(cfg.out)
    codec_cfg, tok_state = parse_weights(Path(cfg.tokenizer).read_bytes(), cfg.tokenizer)
    if cfg.name:
        codec_cfg = dataclasses.replace(codec_cfg, name=cfg.name)
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
    log = common.RunLog(out, cfg.steps, start, d.main)
    t0, step = time.time(), start
    for batch in data:
        if common.finished(step, cfg, t0, d):
            break
        b, g = batch.shape[:2]
        frames = (batch.flatten(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).to(d.device)
        grids = tok.grids(cfg.crop, cfg.crop)
        tokens = [r.view(b, g, *r.shape[1:]) for r in tok.tokenize(frames, cfg.refine)]
        targets = flatten_targets(tokens)
        logits = net(tokens, grids)
        loss = F.cross_entropy(logits.transpose(1, 2), targets)
        common.set_lr(opt, step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctx.parameters(), 1.0)
        opt.step()
        step += 1
        log.step()
        if step % cfg.log_every == 0:
            sizes = [h * w for h, w in grids]
            with torch.no_grad():
                intra = teacher_forced_logits(ctx, tok.vq, tokens, grids, temporal=False)
            log.log(step, loss_bits=loss.item() / math.log(2), lr=opt.param_groups[0]["lr"],
                    bits_per_scale=bits_per_scale(logits.detach(), targets, sizes, g),
                    intra_bits_per_scale=bits_per_scale(intra, targets, sizes, g),
                    intra_loss_bits=F.cross_entropy(intra.transpose(1, 2), targets).item() / math.log(2))
        if d.main and step % cfg.save_every == 0:
            common.save_checkpoint(out, step, modules)
    common.check_replicas(ctx, d)
    if d.main:
        common.save_checkpoint(out, step, modules)
        save_weights(out / "model.safetensors", model.state_dict(), codec_cfg)
    return out


def parse_args(argv: list[str] | None = None) -> ContextTrainConfig:
    return common.parse_config(ContextTrainConfig, argv, __doc__)


if __name__ == "__main__":
    train(parse_args())
    common.teardown()
