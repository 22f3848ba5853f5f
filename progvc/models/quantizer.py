"""Multi-scale residual vector quantisation (VAR, Tian et al. 2024) with one shared codebook.

For K scales with grids (h_k, w_k) and the latent f (B,C,h,w)::

    f_rest = f ; f_hat = 0
    for k in 0..K-1:
        r_k   = argmin_v || down_k(f_rest) - e_v ||          token map (B,h_k,w_k)
        h_k   = phi_k( up(e[r_k], (h,w)) )                     contribution (B,C,h,w)
        f_hat = f_hat + h_k ; f_rest = f_rest - h_k

``phi_k`` is a 3x3 convolution mixed with its input (``(1-m)*x + m*conv(x)``); ``n_phi`` of them are
shared across scales by relative depth k/(K-1), as in VAR. ``embed`` maps tokens back to the
contributions, so the decoder and the context model rebuild exactly the f_hat the encoder saw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.memory import LOOKUP_ENTRIES
from .config import TokenizerConfig

Grid = tuple[int, int]


class Phi(nn.Module):
    def __init__(self, ch: int, mix: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.mix = mix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 - self.mix) + self.conv(x) * self.mix


def resize(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Area-downsample or bicubic-upsample (B,C,h,w) to ``grid``; identity when already there."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    if grid[0] <= x.shape[-2] and grid[1] <= x.shape[-1]:
        return F.interpolate(x, size=grid, mode="area")
    return F.interpolate(x, size=grid, mode="bicubic", align_corners=False)


class MultiScaleResidualVQ(nn.Module):
    """Token pyramid <-> latent. ``quantize`` (encoder side) and ``embed`` (both sides) are a pair."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebook = nn.Embedding(cfg.codebook_size, cfg.latent_channels)
        # codewords start on the scale of a freshly initialised encoder's latent (std about 0.35), so that
        # an untrained model's nearest codes and rate-distortion choices already depend on the input
        nn.init.normal_(self.codebook.weight, std=0.35)
        self.phis = nn.ModuleList(Phi(cfg.latent_channels, cfg.phi_mix) for _ in range(cfg.n_phi))

    def phi(self, k: int, n_scales: int) -> Phi:
        """The refinement shared by scales of similar relative depth k/(K-1)."""
        rel = k / max(1, n_scales - 1)
        return self.phis[min(len(self.phis) - 1, int(rel * len(self.phis)))]

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry of each vector. z (B,C,h,w) -> indices (B,h,w) int64."""
        e = self.codebook.weight  # (V, C)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (N, C)
        rows = max(1, LOOKUP_ENTRIES // e.shape[0])  # the (rows, V) distances of a slice: bounded memory
        idx = [((e * e).sum(1)[None, :] - 2 * flat[i:i + rows] @ e.t()).argmin(1)  # ||z||^2: constant per row
               for i in range(0, len(flat), rows)]
        return (idx[0] if len(idx) == 1 else torch.cat(idx)).view(z.shape[0], z.shape[2], z.shape[3])

    def embed_scale(self, tokens: torch.Tensor, k: int, grids: list[Grid]) -> torch.Tensor:
        """Contribution h_k of scale k. tokens (B,h_k,w_k) -> (B,C,h,w) on the full latent grid."""
        return self.embed_vectors(self.codebook(tokens).permute(0, 3, 1, 2), k, grids)

    def embed_vectors(self, q: torch.Tensor, k: int, grids: list[Grid]) -> torch.Tensor:
        """Contribution of any vectors q (B,C,h_k,w_k) placed on grid k (codewords, or their
        expectation): phi_k(up(q)), (B,C,h,w). Linear in q."""
        return self.phi(k, len(grids))(resize(q, grids[-1]))

    def embed(self, tokens: list[torch.Tensor], grids: list[Grid]) -> torch.Tensor:
        """f_hat from the first len(tokens) scales. Each tokens[k] is (B,h_k,w_k)."""
        return sum(self.embed_scale(r, k, grids) for k, r in enumerate(tokens))  # type: ignore[return-value]

    @torch.no_grad()
    def quantize(self, f: torch.Tensor, grids: list[Grid]) -> list[torch.Tensor]:
        """Token pyramid of a latent. f (B,C,h,w) -> K maps (B,h_k,w_k) int64."""
        rest = f
        tokens = []
        for k, grid in enumerate(grids):
            r = self.lookup(resize(rest, grid))
            rest = rest - self.embed_scale(r, k, grids)
            tokens.append(r)
        return tokens

    def forward(self, f: torch.Tensor, grids: list[Grid], n_keep: int | None = None,
                collect: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Training pass: (f_hat with straight-through gradient, tokens, VQ loss).

        Only the first ``n_keep`` scales contribute to f_hat (random prefix dropping teaches the
        decoder to make plausible pictures from every prefix); all scales are quantised so the
        codebook sees every residual. The loss is codebook + 0.25 * commitment, per scale.
        ``collect``, when given, receives the detached vectors looked up at each scale (B*n_k, C),
        from which training re-seeds dead codebook entries.
        """
        n_keep = len(grids) if n_keep is None else n_keep
        rest = f
        f_hat = torch.zeros_like(f)
        tokens, loss = [], f.new_zeros(())
        for k, grid in enumerate(grids):
            z = resize(rest, grid)
            r = self.lookup(z.detach())
            if collect is not None:
                collect.append(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
            q = self.codebook(r).permute(0, 3, 1, 2)
            loss = loss + F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
            q_st = z + (q - z).detach()
            h = self.phi(k, len(grids))(resize(q_st, grids[-1]))
            rest = rest - h
            if k < n_keep:
                f_hat = f_hat + h
            tokens.append(r)
        return f_hat, tokens, loss / len(grids)
