"""The user's knobs, importable without torch: ``quality`` and ``preset`` (encoder), ``fill`` (decoder).

``quality`` in [0, 100], higher is better, sets the Lagrange multiplier lambda with which the
encoder chooses tokens (:mod:`progvc.coding.rd_choice`)::

    lambda = 2 ** ((QUALITY_AT_LAMBDA_1 - quality) / QUALITY_PER_OCTAVE),   quality 100 -> lambda = 0

so 8 quality points double or halve lambda. Rate falls as lambda grows; between two scale counts
the quality knob fills the gap that truncation leaves. Each GOP of a stream records its lambda
(its first frame's); the frames after the first are chosen at ``inter_lambda_scale`` times it.

Presets trade encoder time for compression, as in x264. They differ in how the encoder finds
the latent it quantises (``refine``: Adam steps per frame on the quantised reconstruction's error,
:meth:`progvc.models.tokenizer.Tokenizer.refine_latent`) and in whether it scores every block of
a later frame in intra mode too (``intra_trials``, :mod:`progvc.coding.context_modes`: more context
model work when encoding, for fewer bits on fast motion); the decoder and the stream format do
not depend on the preset (benchmarks/README.md, "Presets").

``fill`` says how a decoder makes the scales a stream does not carry (:mod:`progvc.coding.fill`).
This module imports neither torch nor constriction (the CLI validates options before loading a model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..runtime.errors import ConfigError

QUALITY_AT_LAMBDA_1 = 60.0
QUALITY_PER_OCTAVE = 8.0
MAX_QUALITY = 100.0
DEFAULT_QUALITY = 60.0


def rd_lambda(quality: float) -> float:
    """The Lagrange multiplier of a quality in [0, 100] (100: nearest codeword, lambda = 0)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= MAX_QUALITY:
        raise ConfigError(f"quality must be a number in 0..100 (higher is better), got {quality!r}")
    if quality >= MAX_QUALITY:
        return 0.0
    return 2.0 ** ((QUALITY_AT_LAMBDA_1 - float(quality)) / QUALITY_PER_OCTAVE)


def quality_of(lam: float) -> float:
    """The inverse of :func:`rd_lambda`, for reporting a stream's lambda as a quality."""
    if lam <= 0:
        return MAX_QUALITY
    return max(0.0, min(MAX_QUALITY, QUALITY_AT_LAMBDA_1 - QUALITY_PER_OCTAVE * math.log2(lam)))


@dataclass(frozen=True)
class Preset:
    """How hard the encoder works: ``refine`` latent-refinement steps per frame, ``prefix_refine``
    further steps that also fit the pictures of truncated streams (for the coarse scales), and
    whether the blocks of later frames are also tried in intra mode (``intra_trials``)."""

    name: str
    refine: int
    intra_trials: bool = True
    prefix_refine: int = 0


PRESETS = {p.name: p for p in (Preset("fast", 0, intra_trials=False), Preset("medium", 3), Preset("slow", 10))}
DEFAULT_PRESET = "medium"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]


DEFAULT_INTER_LAMBDA_SCALE = 2.0
"""The multiplier of a GOP's later frames is ``inter_lambda_scale`` times its first frame's, as
conventional encoders code P frames a few QP steps below their I frame (x264's default ``ipratio``
1.4 on the quantiser step is about 2 on lambda): a GOP's first frame is the reference every later
one copies from and is predicted by, so its bits buy quality for the whole GOP. Chosen against 1
and 3 on the dev clips: benchmarks/README.md, "Inter-frame lambda"."""
MAX_INTER_LAMBDA_SCALE = 64.0


DEFAULT_COARSE_LAMBDA_SCALE = (1.5, 3.0)
"""Multipliers of lambda for every scale but the finest, in a GOP's first frame and in its later
frames (on top of ``inter_lambda_scale``): ``lambda(t, k) = lambda x inter_lambda_scale [t > 0]
x coarse_lambda_scale[t > 0] [k < K-1]`` (:mod:`progvc.coding.rd_choice`), in GOPs of at most
``COARSE_LAMBDA_MAX_GOP`` frames. The coarse scales' errors are left for the finest scale to
correct, and later frames copy more of the previous frame's coarse tokens, which is most of what a
truncated stream carries. Chosen on the dev clips (GOPs of 8) against (1, 1), (1, 3), (2, 2) and
(3, 3): it makes cut streams better at equal rate and leaves the whole quality sweep where it was
(benchmarks/README.md, "Coarse scales at a higher lambda")."""

COARSE_LAMBDA_MAX_GOP = 8
"""The longest GOP (in frames) that ``DEFAULT_COARSE_LAMBDA_SCALE`` is used for; longer GOPs code
every scale at its frame's lambda unless told otherwise: over a GOP of 32 frames the copies of
coarse tokens drift, and the multiple lost what it gains in GOPs of 8 (benchmarks/README.md,
"Coarse scales at a higher lambda")."""


