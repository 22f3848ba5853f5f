"""``EncodeOptions`` and ``DecodeOptions``: every option of an encode or a decode, in one place each.

::

    opts = EncodeOptions(quality=50, preset="slow")      # checked here: ConfigError naming the option
    codec.encode_with_stats(video, options=opts)         # or, the same: codec.encode(video, quality=50, preset="slow")
    DecodeOptions.build(None, fill="none")               # keyword arguments -> options (unknown names refused)

Each field holds its default, its check (:class:`Whole`, :class:`Positive`, :class:`OneOf` or a
function of the library) and its help text, which the ``progvc`` parser shows as the flag's help
(:mod:`progvc.cli.parser` reads them with :func:`spec`). Where a default depends on the video or
the stream (the GOP length, the fill's sampling parameters), the field is None and the policy that
decides it is named in the help. Checks that need the model (``n_scales`` against its scale count)
are made by ``Codec``. This module imports neither torch nor constriction; a check that needs them
imports them when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..coding.options import (
    COARSE_LAMBDA_MAX_GOP,
    DEFAULT_COARSE_LAMBDA_SCALE,
    DEFAULT_FILL,
    DEFAULT_INTER_LAMBDA_SCALE,
    DEFAULT_PRESET,
    DEFAULT_QUALITY,
    DEFAULT_SKIP_BLOCK,
    check_coarse_lambda_scale,
    check_lambda_scale,
    default_gop_size,
    get_preset,
    rd_lambda,
)
from ..models.config import MAX_REFINE_STEPS
from ..runtime.errors import ConfigError
from ..stream import format as bs
from ..video.raw_yuv import DEFAULT_PIX_FMT, PIX_FMTS
from .limits import Limits, as_limits


# -- checks: each knows its range, for the message here and for the command line's parser ------------
@dataclass(frozen=True)
class Whole:
    """An integer in ``lo..hi`` (bools and floats refused)."""

    lo: int
    hi: int

    def __call__(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not hasattr(value, "__index__") or not self.lo <= value <= self.hi:
            raise ConfigError(f"{name} must be an integer in {self.lo}..{self.hi}, got {value!r}")
        return int(value)


@dataclass(frozen=True)
class Positive:
    """A number in (0, ``below``)."""

    below: float
    what: str = ""

    def __call__(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < self.below:
            raise ConfigError(f"{name} must be a positive number{self.what}, got {value!r}")
        return value


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (bools refused)."""

    choices: tuple
    hint: str = ""

    def __call__(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in self.choices:
            hint = f" ({self.hint})" if self.hint else ""
            raise ConfigError(f"{name} must be one of {', '.join(map(str, self.choices))}{hint}, got {value!r}")
        return value


def _quality(name: str, value: Any) -> float:
    rd_lambda(value)  # its range and message live with the quality -> lambda map
    return value


def _flag(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{name} must be True, False or None (the preset's), got {value!r}")
    return value


def _seed(name: str, value: Any) -> int:
    from ..coding.fill import check_seed  # the stream's u64 range; fill imports torch

    return check_seed(value)


def _fill(name: str, value: Any) -> str:
    from ..coding.fill import FillOptions  # the fill modes' message lives there (fill imports torch)

    return FillOptions(mode=value).mode


def _sampling(name: str, value: Any) -> Any:
    from ..coding.fill import SamplingOptions  # their ranges live there (fill imports torch)

    SamplingOptions(**{name: value})
    return value


def option(default: Any, help: str, check: Callable[[str, Any], Any] | None = None) -> Any:
    """A field with its default, help text and check (None values skip the check)."""
    return field(default=default, metadata={"help": help, "check": check})


def spec(options: type, name: str) -> tuple[Any, str, Any]:
    """(default, help, check) of field ``name`` of an options class: what the CLI parser shows."""
    f = next(f for f in fields(options) if f.name == name)
    return f.default, f.metadata["help"], f.metadata["check"]


class _Options:
    """Checks every field on construction (frozen: a check may normalise a value) and builds an
    options object from keyword arguments."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value, check = getattr(self, f.name), f.metadata["check"]
            if value is not None and check is not None:
                object.__setattr__(self, f.name, check(f.name, value))
        object.__setattr__(self, "limits", as_limits(self.limits))  # type: ignore[attr-defined]

    @classmethod
    def build(cls, options: Any = None, **kwargs: Any) -> Any:
        """``options`` (an instance, or None for the defaults) with the keyword arguments given on top
        (a None value counts as not given); a name that is no option is a ConfigError listing the options."""
        if options is not None and not isinstance(options, cls):
            raise ConfigError(f"options must be a progvc {cls.__name__}, got {type(options).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no option {', '.join(unknown)}; the options are "
                              f"{', '.join(sorted(names))}")
        given = {} if options is None else {n: getattr(options, n) for n in names}
        return cls(**{**given, **{n: v for n, v in kwargs.items() if v is not None}})


@dataclass(frozen=True)
class EncodeOptions(_Options):
    """What ``Codec.encode`` is asked to do; every field is also a keyword argument of ``encode``."""

    n_scales: int | None = option(None, "code the first N scales (default: every scale of the model)")
    quality: float | None = option(
        None, "rate-distortion trade-off, 0..100, higher is better and larger (default: "
        f"{DEFAULT_QUALITY:g}; not with bpp)", _quality)
    preset: str = option(DEFAULT_PRESET, "encoder effort (x264 style): fast, medium or slow; they differ in the "
                         "refinement steps and intra trials below", lambda name, p: get_preset(p).name)
    bpp: float | None = option(
        None, "fit this many bits per pixel: one quality for the whole stream is searched, scales dropped only "
        "when quality 0 is still too dear; unless resize is given, the video is coded at full, half and a "
        "third of its size and the stream that decodes closest to it is kept", Positive(1e6, " of bits per pixel"))
    gop_size: int | None = option(
        None, "frames per GOP (default: as many as fit the pixels of 8 frames of 1080p: "
        f"{default_gop_size(854, 480)} up to 854x480, {default_gop_size(1280, 720)} at 720p, "
        f"{default_gop_size(1920, 1080)} at 1080p). Shorter: finer random access and truncation, less latency, "
        "more bits", Whole(1, bs.MAX_GOP))
    refine: int | None = option(None, "encoder-side refinement steps per frame (default: the preset's; 0: "
                                "fastest)", Whole(0, MAX_REFINE_STEPS))
    prefix_refine: int | None = option(
        None, "further refinement steps that also fit the pictures of truncated streams, for the coarse scales "
        "(default: the preset's; 0: none)", Whole(0, MAX_REFINE_STEPS))
    intra_trials: bool | None = option(
        None, "score every block of a later frame in intra mode too and keep the cheaper mode (default: the "
        "preset's; fast does not)", _flag)
    inter_lambda_scale: float = option(
        DEFAULT_INTER_LAMBDA_SCALE, "the rate-distortion multiplier of a GOP's later frames over its first "
        "frame's, as conventional encoders code P frames below their I frame; 1 codes every frame alike",
        check_lambda_scale)
    coarse_lambda_scale: float | tuple[float, float] | None = option(
        None, "a further multiplier for every scale but the finest, in a GOP's first frame and its later "
        "frames (one number: both): the finest scale corrects their errors and later frames copy more of "
        "the previous one, which makes truncated streams cheaper; 1 codes every scale of a frame alike "
        f"(default: {','.join(f'{v:g}' for v in DEFAULT_COARSE_LAMBDA_SCALE)} in GOPs of up to "
        f"{COARSE_LAMBDA_MAX_GOP} frames, 1 in longer ones)",
        lambda name, s: check_coarse_lambda_scale(s))
    skip_block: int = option(
        DEFAULT_SKIP_BLOCK, "side in tokens of the blocks an inter frame may copy from the previous frame for "
        "the price of a flag; 0 turns block skip off", OneOf(bs.SKIP_BLOCKS, "0: no block skip"))
    temporal: bool = option(True, "code later frames with temporal context (False: every frame on its own)")
    resize: int | None = option(
        None, "code the frames at 1/F of their width and height and let the decoder scale them back up (pays at "
        "low rates; the decoded video keeps the input's size; default: 1, or with bpp whichever of 1, 2 and 3 "
        "decodes closest to the input)", OneOf(bs.RESIZE_FACTORS, "1: code the frames at their own size"))
    deblock: bool = option(True, "ask the decoder to deblock the GOPs it decodes from every scale (a header "
                           "flag; progvc.video.deblock): smooths small steps at the tokenizer's 8-pixel cells")
    seed: int = option(0, "the decoder's default sampling seed, stored in the stream", _seed)
    temperature: float | None = option(None, "the decoder's default sampling temperature, stored in the stream "
                                       "(default: progvc.coding.fill.DEFAULT_SAMPLING)", _sampling)
    top_k: int | None = option(None, "the decoder's default top-k, stored in the stream (default: DEFAULT_SAMPLING)",
                               Whole(0, (1 << 32) - 1))
    top_p: float | None = option(None, "the decoder's default top-p, stored in the stream (default: "
                                 "DEFAULT_SAMPLING)", _sampling)
    fps: Any = option(None, "frame rate to record (default: the input's)")
    size: tuple[int, int] | None = option(None, "frame size (W, H) of a raw .yuv file")
    max_frames: int | None = option(None, "encode only the first N frames (default: all)")
    max_side: int | None = option(None, "shrink by a whole factor (area average) until the long side fits")
    downscale: int = option(1, "shrink by this whole factor (area average)")
    pix_fmt_in: str = option(DEFAULT_PIX_FMT, f"sample layout of a raw .yuv file: {', '.join(PIX_FMTS)}")
    progress: bool = option(False, "show progress per frame and scale on stderr")
    limits: Limits | None = option(None, "resource limits (default: progvc.Limits())")

    def __post_init__(self) -> None:
        if self.bpp is not None and (self.n_scales is not None or self.quality is not None):
            raise ConfigError("give bpp, or n_scales and/or quality, not both: bpp searches the quality itself")
        super().__post_init__()

    @property
    def read_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`progvc.video.io.open_video` (which checks them)."""
        return {"size": self.size, "fps": self.fps, "max_frames": self.max_frames, "max_side": self.max_side,
                "downscale": self.downscale, "pix_fmt_in": self.pix_fmt_in}


@dataclass(frozen=True)
class DecodeOptions(_Options):
    """What ``Codec.decode`` / ``iter_decode`` and the streaming ``Decoder`` are asked to do."""

    n_scales: int | None = option(None, "range-decode only the first N scales (default: all the stream holds)")
    fill: str | None = option(
        None, "make the scales not decoded: mean (their expected embedding under the context model), sample "
        "(the decoded scales plus the finest detail of a seeded draw of the rest) or none (the decoded scales "
        f"only); default {DEFAULT_FILL}", _fill)
    seed: int | None = option(None, "sampling seed (default: the one in the stream)", _seed)
    temperature: float | None = option(None, "sampling temperature (default: the stream's)", _sampling)
    top_k: int | None = option(None, "sample among the K likeliest tokens (0: all; default: the stream's)",
                               _sampling)
    top_p: float | None = option(None, "nucleus sampling mass in (0, 1] (default: the stream's)", _sampling)
    partial: bool = option(False, "accept a stream cut short and decode the GOPs it holds")
    deblock: bool = option(True, "deblock the GOPs decoded from every scale when the stream asks for it (its "
                           "encoder's deblock option; progvc.video.deblock); False gives the synthesis' "
                           "pictures as they are")
    progress: bool = option(False, "show progress per frame and scale on stderr")
    limits: Limits | None = option(None, "resource limits (default: progvc.Limits())")

    def fill_options(self, header: bs.StreamHeader | None) -> Any:
        """The :class:`~progvc.coding.fill.FillOptions` for a stream with this header: its sampling
        parameters and seed, with these options' overrides on top."""
        from ..coding.fill import FillOptions

        return FillOptions.resolve(header, self.fill, self.seed, self.temperature, self.top_k, self.top_p)
