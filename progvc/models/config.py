"""Hyper-parameters as frozen dataclasses that travel inside the weights file.

A model is always rebuilt from its own config (``CodecConfig.from_json``), never from guessed
tensor shapes. ``tiny_config()`` is the randomly initialised model the tests use.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..runtime.errors import ConfigError
from ..stream.format import MAX_GOP, MAX_NAME, MAX_SCALES

REFINE_STEPS = 10
"""Default encoder-side refinement: ``Tokenizer.refine_latent`` steps per frame (0 = greedy)."""
MAX_REFINE_STEPS = 1000
"""Most refinement steps per frame ``encode`` accepts."""
UPSAMPLE_MODES = frozenset({"nearest", "bilinear"})
"""How :class:`progvc.models.autoencoder.SynthesisTransform` may double its resolution."""


@dataclass(frozen=True)
class TokenizerConfig:
    """Convolutional autoencoder + multi-scale residual VQ (VAR-style).

    ``stride`` is the total downsampling of the encoder (a power of two); the latent has
    ``latent_channels`` channels on a ``(H/stride, W/stride)`` grid. ``n_scales`` token maps go from
    1x1 to the full latent grid (see :mod:`progvc.stream.scales`), all drawing from one shared codebook of
    ``codebook_size`` entries. ``n_phi`` refinement convolutions are shared across scales.
