"""Convolutional analysis / synthesis transforms ``g_a`` and ``g_s`` (image <-> latent).

::

    x (B,3,H,W) in [-1,1] ──g_a──► f (B,C,H/s,W/s) ──(quantise)──► f_hat ──g_s──► x_hat (B,3,H,W)
                                                     missing octaves m ──FiLM──┘

``H`` and ``W`` must be multiples of the stride ``s``; :class:`progvc.models.tokenizer.Tokenizer`
pads. Full-resolution levels only carry a stem convolution (residual blocks there would dominate
the cost on CPU for little gain); residual blocks sit at 1/2 resolution and below.

A truncated stream gives ``g_s`` a latent that lacks its finest scales. With ``prefix_film`` the
synthesis is told how much is missing, ``m = log2(finest grid side / last decoded grid side)``
(0 for a full stream), and every residual block modulates its normalised activations with a
scale and shift computed from ``m`` (FiLM). The modulation starts at zero (the unconditioned
network), so a model warm-started from one without it decodes the same until trained.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import TokenizerConfig


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch >= 8 else 1, ch, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(silu(norm(conv(silu(norm(x)))))).

    ``film`` (B, 4*ch) = (gamma1, beta1, gamma2, beta2) modulates each normalised activation as
    ``norm(x) * (1 + gamma) + beta``.
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        if film is None:
            return x + self.body(x)
        g1, b1, g2, b2 = film[:, :, None, None].chunk(4, dim=1)  # each (B, ch, 1, 1)
        n1, _, c1, n2, _, c2 = self.body
        h = c1(F.silu(n1(x) * (1 + g1) + b1))
        return x + c2(F.silu(n2(h) * (1 + g2) + b2))


def _level_channels(cfg: TokenizerConfig) -> list[int]:
    """Channels at each resolution level 0 (full) .. log2(stride) (latent)."""
    n = int(math.log2(cfg.stride))
    return [cfg.channels[min(i, len(cfg.channels) - 1)] for i in range(n + 1)]


class AnalysisTransform(nn.Module):
    """``g_a``: (B,3,H,W) in [-1,1] -> latent (B,C,H/s,W/s).

    ``analysis_extra_blocks`` adds that many residual blocks at each level below full resolution
    and at the latent (zero-initialised: see :func:`load_into_grown`)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch = _level_channels(cfg)
        extra = cfg.analysis_extra_blocks
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i in range(len(ch) - 1):
            if i > 0:
                layers += [ResBlock(ch[i]) for _ in range(1 + extra)]
            layers.append(nn.Conv2d(ch[i], ch[i + 1], 4, stride=2, padding=1))
        layers += [*(ResBlock(ch[-1]) for _ in range(2 + extra)), _norm(ch[-1]), nn.SiLU(),
                   nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PrefixFilm(nn.Module):
    """Missing octaves m (B,) -> FiLM parameters (B, sum of 4*ch over the residual blocks).

    Features (m, sqrt(m), [m > 0]) through a small MLP whose last layer starts at zero.
    """

    def __init__(self, block_channels: list[int], hidden: int = 64) -> None:
        super().__init__()
        self.sizes = [4 * ch for ch in block_channels]
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, sum(self.sizes)))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, m: torch.Tensor) -> list[torch.Tensor]:
        feats = torch.stack([m, m.clamp(min=0).sqrt(), (m > 0).to(m.dtype)], dim=1)  # (B, 3)
        return list(self.mlp(feats).split(self.sizes, dim=1))


class SynthesisTransform(nn.Module):
    """``g_s``: latent (B,C,h,w) -> (B,3,h*s,w*s), unbounded (clamp to [-1,1] when displaying).

    ``missing`` (float or (B,) tensor): octaves of scales missing from the latent (see the module
    docstring); used only when the config has ``prefix_film``.
    """

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch = _level_channels(cfg)
        extra = cfg.synthesis_extra_blocks
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1),
                                   *(ResBlock(ch[-1]) for _ in range(2 + extra))]
        for i in range(len(ch) - 1, 0, -1):
            layers += [nn.Upsample(scale_factor=2, mode=cfg.upsample), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1)]
            if i > 1:
                layers += [ResBlock(ch[i - 1]) for _ in range(1 + extra)]
        layers += [_norm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        blocks = [m.body[0].num_channels for m in self.net if isinstance(m, ResBlock)]
        self.film = PrefixFilm(blocks) if cfg.prefix_film else None

    def forward(self, y: torch.Tensor, missing: float | torch.Tensor = 0.0, bfloat16: bool = False) -> torch.Tensor:
        """``bfloat16``: every layer but the last runs in bfloat16 (autocast), and the last, which
        makes the picture, in float32 (the decoder's choice where bfloat16 is native:
        :func:`progvc.models.tokenizer.synthesis_in_bfloat16`)."""
        y = y.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout: 0.75x the time on CPU
        films = None
        if self.film is not None:
            films = iter(self.film(torch.as_tensor(missing, dtype=y.dtype, device=y.device).expand(y.shape[0])))
        # nullcontext, not autocast(enabled=False): a caller's autocast (the encoder's search) stays on
        with torch.autocast(y.device.type, dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext():
            for layer in self.net[:-1]:
                y = layer(y, next(films)) if films is not None and isinstance(layer, ResBlock) else layer(y)
        return self.net[-1](y.float())


def load_into_grown(dst: AnalysisTransform | SynthesisTransform, src: AnalysisTransform | SynthesisTransform) -> None:
    """Copy ``src`` into ``dst``, a transform of the same kind with the same levels and more residual
    blocks per level (``synthesis_extra_blocks`` / ``analysis_extra_blocks``). Layers are paired in
    order; a residual block of ``dst`` with no block left at that place in ``src`` is an extra one
    and keeps its zero-initialised output, so ``dst`` computes what ``src`` does until trained."""
    if type(dst) is not type(src):
        raise ValueError(f"cannot grow a {type(dst).__name__} from a {type(src).__name__}")
    if getattr(dst, "film", None) is not None or getattr(src, "film", None) is not None:
        raise ValueError("growing a synthesis with FiLM is not supported (its modulation sizes change)")
    old = iter(src.net)
    pending = next(old, None)
    for layer in dst.net:
        if isinstance(layer, ResBlock) and not isinstance(pending, ResBlock):
            continue
        if pending is None or type(layer) is not type(pending):
            raise ValueError("the transforms differ in more than their residual blocks")
        layer.load_state_dict(pending.state_dict())
        pending = next(old, None)
    if pending is not None:
        raise ValueError("the grown transform has fewer layers than the one it grows from")
