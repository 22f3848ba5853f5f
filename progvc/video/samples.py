"""A built-in sample clip, so examples and tests run without a user file.

The clip is a virtual camera moving over one still photo: a smooth sub-pixel pan (sinusoidal
paths, a few pixels per frame) with a slow zoom, which gives real texture and real global motion
with no dependency beyond torch. The photo is scikit-image's ``astronaut`` (public domain, NASA),
shipped inside scikit-image; without scikit-image a synthetic fractal-noise scene is used instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.errors import ConfigError
from .io import DEFAULT_FPS, MAX_FRAMES, MAX_SIDE, Video

_WINDOW = 0.75  # the camera sees at most this fraction of the photo's side, leaving room to pan


def sample_clip(n_frames: int = 16, height: int = 288, width: int = 352, seed: int = 0) -> Video:
    """A deterministic ``(n_frames, height, width, 3)`` uint8 RGB clip at 25 fps.

    ``seed`` picks the pan direction, speed (1-2.5 px/frame) and phase; the same arguments give
    the same bytes on every run. The photo is first resized (antialiased) so that the camera
    window maps about 1:1 onto output pixels, then each frame is resampled bicubically.
    """
    if not 1 <= n_frames <= MAX_FRAMES or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ConfigError(f"sample_clip needs 1..{MAX_FRAMES} frames of 1..{MAX_SIDE} px, "
                          f"got {n_frames}x{height}x{width}")
    photo = _photo(seed)  # (1,3,Hi,Wi) float in [0,1]
    h_i, w_i = photo.shape[-2:]
    p = max(width / (_WINDOW * w_i), height / (_WINDOW * h_i))  # output px per photo px
    h_r, w_r = max(round(h_i * p), height), max(round(w_i * p), width)
    photo = F.interpolate(photo, size=(h_r, w_r), mode="bilinear", antialias=True, align_corners=False)
    f_x, f_y = width / w_r, height / h_r  # window half-size in normalised coordinates
    rng = np.random.default_rng(seed)
    angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(1.0, 2.5)
    phase = rng.uniform(0, 2 * math.pi, size=2)
    frames = []
    for t in range(n_frames):
        zoom = 1 - 0.05 * (1 - math.cos(2 * math.pi * t / 96))  # window shrinks by <= 10 %
        c_x = _sway(t, phase[0], speed * math.cos(angle), 0.9 * (1 - f_x) * w_r / 2) / (w_r / 2)
        c_y = _sway(t, phase[1], speed * math.sin(angle), 0.9 * (1 - f_y) * h_r / 2) / (h_r / 2)
        theta = torch.tensor([[[f_x * zoom, 0.0, c_x], [0.0, f_y * zoom, c_y]]], dtype=torch.float32)
        grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)  # (1,H,W,2)
        frame = F.grid_sample(photo, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
        frames.append((frame[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return Video(frames=np.stack(frames), fps=DEFAULT_FPS)


def _sway(t: int, phase: float, velocity: float, amplitude: float) -> float:
    """Camera offset in pixels at frame ``t``: ``A sin(phase + v t / A)``.

    It stays within ``[-A, A]`` (the camera never leaves the photo), moves at most ``|v|``
    px/frame, and slows down smoothly where it turns, like a slow handheld pan.
    """
    return amplitude * math.sin(phase + velocity * t / amplitude) if amplitude > 0 else 0.0


def _photo(seed: int) -> torch.Tensor:
    """The source picture, ``(1, 3, Hi, Wi)`` float32 in [0, 1]."""
    try:
        from skimage import data  # optional dependency (progvc[sample]); imported only here
    except ImportError:
        return _synthetic_scene(seed)
    image = data.astronaut()  # (512, 512, 3) uint8 RGB, bundled with scikit-image
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def _synthetic_scene(seed: int, side: int = 512) -> torch.Tensor:
    """Fractal (1/f) colour noise with a few hard-edged shapes, ``(1, 3, side, side)`` in [0, 1].

    Natural images have roughly 1/f amplitude spectra and sharp object boundaries; this mimics both
    closely enough for smoke tests of a codec when scikit-image is not installed.
    """
    gen = torch.Generator().manual_seed(seed)
    scene = torch.zeros(1, 3, side, side)
    for octave in range(2, 9):  # 4x4 ... 512x512 noise, amplitude halving per octave
        noise = torch.rand(1, 3, 2**octave, 2**octave, generator=gen)
        scene += F.interpolate(noise, size=(side, side), mode="bicubic", align_corners=False) / 2 ** (octave - 2)
    scene = (scene - scene.amin()) / (scene.amax() - scene.amin())
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    for _ in range(6):
        cy, cx, r = (torch.rand(3, generator=gen) * torch.tensor([side, side, side / 6])).tolist()
        colour = torch.rand(3, 1, generator=gen)
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).flatten()
        scene.view(3, -1)[:, inside] = 0.6 * colour + 0.4 * scene.view(3, -1)[:, inside]
    return scene

