"""The tokenizer: frames <-> token pyramids, for any frame size.

::

    frames (T,H,W,3) uint8 ─► pad to a multiple of s (edge replicate) ─► g_a ─► f (T,C,h,w)
       ─► multi-scale residual VQ ─► K token maps (T,h_k,w_k)        (h = ceil(H/s), w = ceil(W/s))
    token maps ─► embed ─► f_hat ─► g_s ─► crop to (H,W) ─► frames (T,H,W,3) uint8
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.devices import bfloat16_pays
from ..runtime.memory import REFINE_CHUNK_PIXELS, TILE_PIXELS
from ..stream.scales import missing_octaves, scale_grids
from .autoencoder import AnalysisTransform, SynthesisTransform
from .config import TokenizerConfig
from .quantizer import Grid, MultiScaleResidualVQ
from .tiling import bounded


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T,H,W,3) -> float (T,3,H,W) in [-1,1]."""
    return frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float (T,3,H,W) in [-1,1] -> uint8 (T,H,W,3), rounded and clamped."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = AnalysisTransform(cfg)
        self.g_s = SynthesisTransform(cfg)
        self.vq = MultiScaleResidualVQ(cfg)
        self.tile_pixels = TILE_PIXELS  # pieces of g_a / g_s work (frames or tiles); see tiling.bounded

    def latent_grid(self, height: int, width: int) -> Grid:
        s = self.cfg.stride
        return -(-height // s), -(-width // s)

    def grids(self, height: int, width: int) -> list[Grid]:
        """The K token grids used for frames of this size."""
        return scale_grids(*self.latent_grid(height, width), self.cfg.n_scales)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (B,3,H,W) on the bottom/right to a multiple of the stride by repeating edge pixels."""
        h, w = self.latent_grid(x.shape[-2], x.shape[-1])
        ph, pw = h * self.cfg.stride - x.shape[-2], w * self.cfg.stride - x.shape[-1]
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def analyse(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T,H,W,3) -> latent f (T,C,h,w), a few frames or one frame's tiles at a time
        (:func:`~progvc.models.tiling.bounded`), so memory does not grow with T or H x W."""
        n = max(1, self.tile_pixels // (frames.shape[1] * frames.shape[2]))  # frames per batch, as bounded does
        pieces = [bounded(self.g_a, self.pad(to_unit(frames[i:i + n])), scale=1 / self.cfg.stride, norms=self.g_a,
                          max_pixels=self.tile_pixels) for i in range(0, len(frames), n)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    @torch.no_grad()
    def encode_latent(self, frames: torch.Tensor, refine: int = 0) -> torch.Tensor:
        """uint8 (T,H,W,3) -> the latent (T,C,h,w) the encoder quantises.

        ``refine`` > 0 runs that many steps of :meth:`refine_latent` on each frame first, for
        frames of at most ``REFINE_CHUNK_PIXELS`` (larger ones keep the greedy latent).
        """
        return self.refined(frames, self.analyse(frames), refine)

    @torch.no_grad()
    def refined(self, frames: torch.Tensor, f: torch.Tensor, steps: int, prefixes: tuple[int, ...] = ()
                ) -> torch.Tensor:
        """:meth:`refine_latent` of latent f (T,C,h,w) a few frames at a time, for frames of at most
        ``REFINE_CHUNK_PIXELS`` (larger ones, and ``steps`` = 0, keep f)."""
        if steps <= 0 or frames.shape[1] * frames.shape[2] > REFINE_CHUNK_PIXELS:
            return f
        n = max(1, REFINE_CHUNK_PIXELS // (frames.shape[1] * frames.shape[2]))
        return torch.cat([self.refine_latent(frames[i:i + n], f[i:i + n], steps, prefixes=prefixes)
                          for i in range(0, len(f), n)])

    @torch.no_grad()
    def tokenize(self, frames: torch.Tensor, refine: int = 0) -> list[torch.Tensor]:
        """uint8 (T,H,W,3) -> K token maps (T,h_k,w_k) int64: nearest-codeword tokens (lambda = 0)."""
        return self.vq.quantize(self.encode_latent(frames, refine), self.grids(frames.shape[1], frames.shape[2]))

    def refine_latent(self, frames: torch.Tensor, f: torch.Tensor, steps: int, lr: float = 0.1,
                      prefixes: tuple[int, ...] = ()) -> torch.Tensor:
        """Encoder-side search: move the latent so that its *quantised* reconstruction fits the frames.

        frames uint8 (T,H,W,3), f = analyse(frames) (T,C,h,w) -> refined latent, same shape.
        ``g_a`` is an amortised guess of the best latent; Adam steps on each frame's
        ||g_s(Q(f)) - x||^2 with the straight-through Q of training close much of that gap (10
        steps: 22.69 -> 23.45 dB mean on the dev clips, 0.4-1.1 dB per clip, at about the same
        bpp; benchmarks/results/eval_dev.json). Only the encoder changes: the stream and the
        decoder do not. Each frame keeps its refined latent only if that really decodes
        closer to it than the latent it started from. Frames are independent (Adam is per
        element), so :meth:`refined` batches them up to ``REFINE_CHUNK_PIXELS`` to bound memory.

        ``prefixes`` (scale counts): the loss also counts the picture of each of these prefixes of
        the quantised pyramid, weighted as much as the full one in all (the mean over them is
        added), so the coarse scales are chosen for what a truncated stream shows
        (:func:`progvc.stream.scales.prefix_terms`). Each term is differentiated on its own, so memory stays that of
        one synthesis pass.

        The synthesis inside the search runs in :func:`search_precision`.
        """
        grids = self.grids(frames.shape[1], frames.shape[2])
        terms = [(len(grids), 1.0)] + [(n, 1.0 / len(prefixes)) for n in prefixes]
        search = search_precision(f.device)
        with torch.inference_mode(False), torch.enable_grad():
            x = self.pad(to_unit(frames.clone()))  # clones: coding runs under inference_mode
            y = f.clone().requires_grad_(True)
            opt = torch.optim.Adam([y], lr=lr)
            for _ in range(steps):
                grad = torch.zeros_like(y)
                for n, weight in terms:
                    f_hat, _, _ = self.vq(y, grids, n)
                    with search:  # only the synthesis: the quantiser's nearest codes stay float32
                        picture = self.g_s(f_hat).float()
                    loss = weight * (picture - x).pow(2).mean(dim=(1, 2, 3)).sum()  # per-frame MSE, summed
                    grad += torch.autograd.grad(loss, y)[0]  # no gradients land on the weights
                y.grad = grad
                opt.step()
            y = y.detach()

        def errors(latent: torch.Tensor) -> torch.Tensor:
            tokens = self.vq.quantize(latent, grids)
            return sum(weight * (self.g_s(self.vq.embed(tokens[:n], grids)).clamp(-1, 1) - x).pow(2).mean(dim=(1, 2, 3))
                       for n, weight in terms)

        better = errors(y) < errors(f)
        return torch.where(better[:, None, None, None], y, f)

    @torch.no_grad()
    def synthesise(self, f_hat: torch.Tensor, height: int, width: int, missing: float = 0.0) -> torch.Tensor:
        """f_hat (T,C,h,w) -> uint8 frames (T,H,W,3) cropped to the original size, a few frames or
        one frame's tiles at a time (:func:`~progvc.models.tiling.bounded`).

        ``missing``: octaves of scales the latent lacks (:func:`progvc.stream.scales.missing_octaves`).
        """
        fast = synthesis_in_bfloat16(f_hat.device)
        return bounded(lambda y: self.g_s(y, missing, bfloat16=fast), f_hat, scale=self.cfg.stride, norms=self.g_s,
                       max_pixels=self.tile_pixels, then=lambda x: to_uint8(x[..., :height, :width]))

    def forward(self, x: torch.Tensor, n_keep: int | None = None, collect: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Training pass on x (B,3,H,W) in [-1,1], H and W multiples of the stride.

        Returns (x_hat (B,3,H,W), tokens, vq_loss); see ``MultiScaleResidualVQ.forward``.
        """
        f = self.g_a(x)
        grids = self.grids(x.shape[-2], x.shape[-1])
        f_hat, tokens, vq_loss = self.vq(f, grids, n_keep, collect)
        return self.g_s(f_hat, missing_octaves(grids, n_keep or len(grids))), tokens, vq_loss


def search_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """The precision of the synthesis inside :meth:`Tokenizer.refine_latent`'s search: bfloat16 autocast
    where :func:`search_in_bfloat16`, else float32 (a null context)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if search_in_bfloat16(device) else contextlib.nullcontext()


def search_in_bfloat16(device: torch.device) -> bool:
    """Whether the encoder's latent search runs its synthesis and that synthesis' gradient in bfloat16:
    on a CPU that computes bfloat16 natively (:func:`~progvc.runtime.devices.bfloat16_pays`), about
    twice as fast; the quantiser's nearest codes, Adam's steps and the check that keeps or drops each
    frame's refined latent stay float32. On the dev clips at the medium preset that took 19% off the
    encode time and left rate-quality where it was (BD-rate +0.11% PSNR, +0.26% MS-SSIM, clips
    -1.2..+0.8%; benchmarks/README.md, "Refinement in bfloat16").

    This switch and :func:`synthesis_in_bfloat16` are apart, so that each can be measured alone
    (benchmarks.refine_precision, benchmarks.decode_precision)."""
    return bfloat16_pays(device)


def synthesis_in_bfloat16(device: torch.device) -> bool:
    """Whether :meth:`Tokenizer.synthesise`, the decoder's picture, runs ``g_s`` in bfloat16 (all but its
    last convolution, which stays float32). Yes on a CPU that computes bfloat16 natively
    (:func:`~progvc.runtime.devices.bfloat16_pays`). On the ten dev clips, decodes there took 0.90x the
    time (cut and filled streams 0.85x), PSNR moved by -0.0012..+0.0007 dB, and no pixel moved by more
    than 4 levels (benchmarks/README.md, "The decoder's synthesis in bfloat16"). The encoder never calls
    it, so encoded bytes do not depend on it."""
    return bfloat16_pays(device)
