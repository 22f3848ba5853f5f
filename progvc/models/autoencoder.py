"""Convolutional analysis / synthesis transforms ``g_a`` and ``g_s`` (image <-> latent).

::

    x (B,3,H,W) in [-1,1] ──g_a──► f (B,C,H/s,W/s) ──(quantise)──► f_hat ──g_s──► x_hat (B,3,H,W)

``H`` and ``W`` must be multiples of the stride ``s``; :class:`progvc.models.tokenizer.Tokenizer`
pads. Full-resolution levels only carry a stem convolution (residual blocks there would dominate
the cost on CPU for little gain); residual blocks sit at 1/2 resolution and below.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TokenizerConfig


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch >= 8 else 1, ch, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _level_channels(cfg: TokenizerConfig) -> list[int]:
    """Channels at each resolution level 0 (full) .. log2(stride) (latent)."""
    n = int(math.log2(cfg.stride))
    return [cfg.channels[min(i, len(cfg.channels) - 1)] for i in range(n + 1)]


class AnalysisTransform(nn.Module):
    """``g_a``: (B,3,H,W) in [-1,1] -> latent (B,C,H/s,W/s)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch = _level_channels(cfg)
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i in range(len(ch) - 1):
            if i > 0:
                layers.append(ResBlock(ch[i]))
            layers.append(nn.Conv2d(ch[i], ch[i + 1], 4, stride=2, padding=1))
        layers += [ResBlock(ch[-1]), ResBlock(ch[-1]), _norm(ch[-1]), nn.SiLU(),
                   nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SynthesisTransform(nn.Module):
    """``g_s``: latent (B,C,h,w) -> (B,3,h*s,w*s), unbounded (clamp to [-1,1] when displaying)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch = _level_channels(cfg)
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1),
                                   ResBlock(ch[-1]), ResBlock(ch[-1])]
        for i in range(len(ch) - 1, 0, -1):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1)]
            if i > 1:
                layers.append(ResBlock(ch[i - 1]))
        layers += [_norm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)
