"""Stage 3: teach the synthesis ``g_s`` to make the best picture from every prefix of scales.

A truncated stream gives ``g_s`` a latent without its finest scales; a synthesis trained only on
whole pyramids decodes that as a heavy blur. This stage fine-tunes ``g_s`` (encoder, codebook and
context model frozen) on latents summed from a random prefix of n scales, with n = K (the whole
pyramid) in a share ``p_full`` of the crops so that full-scale quality holds, and tells it how
many octaves are missing (``prefix_film``, see :mod:`progvc.models.autoencoder`).

``--upsample bilinear`` switches the synthesis' up-sampling (nearest-neighbour leaves a period-8
grid in every picture) and fine-tunes it to the change; ``--film false`` trains without FiLM.
``--extra-blocks N`` grows the synthesis by N residual blocks per level below full resolution
(``TokenizerConfig.synthesis_extra_blocks``), zero-initialised so training starts from the given
pictures; the tokens, and with them the context model, stay as they are.

    python -m progvc.train.synthesis_stage --weights weights/progvc-small-v3.safetensors --out runs/syn
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..codec.codec import CodecModel
from ..models.autoencoder import load_into_grown
from ..stream.scales import missing_octaves
from ..weights import parse_weights
from . import common
from .grid_loss import grid_loss
from .tokenizer_stage import msssim_loss, psnr


@dataclass
class SynthesisTrainConfig:
    weights: str = "weights/progvc-small-v3.safetensors"
    cache: str = "cache/train"
    out: str = "runs/synthesis"
    name: str = ""
    steps: int = 1000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-4
    warmup: int = 50
    p_full: float = 0.25  # share of crops decoded from the whole pyramid
    film: bool = True  # tell g_s how many octaves are missing (prefix_film)
    upsample: str = ""  # "" keeps the weights' up-sampling; "nearest" or "bilinear" sets it
    extra_blocks: int = -1  # -1 keeps the weights' synthesis_extra_blocks; more grows the synthesis
    w_mse: float = 5.0  # on [-1,1] pixels, beside L1
    w_msssim: float = 0.2
    w_grid: float = 0.0  # the decode's 8-pixel phase profile against the source's (grid_loss)
    zoom_out: float = 0.5
    log_every: int = 25
    save_every: int = 200
    max_minutes: float = 0.0
    init_from: str = ""
    seed: int = 0
    device: str | None = None
    workers: int = 0
    threads: int = 0


def prefix_latents(model: CodecModel, x: torch.Tensor, n_sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of crops x (B,3,c,c) in [-1,1] keeping the first ``n_sent[b]`` scales, and the
    missing octaves of each: ((B,C,h,w), (B,)). Nearest-codeword tokens, no gradient."""
    tok = model.tokenizer
    grids = tok.grids(x.shape[-2], x.shape[-1])
    with torch.no_grad():
        f = tok.g_a(x)
        tokens = tok.vq.quantize(f, grids)
        upto = torch.stack([tok.vq.embed_scale(r, k, grids) for k, r in enumerate(tokens)]).cumsum(0)  # (K,B,C,h,w)
        f_hat = upto[n_sent - 1, torch.arange(len(x))]
    missing = torch.tensor([missing_octaves(grids, int(n)) for n in n_sent], device=x.device)
    return f_hat, missing


def train(cfg: SynthesisTrainConfig) -> Path:
    from .data import ClipWindows

    d = common.setup(cfg.device, cfg.seed, cfg.threads)
    out = Path(cfg.out)
    codec_cfg, state = parse_weights(Path(cfg.weights).read_bytes(), cfg.weights)
    given = codec_cfg.tokenizer
    extra = given.synthesis_extra_blocks if cfg.extra_blocks < 0 else cfg.extra_blocks
    if extra < given.synthesis_extra_blocks:
        raise ValueError(f"--extra-blocks {extra} would shrink a synthesis with {given.synthesis_extra_blocks}")
    tok_cfg = dataclasses.replace(given, prefix_film=cfg.film, upsample=cfg.upsample or given.upsample,
                                  synthesis_extra_blocks=extra)
    codec_cfg = dataclasses.replace(codec_cfg, name=cfg.name or codec_cfg.name, tokenizer=tok_cfg)
    model = CodecModel(codec_cfg).to(d.device)
    if extra > given.synthesis_extra_blocks:  # load the given model, then copy it into the grown one
        small = CodecModel(dataclasses.replace(codec_cfg, tokenizer=dataclasses.replace(tok_cfg, synthesis_extra_blocks=
                                                                                         given.synthesis_extra_blocks)))
        small.load_state_dict(state, strict=not cfg.film)
        state = {k: v for k, v in small.state_dict().items() if not k.startswith("tokenizer.g_s.")}
        load_into_grown(model.tokenizer.g_s, small.tokenizer.g_s)
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("tokenizer.g_s.")})
    model.load_state_dict(state, strict=not cfg.film)  # FiLM layers start at zero: the given synthesis
    model.requires_grad_(False).eval()
    g_s = model.tokenizer.g_s.requires_grad_(True).train()
    opt = torch.optim.AdamW(g_s.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    modules = {"g_s": g_s, "opt": opt}
    start = common.load_checkpoint(out, modules, d.device)
    common.init_from(g_s, cfg, start)
    if d.main:
        common.save_config(out, cfg)
    net = common.wrap(g_s, d)
    data = torch.utils.data.DataLoader(
        ClipWindows(cfg.cache, gop=1, crop=cfg.crop, seed=cfg.seed * 1000 + d.rank * 100 + start + 11,
                    zoom_out=cfg.zoom_out), batch_size=cfg.batch, num_workers=cfg.workers)
    n_scales = codec_cfg.tokenizer.n_scales
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + d.rank + start)
    log = common.RunLog(out, cfg.steps, start, d.main)
    t0, step = time.time(), start
    for batch in data:
        if common.finished(step, cfg, t0, d):
            break
        x = batch[:, 0].to(d.device) * 2 - 1  # (B,3,crop,crop) in [-1,1]
        full = torch.rand(len(x), generator=gen) < cfg.p_full
        n_sent = torch.where(full, n_scales, torch.randint(1, n_scales, (len(x),), generator=gen)).to(d.device)
        f_hat, missing = prefix_latents(model, x, n_sent)
        x_hat = net(f_hat, missing)
        l1, mse, ms = (x_hat - x).abs().mean(), F.mse_loss(x_hat, x), msssim_loss(x_hat, x)
        loss = l1 + cfg.w_mse * mse + cfg.w_msssim * ms
        if cfg.w_grid:
            loss = loss + cfg.w_grid * grid_loss(x_hat, x)
        common.set_lr(opt, step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_s.parameters(), 1.0)
        opt.step()
        step += 1
        log.step()
        if step % cfg.log_every == 0:
            full_dev = full.to(d.device)
            log.log(step, loss=loss.item(), lr=opt.param_groups[0]["lr"],
                    psnr_full=psnr(x_hat[full_dev].detach(), x[full_dev]) if full.any() else None,
                    psnr_prefix=psnr(x_hat[~full_dev].detach(), x[~full_dev]) if (~full).any() else None)
        if d.main and step % cfg.save_every == 0:
            common.save_checkpoint(out, step, modules)
    return common.finish_stage(out, step, modules, g_s, model, codec_cfg, d)


def parse_args(argv: list[str] | None = None) -> SynthesisTrainConfig:
    return common.parse_config(SynthesisTrainConfig, argv, __doc__)


if __name__ == "__main__":
    train(parse_args())
    common.teardown()
