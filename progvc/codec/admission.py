"""Admitting an incoming stream: every check a stream passes before any of its GOPs is decoded.

::

    header ──► limits (frame size, total pixels) ──► model (name, weights hash, scale schedule)
           ──► the options resolved against the stream (scales, fill, seed, sampling)
           ──► memory estimate of one GOP against limits.max_memory ──► Admission

The one place this order and these checks are written: ``progvc.decode`` (before a model is
loaded), ``Codec.iter_decode`` / ``decode`` / ``decode_tokens``, the streaming ``Decoder`` (once
the header's bytes are in) and ``progvc decode`` (before the model is loaded, with the config read
from the weights file's header) all call :func:`admit`. Only the header is read: a hostile stream
is refused before anything is allocated for it. Needs neither torch nor constriction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..coding.footprint import decode_estimate
from ..coding.options import scales_run
from ..models.config import CodecConfig
from ..stream import format as bs
from .options import DecodeOptions


@dataclass(frozen=True)
class Admission:
    """A stream let in: its ``header``, the ``fill`` options resolved against it
    (:class:`~progvc.coding.fill.FillOptions`), ``n_req`` (the scales to range-decode at most) and
    ``scales`` (the scales each GOP runs through, range-decoded then filled)."""

    header: bs.StreamHeader
    fill: Any
    n_req: int
    scales: int


def admit(data: bytes, options: DecodeOptions, *, config: CodecConfig | None = None,
          check_model: Callable[[bs.StreamHeader], None] | None = None, output_frames: int = 0,
          previews: Iterable[str | None] = (), job: str = "decoding") -> Admission:
    """Check the stream whose header starts ``data`` against ``options`` (its limits among them) and,
    when given, the model that will decode it (``check_model``: BitstreamError naming the model the
    stream asks for) and its ``config`` (the memory estimate: LimitError above ``max_memory``).
    ``output_frames``: frames of an output array held beside a GOP (``Codec.decode``);
    ``previews``: the fill modes of previews made before a GOP's last chunk (None: the fill's), as the
    streaming ``Decoder`` makes them, keeping the caches alive while they synthesise."""
    header, previews = bs.parse_header(data), tuple(previews)
    options.limits.check_stream(header)
    if check_model is not None:
        check_model(header)
    n_req = header.coded_scales if options.n_scales is None else options.n_scales
    fill = options.fill_options(header)
    modes = {fill.mode, *(mode or fill.mode for mode in previews)}
    scales = max(scales_run(mode, min(n_req, header.coded_scales), header.n_scales) for mode in modes)
    if config is not None:
        widest = "sample" if "sample" in modes else fill.mode  # "sample" also keeps the sent scales' latent
        need = decode_estimate(config, header, scales, output_frames, bool(previews), widest)
        options.limits.check_memory(need, job)
    return Admission(header, fill, n_req, scales)
