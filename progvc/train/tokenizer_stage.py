"""Stage 1: train the tokenizer (autoencoder + multi-scale residual VQ) on single frames.

Loss = L1 + w_mse * MSE + w_msssim * (1 - MS-SSIM) + VQ (codebook + 0.25 commitment) + w_adv * hinge GAN, the GAN
switched on after ``disc_start`` steps so the adversary meets a decoder that already reconstructs.
With probability ``drop_prob`` a step keeps only a random prefix of scales, so every prefix
decodes to a plausible picture; with ``prefix_share`` > 0 the prefix is drawn per crop instead
(SoundStream's quantiser dropout, :mod:`progvc.train.prefix`): a share of each batch keeps
``prefix_min``..K-1 scales, the rest every scale, and ``drop_prob`` is ignored. Codebook entries
unused for ``restart_every`` steps are re-seeded from vectors the quantiser just looked up (usage
is logged as share-used and perplexity).

``--extra-blocks N`` / ``--analysis-extra-blocks N`` grow ``g_s`` / ``g_a`` by N residual blocks per
level (``TokenizerConfig.synthesis_extra_blocks`` / ``analysis_extra_blocks``); warm-started from a
progvc weights file with fewer, the grown tokenizer starts as the given one
(:func:`progvc.models.autoencoder.load_into_grown`). ``--w-grid`` adds the grid loss
(:mod:`progvc.train.grid_loss`) of every decode. ``--unquantised-share S``: a share S of the steps
trains the autoencoder alone, on the decode of the unquantised latent ``g_s(g_a(x))`` (no VQ loss,
no codebook update); the encoder's latent refinement brings the codec's quantised picture to within
about a tenth of a dB of that decode at high quality (progvc/weights/README.md, "0.4.7"), so its
ceiling is what these steps raise.

    python -m progvc.train.tokenizer_stage --cache cache/train --out runs/tok --steps 4000
    torchrun --nproc_per_node 8 -m progvc.train.tokenizer_stage ...      (several GPUs)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.autoencoder import load_into_grown
from ..models.config import PRESETS, TokenizerConfig
from ..models.tokenizer import Tokenizer
from ..runtime.errors import ConfigError
from ..stream.scales import missing_octaves
from ..weights import parse_weights, save_weights
from . import common
from .discriminator import PatchDiscriminator, d_hinge, g_hinge
from .grid_loss import grid_loss
from .prefix import draw_prefixes, per_item_psnr, prefix_forward


@dataclass
class TokenizerTrainConfig:
    cache: str = "cache/train"
    out: str = "runs/tokenizer"
    preset: str = "small"
    steps: int = 4000
    batch: int = 8
    crop: int = 128
    lr: float = 4e-4
    warmup: int = 200
    w_mse: float = 0.0  # on [-1,1] pixels; weights PSNR directly (L1 alone favours sharp edges)
    w_msssim: float = 0.2
    w_adv: float = 0.05
    disc_start: int = 2500
    drop_prob: float = 0.3
    prefix_share: float = 0.0  # per-crop quantiser dropout (replaces drop_prob when > 0)
    prefix_min: int = 3  # fewest scales a dropped crop keeps
    zoom_out: float = 0.0  # share of crops taken at 2x size and area-downscaled (ClipWindows)
    upsample: str = "bilinear"  # the synthesis' up-sampling (TokenizerConfig.upsample): v5's; v1-v4 used nearest
    extra_blocks: int = 0  # TokenizerConfig.synthesis_extra_blocks
    analysis_extra_blocks: int = 0  # TokenizerConfig.analysis_extra_blocks
    channels: str = ""  # "48,96,192,256": the autoencoder's widths per level (default: the preset's)
    latent_channels: int = 0  # > 0: the latent's channels (default: the preset's)
    w_grid: float = 0.0  # the decode's 8-pixel phase profile against the source's (grid_loss)
    unquantised_share: float = 0.0  # share of steps that train g_a and g_s alone, unquantised
    restart_every: int = 100
    log_every: int = 50
    save_every: int = 250
    max_minutes: float = 0.0
    lr_by_time: bool = False  # the cosine also follows the share of max_minutes spent (common.time_share)
    init_from: str = ""  # warm start: copy what fits from these weights (see common.warm_start)
    seed: int = 0
    device: str | None = None
    workers: int = 0
    threads: int = 0


def msssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM on [-1,1] images. pytorch-msssim needs side > 16 * (window - 1), so small crops
    use a smaller Gaussian window (7 for 128-pixel crops, 11 from 176 up)."""
    from pytorch_msssim import ms_ssim

    side = min(x.shape[-2:])
    win = min(11, max(3, ((side - 1) // 16) | 1))
    while (win - 1) * 16 >= side:
        win -= 2
    return 1 - ms_ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, win_size=win, size_average=True)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = F.mse_loss(x.clamp(-1, 1), y).item() / 4  # [-1,1] -> [0,1]
    return 10 * math.log10(1 / max(mse, 1e-10))


class CodeUsage:
    """Counts how often each codebook entry is picked, to log usage and find dead entries."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.counts = torch.zeros(size, device=device)

    def add(self, tokens: list[torch.Tensor]) -> None:
        for r in tokens:
            self.counts += torch.bincount(r.flatten(), minlength=len(self.counts))

    def stats(self) -> dict[str, float]:
        p = self.counts / self.counts.sum().clamp(min=1)
        ent = -(p[p > 0] * p[p > 0].log()).sum().item()
        return {"code_used": (self.counts > 0).float().mean().item(), "code_perplexity": math.exp(ent)}

    def restart(self, codebook: torch.nn.Embedding, pool: torch.Tensor) -> int:
        """Re-seed unused entries with random vectors of ``pool`` (N,C); returns how many."""
        dead = (self.counts == 0).nonzero().flatten()
        if len(dead) and len(pool):
            pick = torch.randint(len(pool), (len(dead),), device=pool.device)
            codebook.weight.data[dead] = pool[pick] + 1e-3 * torch.randn_like(pool[pick])
        self.counts.zero_()
        return len(dead)


def train(cfg: TokenizerTrainConfig) -> Path:
    from .data import ClipWindows

    d = common.setup(cfg.device, cfg.seed, cfg.threads)
    if (cfg.prefix_share > 0 or cfg.unquantised_share > 0) and d.world > 1:
        # their forwards bypass the DDP wrapper: no gradient would be synchronised, and the replicas
        # would part (check_replicas would find it only when the run ends)
        raise ConfigError("--prefix-share and --unquantised-share run in one process; leave them out under torchrun")
    out = Path(cfg.out)
    codec_cfg = PRESETS[cfg.preset]()
    codec_cfg = dataclasses.replace(codec_cfg, tokenizer=tokenizer_config(codec_cfg.tokenizer, cfg))
    tok = Tokenizer(codec_cfg.tokenizer).to(d.device)
    disc = PatchDiscriminator().to(d.device)
    opt = torch.optim.AdamW(tok.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    modules = {"tokenizer": tok, "disc": disc, "opt": opt, "opt_d": opt_d}
    start = common.load_checkpoint(out, modules, d.device)
    if start == 0 and cfg.init_from.endswith(".safetensors") and grow_from(tok, cfg.init_from):
        print(f"warm start: grown from {cfg.init_from}", flush=True)
    else:
        common.init_from(tok, cfg, start)
    if d.main:
        common.save_config(out, cfg)
    model = common.wrap(tok, d, unused_ok=True)  # dropped scales leave the last phi unused
    disc_ddp = common.wrap(disc, d)
    data = torch.utils.data.DataLoader(
        ClipWindows(cfg.cache, gop=1, crop=cfg.crop, seed=cfg.seed * 1000 + d.rank * 100 + start,
                    zoom_out=cfg.zoom_out),
        batch_size=cfg.batch, num_workers=cfg.workers)
    usage = CodeUsage(codec_cfg.tokenizer.codebook_size, d.device)
    log = common.RunLog(out, cfg.steps, start, d.main)
    t0, step = time.time(), start
    pool: list[torch.Tensor] = []
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + d.rank + start)
    n_scales = codec_cfg.tokenizer.n_scales
    for batch in data:
        if common.finished(step, cfg, t0, d):
            break
        x = batch[:, 0].to(d.device) * 2 - 1  # (B,3,crop,crop) in [-1,1]
        n_keep, keep = None, None
        collect: list[torch.Tensor] = []
        plain = cfg.unquantised_share > 0 and torch.rand((), generator=gen) < cfg.unquantised_share
        if plain:  # the autoencoder alone: no tokens, no VQ loss
            x_hat, tokens, vq_loss = tok.g_s(tok.g_a(x)), [], x.new_zeros(())
        elif cfg.prefix_share > 0:
            keep = draw_prefixes(len(x), n_scales, cfg.prefix_share, cfg.prefix_min, gen)  # (B,)
            x_hat, tokens, vq_loss = prefix_forward(tok, x, keep, collect)
        else:
            if torch.rand(()) < cfg.drop_prob:
                n_keep = int(torch.randint(1, n_scales + 1, ()))
            x_hat, tokens, vq_loss = model(x, n_keep, collect)
        l1 = (x_hat - x).abs().mean()
        ms = msssim_loss(x_hat, x)
        loss = l1 + cfg.w_mse * F.mse_loss(x_hat, x) + cfg.w_msssim * ms + vq_loss
        if cfg.w_grid:
            loss = loss + cfg.w_grid * grid_loss(x_hat, x)
        gan_on = step >= cfg.disc_start and cfg.w_adv > 0
        if gan_on:
            loss = loss + cfg.w_adv * g_hinge(disc(x_hat))
        common.set_lr(opt, step, cfg, t0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
        if gan_on:
            opt_d.zero_grad(set_to_none=True)
            real, fake = disc_ddp(torch.cat([x, x_hat.detach()])).chunk(2)  # one forward: one DDP sync
            d_loss = d_hinge(real, fake)
            d_loss.backward()
            opt_d.step()
        usage.add(tokens)
        if collect:
            pool = (pool + [torch.cat(collect)[torch.randperm(sum(len(c) for c in collect))[:4096]]])[-4:]
        step += 1
        log.step()
        if step % cfg.restart_every == 0 and pool:  # (unquantised steps look nothing up)
            common.sum_(usage.counts, d)  # every rank re-seeds the same entries ...
            stats = usage.stats()
            restarted = usage.restart(tok.vq.codebook, torch.cat(pool))
            common.broadcast_(tok.vq.codebook.weight.data, d)  # ... with rank 0's vectors
            if step % cfg.log_every == 0 or step == cfg.restart_every:
                log.log(step, restarted=restarted, **stats)
        if step % cfg.log_every == 0:
            log.log(step, loss=loss.item(), l1=l1.item(), msssim=1 - ms.item(), vq=vq_loss.item(),
                    **({"psnr_unquantised": psnr(x_hat, x)} if plain else batch_psnr(x_hat, x, n_keep, keep, n_scales)),
                    lr=opt.param_groups[0]["lr"],
                    prefix_psnr=prefix_psnr(tok, x) if step % (cfg.log_every * 10) == 0 else None)
        if d.main and step % cfg.save_every == 0:
            common.save_checkpoint(out, step, modules)
    common.check_replicas(tok, d)
    common.check_replicas(disc, d)
    if d.main:
        common.save_checkpoint(out, step, modules)
        state = {f"tokenizer.{k}": v for k, v in tok.state_dict().items()}
        save_weights(out / "tokenizer.safetensors", state, codec_cfg)
    return out


def tokenizer_config(preset: TokenizerConfig, cfg: TokenizerTrainConfig) -> TokenizerConfig:
    """The preset's tokenizer with the run's architecture flags applied."""
    widths = {}
    if cfg.channels:
        try:
            widths["channels"] = tuple(int(c) for c in cfg.channels.split(","))
        except ValueError:
            raise ConfigError(f"--channels takes widths like 32,64,192,256, got {cfg.channels!r}") from None
    if cfg.latent_channels > 0:
        widths["latent_channels"] = cfg.latent_channels
    return dataclasses.replace(preset, upsample=cfg.upsample, synthesis_extra_blocks=cfg.extra_blocks,
                               analysis_extra_blocks=cfg.analysis_extra_blocks, **widths)


def grow_from(tok: Tokenizer, path: str) -> bool:
    """If ``tok`` has more extra residual blocks than the tokenizer in weights file ``path``, load that
    tokenizer into it, so that ``tok`` computes what the given one does until trained, and return
    True; return False (loading nothing) when it has as many. One with fewer is refused: a tokenizer
    does not shrink."""
    cfg, state = parse_weights(Path(path).read_bytes(), path)
    given = cfg.tokenizer
    more = [getattr(tok.cfg, n) - getattr(given, n) for n in ("synthesis_extra_blocks", "analysis_extra_blocks")]
    if min(more) < 0:
        raise ValueError(f"{path} has more extra residual blocks than this run's tokenizer; it would shrink")
    if max(more) == 0:
        return False
    small = Tokenizer(dataclasses.replace(tok.cfg, synthesis_extra_blocks=given.synthesis_extra_blocks,
                                          analysis_extra_blocks=given.analysis_extra_blocks))
    small.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("tokenizer.")})
    load_into_grown(tok.g_a, small.g_a)
    load_into_grown(tok.g_s, small.g_s)
    tok.vq.load_state_dict(small.vq.state_dict())
    return True


def batch_psnr(x_hat: torch.Tensor, x: torch.Tensor, n_keep: int | None, keep: torch.Tensor | None,
               n_scales: int) -> dict[str, float | None]:
    """Logged PSNR of a batch: ``psnr`` over the crops decoded from every scale (NaN when the step
    dropped scales), and with per-crop prefixes ``psnr_prefix`` over the others."""
    if keep is None:
        return {"psnr": psnr(x_hat, x) if n_keep is None else float("nan")}
    each, full = per_item_psnr(x_hat, x), (keep == n_scales).to(x.device)
    return {"psnr": each[full].mean().item() if full.any() else float("nan"),
            "psnr_prefix": each[~full].mean().item() if (~full).any() else None}


@torch.no_grad()
def prefix_psnr(tok: Tokenizer, x: torch.Tensor) -> dict[str, float]:
    """PSNR of the reconstruction from each prefix of scales, on one batch."""
    grids = tok.grids(*x.shape[-2:])
    f = tok.g_a(x)
    tokens = tok.vq.quantize(f, grids)
    f_hat = torch.zeros_like(f)
    out = {}
    for k, r in enumerate(tokens):
        f_hat = f_hat + tok.vq.embed_scale(r, k, grids)
        out[str(k + 1)] = round(psnr(tok.g_s(f_hat, missing_octaves(grids, k + 1)), x), 2)
    return out


def parse_args(argv: list[str] | None = None) -> TokenizerTrainConfig:
    return common.parse_config(TokenizerTrainConfig, argv, __doc__)


if __name__ == "__main__":
    train(parse_args())
    common.teardown()
