"""Full-reference quality metrics for whole sequences: PSNR (RGB and Y), MS-SSIM, VMAF and detail.

Every function takes the reference and the distorted sequence as ``(T, H, W, 3)`` uint8 RGB numpy
arrays of the same shape and returns one number for the sequence. :class:`SequenceMetrics` holds a
reference and caches what depends on it alone (its luma, VMAF's motion feature, perceptual
features), so scoring the many operating points of one clip does that work once.

Conventions (chosen so that numbers match what video-coding papers report):

- **Averaging.** PSNR and MS-SSIM are computed per frame and averaged over frames (the convention
  of the learned-video-coding literature and CompressAI); VMAF is libvmaf's mean of per-frame scores.
- **Luma** is ITU-R BT.601 limited range, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``,
  rounded to integers: the Y plane FFmpeg writes when it converts these frames to ``yuv420p``, so
  PSNR-Y and VMAF see what they would see on a YUV file. PSNR-Y still uses peak 255, like FFmpeg.
- **Identical frames.** PSNR is capped at :data:`PSNR_MAX_DB` = 100 dB per frame (x264's
  convention). An exact frame would give +inf, which is not valid JSON and would make any average
  infinite; 100 dB is far above any lossy operating point, so the cap never touches real data.
- **MS-SSIM** uses pytorch-msssim with ``data_range=255`` and the standard 11-tap window over RGB.
  Five levels need the shorter side to exceed 160 pixels; for smaller frames (CIF crops, QCIF,
  downscaled clips) we use as many levels as fit, with the first standard weights renormalised to
  sum to one, and record a note naming the level count. Below 11 pixels it is NaN (not computable).
- **VMAF** is vmaf-torch set up as DESIGN.md requires: ``VMAF(clip_score=True)`` (libvmaf clips
  each frame to [0, 100]), the Y plane in 0..255, and the motion feature over the *whole* sequence.
  The motion feature depends on the reference only, so it is computed once per clip; ADM and VIF are
  per-frame features and are computed in chunks of frames to bound memory. This is exactly the
  whole-sequence call split where it is separable (a test checks the equality). Frames smaller than
  about 24 pixels (VMAF's four-level pyramid) give NaN and a note.
- **Detail** (:func:`detail_ratio`) is not a fidelity score: it says how much fine texture a decode
  has compared with its source (1.0 = as much; a blur is below 1, noise above), so what sampling
  adds can be seen without the ImageNet backbones LPIPS / DISTS need. It is reported beside the
  others and never used for BD-rates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PSNR_MAX_DB = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WIN = 11
BASE_METRICS = ("psnr_rgb", "psnr_y", "ms_ssim", "vmaf")
DETAIL = "detail"
_CHUNK = 8  # frames per batch for MS-SSIM and the per-frame VMAF features


def _check_pair(ref: np.ndarray, dist: np.ndarray) -> None:
    if ref.shape != dist.shape or ref.ndim != 4 or ref.shape[-1] != 3:
        raise ValueError(f"need two (T,H,W,3) arrays of one shape, got {ref.shape} and {dist.shape}")


def rgb_to_y(frames: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma of ``(..., 3)`` uint8 RGB, rounded: ``(...)`` float32 in 16..235."""
    rgb = frames.astype(np.float32)
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return np.round(y).astype(np.float32)


