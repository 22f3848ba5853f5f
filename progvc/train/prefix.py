"""Quantiser dropout per crop: train the tokenizer so that every prefix of scales is a picture.

SoundStream (Zeghidour et al. 2021) and DAC (Kumar et al. 2023) train a residual quantiser with
*quantiser dropout*: a share of the training items is decoded from only the first n_q quantisers,
so the encoder, the codebook and the decoder learn to put the most important information first.
DAC found that a share of about one half keeps the full-rate quality while every prefix improves;
always-on dropout cost full-rate quality. Here the "quantisers" are the K scales of the VAR-style
pyramid (coarse first), so a prefix of n scales is exactly what a truncated stream decodes.

Per crop, not per step: in one batch of B crops, each crop b keeps ``n_keep[b]`` scales (K for the
full-rate crops). One encoder, one quantiser and one synthesis pass serve both kinds, so the prefix
loss costs nothing beyond the batch::

    x (B,3,H,W) ──g_a──► f ──VQ scale by scale──► h_0 … h_{K-1}  (each (B,C,h,w), straight-through)
                 f_hat[b] = Σ_{k < n_keep[b]} h_k[b] ──g_s──► x_hat (B,3,H,W)

The quantiser still sees every scale of every crop (codebook and commitment losses over all K),
so the codebook keeps learning the fine residuals on prefix crops too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.quantizer import resize
from ..models.tokenizer import Tokenizer
from ..stream.scales import missing_octaves


def draw_prefixes(batch: int, n_scales: int, share: float, n_min: int, gen: torch.Generator) -> torch.Tensor:
    """Scales kept by each crop of a batch: (batch,) int64 in n_min..n_scales.

    With probability ``share`` a crop keeps a prefix drawn uniformly from ``n_min..n_scales-1``
    (a truncated stream); otherwise all ``n_scales`` (the full rate). ``n_min`` skips the first
    scales, whose 1x1..3x3 pictures no one watches (a 128-pixel crop's 16x16 latent has grids
    1,2,3,4,5,6,7,9,12,16: n = 3 on a crop is about as coarse, relative to the frame, as n = 5 on
    a 480x270 dev frame).
    """
    if not 1 <= n_min <= n_scales:
        raise ValueError(f"n_min={n_min} outside 1..{n_scales}")
    full = torch.full((batch,), n_scales, dtype=torch.long)
    if n_min >= n_scales or share <= 0:
        return full
    cut = torch.rand(batch, generator=gen) < share
    prefix = torch.randint(n_min, n_scales, (batch,), generator=gen)
    return torch.where(cut, prefix, full)


def quantize_scales(tok: Tokenizer, f: torch.Tensor, grids: list[tuple[int, int]],
                    collect: list[torch.Tensor] | None = None
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Residual VQ of latent f (B,C,h,w) on ``grids`` keeping each scale's contribution apart.

    Returns (contributions h_k, each (B,C,h,w) with a straight-through gradient; tokens (B,h_k,w_k);
    VQ loss = mean over scales of codebook + 0.25 commitment). The same arithmetic as
    ``MultiScaleResidualVQ.forward``, which only returns the sum of a prefix common to the batch.
    ``collect`` receives the detached vectors looked up at each scale (for dead-code restarts).
    """
    vq = tok.vq
    rest, parts, tokens, loss = f, [], [], f.new_zeros(())
    for k, grid in enumerate(grids):
        z = resize(rest, grid)  # (B,C,h_k,w_k)
        r = vq.lookup(z.detach())
        if collect is not None:
            collect.append(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
        q = vq.codebook(r).permute(0, 3, 1, 2)
        loss = loss + F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
        h = vq.phi(k, len(grids))(resize(z + (q - z).detach(), grids[-1]))  # (B,C,h,w)
        rest = rest - h
        parts.append(h)
        tokens.append(r)
    return parts, tokens, loss / len(grids)


def prefix_sum(parts: list[torch.Tensor], n_keep: torch.Tensor) -> torch.Tensor:
    """f_hat[b] = sum of the first n_keep[b] contributions. parts: K tensors (B,C,h,w); n_keep (B,)."""
    k = torch.arange(len(parts), device=n_keep.device)
    mask = (k[:, None] < n_keep[None, :]).to(parts[0].dtype)  # (K,B)
    return (torch.stack(parts) * mask[:, :, None, None, None]).sum(0)


def prefix_forward(tok: Tokenizer, x: torch.Tensor, n_keep: torch.Tensor,
                   collect: list[torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Training pass on x (B,3,H,W) in [-1,1] (H, W multiples of the stride), crop b decoded from
    its first n_keep[b] scales. Returns (x_hat (B,3,H,W), tokens, VQ loss).

    A synthesis with ``prefix_film`` is told each crop's missing octaves.
    """
    grids = tok.grids(x.shape[-2], x.shape[-1])
    parts, tokens, vq_loss = quantize_scales(tok, tok.g_a(x), grids, collect)
    f_hat = prefix_sum(parts, n_keep.to(x.device))
    missing = torch.tensor([missing_octaves(grids, int(n)) for n in n_keep], dtype=x.dtype, device=x.device)
    return tok.g_s(f_hat, missing), tokens, vq_loss


def per_item_psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each item of (B,3,H,W) in [-1,1], clamped as displayed: (B,)."""
    mse = (x_hat.detach().clamp(-1, 1) - x).pow(2).mean(dim=(1, 2, 3)) / 4  # [-1,1] -> [0,1]
    return -10 * torch.log10(mse.clamp(min=1e-10))
