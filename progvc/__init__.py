"""progvc: progressive generative video compression.

::

    import progvc
    data = progvc.encode("clip.mp4", n_scales=6)   # bytes
    frames = progvc.decode(data)                   # (T,H,W,3) uint8; scales not sent are filled
    small = progvc.truncate(data, n_scales=3)      # a valid smaller stream, no re-encode
    progvc.info(small)                             # StreamInfo

``truncate`` and ``info`` work on bytes alone and never import torch. Everything that needs the
model is imported on first use, so ``import progvc`` is cheap and changes no global state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codec.limits import Limits
from .runtime.errors import BitstreamError, ConfigError, DeviceError, LimitError, ProgvcError, VideoError, WeightsError
from .stream.info import StreamInfo, info
from .stream.truncation import truncate

if TYPE_CHECKING:
    import numpy as np

    from .codec.codec import Codec, EncodeResult
    from .codec.decoded_gops import DecodedGops
    from .codec.options import DecodeOptions, EncodeOptions
    from .codec.streaming import Decoder, GopUpdate

__version__ = "0.4.7"
__all__ = [
    "BitstreamError", "Codec", "ConfigError", "DecodeOptions", "DecodedGops", "Decoder", "DeviceError", "EncodeOptions",
    "EncodeResult", "GopUpdate", "LimitError", "Limits", "ProgvcError", "StreamInfo", "VideoError", "WeightsError",
    "decode", "encode", "info", "truncate",
]

_default: dict[str, Any] = {}


def _codec(device: Any = None, name: str | None = None) -> Codec:
    """A shipped model (the default one when ``name`` is None), loaded once per device."""
    from .codec.codec import Codec
    from .runtime.devices import resolve_device

    key = (resolve_device(device), name)
    if key not in _default:
        _default[key] = Codec.from_pretrained(name, device=key[0])
    return _default[key]


def encode(video: Any, n_scales: int | None = None, *, device: Any = None, **options: Any) -> bytes:
    """Encode a video path or (T,H,W,3) uint8 array with the default model. See ``Codec.encode``
    and :class:`~progvc.codec.options.EncodeOptions` (``quality=`` 0..100, ``preset=``
    "fast"/"medium"/"slow"; ``bpp=`` instead searches the quality that fits a bit budget)."""
    return _codec(device).encode(video, n_scales, **options)


def decode(bitstream: bytes, n_scales: int | None = None, fill: str | None = None, seed: int | None = None, *,
           device: Any = None, **options: Any) -> np.ndarray:
    """Decode a stream to (T,H,W,3) uint8 frames with the model that made it. See ``Codec.decode``
    and :class:`~progvc.codec.options.DecodeOptions`; ``fill`` ("sample", the default, "none" or
    "mean") makes the scales the stream does not carry; ``limits=progvc.Limits(...)`` raises the
    default resource limits."""
    from .codec.admission import admit
    from .codec.options import DecodeOptions

    opts = DecodeOptions.build(options.pop("options", None), n_scales=n_scales, fill=fill, seed=seed, **options)
    header = admit(bitstream, opts).header  # limits checked on the header, before loading a model for it
    return _codec(device, header.model_name).decode(bitstream, options=opts)


def __getattr__(name: str) -> Any:
    if name in ("Codec", "EncodeResult"):
        from .codec import codec

        return getattr(codec, name)
    if name == "DecodedGops":
        from .codec.decoded_gops import DecodedGops

        return DecodedGops
    if name in ("EncodeOptions", "DecodeOptions"):
        from .codec import options

        return getattr(options, name)
    if name in ("Decoder", "GopUpdate"):
        from .codec import streaming

        return getattr(streaming, name)
    raise AttributeError(f"module 'progvc' has no attribute {name!r}")