def default_coarse_lambda_scale(gop_frames: int) -> tuple[float, float]:
    """The coarse scales' multipliers for GOPs of ``gop_frames`` frames (see ``COARSE_LAMBDA_MAX_GOP``)."""
    return DEFAULT_COARSE_LAMBDA_SCALE if gop_frames <= COARSE_LAMBDA_MAX_GOP else (1.0, 1.0)


def check_lambda_scale(name: str, scale: float) -> float:
    """``scale`` as a float if it is a number in [1, MAX_INTER_LAMBDA_SCALE], else ConfigError naming
    the option ``name``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 <= scale <= MAX_INTER_LAMBDA_SCALE:
        raise ConfigError(f"{name} must be a number in 1..{MAX_INTER_LAMBDA_SCALE:g} (1: no extra lambda), "
                          f"got {scale!r}")
    return float(scale)


def check_coarse_lambda_scale(scale: float | tuple[float, float]) -> tuple[float, float]:
    """``coarse_lambda_scale``: one number for every frame, or a pair (a GOP's first frame, its later
    frames), each in [1, MAX_INTER_LAMBDA_SCALE]; else ConfigError."""
    pair = tuple(scale) if isinstance(scale, (tuple, list)) else (scale, scale)
    if len(pair) != 2:
        raise ConfigError(f"coarse_lambda_scale must be a number or a pair (first frame, later frames), got {scale!r}")
    first, later = (check_lambda_scale("coarse_lambda_scale", value) for value in pair)
    return first, later


MAX_DEFAULT_GOP = 32
GOP_PIXEL_BUDGET = 8 * 1920 * 1080
"""Coded pixels (frames x width x height) a default GOP may hold: those of 8 frames of 1080p."""


def default_gop_size(width: int, height: int) -> int:
    """Frames per GOP when ``encode`` is not told (``gop_size=None``), for frames coded at
    ``width`` x ``height``: the most multiples of 8 frames that hold at most ``GOP_PIXEL_BUDGET``
    pixels, from 8 to ``MAX_DEFAULT_GOP`` (32 up to 854x480, 24 at 1024x576, 16 at 720p, 8 at
    1080p and above).

    A GOP's first frame costs as much as several later ones, so longer GOPs cost fewer bits
    (benchmarks/README.md, "GOP length on longer clips").
    What bounds the length is memory: progressive truncation needs every scale of a GOP coded
    before the next, so a GOP's context caches and latents grow with its frames
    (:func:`progvc.coding.footprint.estimate`). The budget keeps a default GOP's decode near what 8
    frames of 1080p need (benchmarks/README.md, "Memory"). A
    longer GOP also delays a streaming decoder's first frame and coarsens random access and
    truncation, which work per GOP; pass ``gop_size`` (``--gop``) for another trade-off. The
    context model sees only the last two frames and no frame index, so any length codes alike.
    """
    fits = GOP_PIXEL_BUDGET // max(1, 8 * width * height)
    return 8 * max(1, min(MAX_DEFAULT_GOP // 8, fits))


DEFAULT_SKIP_BLOCK = 2
"""Side in tokens of the blocks an inter frame may copy (:mod:`progvc.coding.skip`; 0: off). Measured on
dev clips against 1, 4 and 8 (benchmarks/README.md, "Block skip: block side")."""


AUTO_RESIZE = (1, 2, 3)
"""The sizes ``encode(bpp=R)`` tries when not told ``resize`` (:mod:`progvc.video.resize`): it codes the
video to the budget at full, half and third width and height and keeps the stream whose decode has
the higher PSNR: at low rates the smaller sizes make the better picture (benchmarks/README.md,
"Coding at a reduced size"; 4 was not measured). They cost little: a ninth and a quarter of the pixels."""


FILL_MODES = ("mean", "sample", "none")
DEFAULT_FILL = "sample"
""""sample" (the sent scales' picture plus the finest band of a seeded draw of the rest): on the
dev clips the only mode whose cut streams beat v3's on PSNR, MS-SSIM and VMAF alike, with about
twice the fine detail of "none". "none" keeps a little more PSNR and skips the context model on the
scales not sent (a cut stream decodes several times faster on a CPU); "mean" loses to both. The
measurements: benchmarks/README.md, "The default fill"."""


def scales_run(fill: str, coded: int, n_scales: int) -> int:
    """How many scales a GOP runs through when ``coded`` of its ``n_scales`` are decoded: every scale
    unless ``fill`` is "none". One rule for the memory estimate (codec, streaming ``Decoder``, CLI)
    and the progress total."""
    return coded if fill == "none" else n_scales