def psnr_per_frame(ref: np.ndarray, dist: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB of each frame, ``(T,)`` float64, capped at :data:`PSNR_MAX_DB`.

    ``ref`` and ``dist`` are ``(T, ...)`` arrays of one shape (uint8 RGB or float luma).
    """
    if ref.shape != dist.shape:
        raise ValueError(f"PSNR needs arrays of one shape, got {ref.shape} and {dist.shape}")
    t = ref.shape[0]
    diff = ref.reshape(t, -1).astype(np.float64) - dist.reshape(t, -1).astype(np.float64)
    mse = np.mean(diff * diff, axis=1)
    floor = peak * peak * 10.0 ** (-PSNR_MAX_DB / 10.0)  # the MSE at which PSNR reaches the cap
    return 10.0 * np.log10(peak * peak / np.maximum(mse, floor))


def psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean per-frame RGB PSNR in dB of two ``(T,H,W,3)`` uint8 sequences."""
    _check_pair(ref, dist)
    return float(np.mean(psnr_per_frame(ref, dist)))


def psnr_y(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean per-frame PSNR in dB of the BT.601 luma of two ``(T,H,W,3)`` uint8 sequences."""
    _check_pair(ref, dist)
    return float(np.mean(psnr_per_frame(rgb_to_y(ref), rgb_to_y(dist))))


def _high_pass_energy(y: np.ndarray) -> float:
    """Mean squared response of the 4-neighbour Laplacian over ``(T,H,W)`` luma (interior pixels)."""
    f = y.astype(np.float32)
    lap = 4 * f[:, 1:-1, 1:-1] - f[:, :-2, 1:-1] - f[:, 2:, 1:-1] - f[:, 1:-1, :-2] - f[:, 1:-1, 2:]
    return float(np.mean(np.square(lap))) if lap.size else math.nan


def detail_ratio(ref: np.ndarray, dist: np.ndarray) -> float:
    """RMS Laplacian (high-frequency energy) of ``dist``'s luma over ``ref``'s, for ``(T,H,W,3)`` uint8.

    1.0: the decode has as much fine detail as the source; a blurred decode scores below 1, added
    noise above. The square root makes it an amplitude ratio. NaN for a flat reference.
    """
    _check_pair(ref, dist)
    ref_e = _high_pass_energy(rgb_to_y(ref))
    if not ref_e > 0:
        return math.nan
    return math.sqrt(_high_pass_energy(rgb_to_y(dist)) / ref_e)


def ms_ssim_levels(height: int, width: int) -> int:
    """How many MS-SSIM levels fit a frame: the largest L <= 5 with ``min(H, W) > 10 * 2**(L-1)``."""
    side = min(height, width)
    levels = 0
    while levels < len(MS_SSIM_WEIGHTS) and side > (MS_SSIM_WIN - 1) * 2**levels:
        levels += 1
    return levels


def _ms_ssim_batch(x: Any, y: Any, levels: int) -> Any:
    """MS-SSIM of each image of two ``(N,3,H,W)`` float tensors in 0..255 -> ``(N,)``.

    Five levels go through ``pytorch_msssim.ms_ssim`` itself. Fewer levels repeat its loop (its
    assertion demands room for five) with the same window, constants and relu, and renormalised
    weights.
    """
    import torch
    import torch.nn.functional as F
    from pytorch_msssim import ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    if levels == len(MS_SSIM_WEIGHTS):
        return ms_ssim(x, y, data_range=255, size_average=False, win_size=MS_SSIM_WIN)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype)
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(MS_SSIM_WIN, 1.5).repeat([x.shape[1], 1, 1, 1])
    mcs = []
    for i in range(levels):
        ssim_pc, cs = _ssim(x, y, win=win, data_range=255, size_average=False, K=(0.01, 0.03))
        if i < levels - 1:
            mcs.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    stack = torch.stack([*mcs, torch.relu(ssim_pc)], dim=0)  # (levels, N, C)
    return torch.prod(stack ** weights.view(-1, 1, 1), dim=0).mean(1)


def ms_ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean per-frame MS-SSIM (RGB, ``data_range=255``) of two ``(T,H,W,3)`` uint8 sequences.

    Uses fewer than five levels on small frames (see the module docstring); NaN below 11 pixels.
    """
    import torch

    _check_pair(ref, dist)
    levels = ms_ssim_levels(ref.shape[1], ref.shape[2])
    if levels == 0:
        return math.nan
    scores = []
    with torch.no_grad():
        for s in range(0, ref.shape[0], _CHUNK):
            x = torch.from_numpy(ref[s : s + _CHUNK]).permute(0, 3, 1, 2).float()  # (N,3,H,W)
            y = torch.from_numpy(dist[s : s + _CHUNK]).permute(0, 3, 1, 2).float()
            scores.append(_ms_ssim_batch(x, y, levels))
    return float(torch.cat(scores).double().mean())


class _Vmaf:
    """vmaf-torch with the reference's motion feature cached; see the module docstring."""

    def __init__(self, ref_y: np.ndarray) -> None:
        import torch
        from vmaf_torch import VMAF

        self.model = VMAF(clip_score=True).eval()
        self.ref = torch.from_numpy(ref_y).unsqueeze(1)  # (T,1,H,W) float32 in 0..255
        with torch.no_grad():
            self.motion2 = self.model.compute_motion2(self.ref)  # (T,1), needs the whole sequence

    def per_frame(self, dist_y: np.ndarray) -> np.ndarray:
        """VMAF of each frame, ``(T,)`` float64, for a distorted ``(T,H,W)`` float32 luma."""
        import torch

        dist = torch.from_numpy(dist_y).unsqueeze(1)
        out = []
        with torch.no_grad():
            for s in range(0, dist.shape[0], _CHUNK):
                r, d = self.ref[s : s + _CHUNK], dist[s : s + _CHUNK]
                adm = self.model.compute_adm_score(r, d)
                vif = self.model.compute_vif_features(r, d)
                out.append(self.model.predict(adm, self.motion2[s : s + _CHUNK], vif))
        return torch.cat(out).reshape(-1).double().numpy()


def vmaf(ref: np.ndarray, dist: np.ndarray) -> float:
    """VMAF (v0.6.1, clipped per frame, mean over frames) of two ``(T,H,W,3)`` uint8 sequences."""
    _check_pair(ref, dist)
    return float(np.mean(_Vmaf(rgb_to_y(ref)).per_frame(rgb_to_y(dist))))


class SequenceMetrics:
    """Scores distorted versions of one reference sequence.

    ``ref`` is ``(T,H,W,3)`` uint8 RGB. ``perceptual`` is an optional
    :class:`progvc.bench.perceptual.PerceptualModels` (LPIPS / DISTS / FID / KID columns).
    ``notes`` collects one line per metric that was adapted or could not be computed at this size.
    """

    def __init__(self, ref: np.ndarray, perceptual: Any = None) -> None:
        if ref.ndim != 4 or ref.shape[-1] != 3 or ref.dtype != np.uint8:
            raise ValueError(f"reference must be (T,H,W,3) uint8, got {ref.shape} {ref.dtype}")
        self.ref = ref
        self.ref_y = rgb_to_y(ref)
        self._ref_detail = _high_pass_energy(self.ref_y)
        self.perceptual = perceptual
        self.notes: list[str] = []
        _, h, w, _ = ref.shape
        levels = ms_ssim_levels(h, w)
        if levels == 0:
            self.notes.append(f"ms_ssim: NaN, a {w}x{h} frame is smaller than the 11-pixel window")
        elif levels < len(MS_SSIM_WEIGHTS):
            self.notes.append(f"ms_ssim: {levels} of 5 levels (a {w}x{h} frame is too small for 5)")
        try:
            self._vmaf: _Vmaf | None = _Vmaf(self.ref_y)
        except RuntimeError as exc:
            self._vmaf = None
            self._vmaf_unavailable(exc)
        if perceptual is not None:
            perceptual.set_reference(ref)

    def _vmaf_unavailable(self, exc: Exception) -> None:
        """Record why VMAF is NaN: vmaf-torch's four-level pyramid does not fit a tiny frame."""
        _, h, w, _ = self.ref.shape
        self.notes.append(f"vmaf: NaN, not computable at {w}x{h} ({str(exc).splitlines()[0][:80]})")

    @property
    def names(self) -> tuple[str, ...]:
        """The metric keys :meth:`__call__` returns, in table order."""
        extra = self.perceptual.names if self.perceptual is not None else ()
        return BASE_METRICS + (DETAIL,) + tuple(extra)

    def __call__(self, dist: np.ndarray) -> dict[str, float | None]:
        """Every metric of ``dist`` ((T,H,W,3) uint8) against the reference; None where NaN."""
        _check_pair(self.ref, dist)
        dist_y = rgb_to_y(dist)
        scores: dict[str, float] = {
            "psnr_rgb": float(np.mean(psnr_per_frame(self.ref, dist))),
            "psnr_y": float(np.mean(psnr_per_frame(self.ref_y, dist_y))),
            "ms_ssim": ms_ssim(self.ref, dist),
            "vmaf": math.nan,
            DETAIL: math.sqrt(_high_pass_energy(dist_y) / self._ref_detail) if self._ref_detail > 0 else math.nan,
        }
        if self._vmaf is not None:
            try:
                scores["vmaf"] = float(np.mean(self._vmaf.per_frame(dist_y)))
            except RuntimeError as exc:
                self._vmaf = None
                self._vmaf_unavailable(exc)
        if self.perceptual is not None:
            scores.update(self.perceptual.score(dist))
        return {k: (v if math.isfinite(v) else None) for k, v in scores.items()}