``prefix_film``: the synthesis is told how many octaves of scales a truncated stream lacks
(:class:`progvc.models.autoencoder.SynthesisTransform`). ``upsample``: how the synthesis doubles
its resolution between levels, ``"nearest"`` (v4 and earlier; leaves a period-8 grid in the picture)
or ``"bilinear"``. ``synthesis_extra_blocks``: residual blocks the synthesis adds at each level
below full resolution (v6), zero-initialised so that a synthesis warm-started without them
decodes the same until trained; ``analysis_extra_blocks`` does the same for ``g_a`` (at each level
below full resolution and at the latent), so an encoder grown from a trained one analyses the same
until trained.
    """

    stride: int = 16
    channels: tuple[int, ...] = (64, 128, 192, 256)
    latent_channels: int = 32
    codebook_size: int = 4096
    n_scales: int = 10
    n_phi: int = 4
    phi_mix: float = 0.5
    prefix_film: bool = False
    upsample: str = "nearest"
    synthesis_extra_blocks: int = 0
    analysis_extra_blocks: int = 0

    def __post_init__(self) -> None:
        if self.upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"tokenizer upsample must be one of {sorted(UPSAMPLE_MODES)}, got {self.upsample!r}")
        for name in ("synthesis_extra_blocks", "analysis_extra_blocks"):
            if not 0 <= getattr(self, name) <= 8:
                raise ConfigError(f"{name} must be in 0..8, got {getattr(self, name)}")
        if self.stride < 1 or self.stride & (self.stride - 1):
            raise ConfigError(f"tokenizer stride must be a power of two, got {self.stride}")
        if 2 ** (len(self.channels) - 1) > self.stride:
            raise ConfigError("tokenizer has more resolution levels than its stride allows")
        if not 2 <= self.codebook_size <= 65536:
            raise ConfigError(f"codebook_size must be in 2..65536, got {self.codebook_size}")
        if not 1 <= self.n_scales <= MAX_SCALES:
            raise ConfigError(f"n_scales must be in 1..{MAX_SCALES}, got {self.n_scales}")


@dataclass(frozen=True)
class ContextConfig:
    """Context transformer that predicts p(r_{t,k} | coarser scales, earlier frames).

    ``temporal_window`` earlier frames of the GOP are visible through the sparse block mask
    (0 disables temporal context: every frame is coded as if it opened a GOP). From scale
    ``local_from`` on (0: never) attention is local: tiles of ``local_tile`` cells see keys within
    ``local_halo`` cells (:mod:`progvc.models.local_attention`). ``rd_conditioning``: the queries
    are told the encoder's rate-distortion trade-off (the stream's quality), so that the model's
    confidence follows how the tokens were chosen. ``portable``: the model computes in exact
    integers (:mod:`progvc.models.portable`), so its streams decode on any machine; made from a
    float model by ``python -m progvc.train.portable``.
    """

    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    temporal_window: int = 2
    local_from: int = 0
    local_tile: int = 8
    local_halo: int = 4
    rd_conditioning: bool = False
    portable: bool = False

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"context dim {self.dim} is not divisible by heads {self.heads}")
        if not 0 <= self.temporal_window <= 64:
            raise ConfigError(f"temporal_window must be in 0..64, got {self.temporal_window}")
        if self.portable and (self.dim // self.heads > 64 or self.dim * self.mlp_ratio > 8192):
            raise ConfigError("a portable context model needs heads of at most 64 channels and an MLP of at most "
                              "8192 (its integer sums must stay exact)")


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild a codec: tokenizer, context model, GOP length, model name."""

    name: str = "progvc-untrained"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    gop_size: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.gop_size <= MAX_GOP:
            raise ConfigError(f"gop_size must be in 1..{MAX_GOP}, got {self.gop_size}")
        if not self.name or len(self.name.encode()) > MAX_NAME or not self.name.isascii():
            raise ConfigError(f"model name must be 1..{MAX_NAME} ASCII characters, got {self.name!r}")

    def to_json(self) -> str:
        """The config as JSON; ``portable``, ``upsample`` and the extra blocks only when not
        their defaults, so an older model's JSON (and with it the hash of a model made in memory) is
        what it was before those fields existed."""
        raw = dataclasses.asdict(self)
        if not raw["context"]["portable"]:
            del raw["context"]["portable"]
        if raw["tokenizer"]["upsample"] == "nearest":
            del raw["tokenizer"]["upsample"]
        for name in ("synthesis_extra_blocks", "analysis_extra_blocks"):
            if not raw["tokenizer"][name]:
                del raw["tokenizer"][name]
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        try:
            raw = json.loads(text)
            tok = raw.pop("tokenizer")
            tok["channels"] = tuple(tok["channels"])
            return cls(tokenizer=TokenizerConfig(**tok), context=ContextConfig(**raw.pop("context")), **raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a valid progvc config ({exc}); rebuild the weights file") from exc


def tiny_config(**overrides: object) -> CodecConfig:
    """A small model for tests: stride 4, 64 codes, 4 scales, a 2-layer transformer."""
    base = dict(
        name="progvc-tiny",
        tokenizer=TokenizerConfig(stride=4, channels=(16, 32), latent_channels=8, codebook_size=64,
                                  n_scales=4, n_phi=2),
        context=ContextConfig(dim=32, depth=2, heads=2, mlp_ratio=2.0, temporal_window=2),
        gop_size=4,
    )
    base.update(overrides)
    return CodecConfig(**base)  # type: ignore[arg-type]


def small_config(**overrides: object) -> CodecConfig:
    """The shipped default: stride 8, 10 scales, 4096 codes, a 4-layer 192-wide transformer.

    Sized so that it trains on a CPU in hours and codes CIF on two cores: residual blocks at
    1/2 resolution and below, 32-channel stem at full resolution. Stride 8 rather than VAR's 16:
    12 bits per 16x16 patch cannot carry video detail (the stride-16 v1 capped at 18.5 dB on dev).
    v4 added local attention from the 7th scale on and the context model's rate-distortion
    conditioning. v5 retrains the tokenizer for every prefix of its scales with a bilinear
    synthesis (nearest-neighbour up-sampling painted an 8-pixel grid on prefixes) and the context
    model on its tokens; it ships converted to exact integers (``portable``). ``prefix_film`` (g_s
    told how many scales are missing) is off: it gained nothing measurable on dev (weights/README.md).
    """
    base = dict(
        name="progvc-small-v5",
        tokenizer=TokenizerConfig(stride=8, channels=(32, 64, 128, 192), latent_channels=32,
                                  codebook_size=4096, n_scales=10, n_phi=4, upsample="bilinear"),
        context=ContextConfig(dim=192, depth=4, heads=6, mlp_ratio=4.0, temporal_window=2,
                              local_from=6, local_tile=8, local_halo=4, rd_conditioning=True),
        gop_size=8,
    )
    base.update(overrides)
    return CodecConfig(**base)  # type: ignore[arg-type]


PRESETS = {"tiny": tiny_config, "small": small_config}
