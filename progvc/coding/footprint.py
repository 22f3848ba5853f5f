"""What a coding job will hold in memory, estimated before it starts, so that a job that cannot fit
is refused with the estimate instead of being discovered by the kernel (thrashing, OOM killer).

::

    need = estimate(codec.config, width=1920, height=1080, gop_frames=8, scales=10)
    need.total, str(need)    # bytes; "1.7 GiB at peak (context caches 0.7 GiB, logits and tables ...)"

One GOP is coded at a time, so the estimate is per GOP and does not grow with the video's length
(except the array that ``Codec.decode`` returns, which ``iter_decode`` does not build). Its parts:

- **context caches**: the most :class:`progvc.coding.state.GopState` holds at once: for every token of
  the scales coded so far, its keys and values in each block (4 bytes x 2 depth x dim) and, for
  frames that a later frame reads, its memory element (4 bytes x dim; the readers project it to
  keys and values when they attend). Nothing of the model's last scale is kept beyond the frames
  that still read it (:class:`~progvc.models.cached_attention.KVCache`), so a GOP coded through
  every scale peaks as its last scale starts, holding the coarser scales only: 0.7 GiB for 8 frames
  of 1080p with the shipped model (it was 5.8 GiB when every scale's keys, and the memory's keys
  for every reader, were kept). A test checks this against the tensors a real ``GopState`` holds
  as it codes: when coding changes what it keeps, update :func:`_context_bytes` with it.
- **logits**: one slice of ``ENTROPY_ENTRIES`` float32 logits (``progvc.coding.state.RowLogits``
  makes them slice by slice; all rows of the finest 1080p scale at once took 0.5 GiB), or the
  whole table where it is at most ``KEEP_LOGITS_BYTES``, plus one slice of probability tables
  (``ENTROPY_ENTRIES`` x 50 bytes); twice that when encoding with temporal context, where a block
  is scored in both context modes (:mod:`progvc.coding.context_modes`). Attention works a group of tiles at a time
  (``ATTENTION_BYTES``) beside one block's memory keys, less than this.
- **synthesis / analysis**: one piece of ``g_s`` / ``g_a`` work (at most ``TILE_PIXELS`` pixels,
  a tile's halo included) at ``TRANSFORM_BYTES_PER_PIXEL``; when encoding, the quantiser's
  distance slices (``LOOKUP_ENTRIES``) beside them; encoder refinement adds
  ``REFINE_BYTES_PER_PIXEL`` for frames it refines.
- **frames**: the GOP's uint8 frames, in and out; with ``fill="sample"`` also the picture of the
  sent scales alone and, in the caches' part, the latent it is made from (:func:`progvc.coding.fill.add_detail`).

The peak adds the parts alive at once: when encoding, the larger of tokenizing and coding; when
decoding, the larger of coding (caches and logits) and ``g_s``, since the caches are dropped before
the GOP is synthesised; a streaming decode with previews synthesises beside the caches of the
scales still to come, so there the caches and the larger of logits and ``g_s`` add up. The process's own floor (torch
and the model, 0.9 GB on CPU) is not part of the estimate: it is already resident when a job is
checked against what is available. Measured peaks: benchmarks/README.md, "Memory". This module
imports neither torch nor numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models.config import CodecConfig
from ..runtime.memory import (
    ENTROPY_ENTRIES,
    LOOKUP_ENTRIES,
    REFINE_CHUNK_PIXELS,
    TEMPERATURE_BUFFER_ROWS,
    TILE_PIXELS,
    logits_kept,
)
from ..stream.scales import tokens_per_scale

if TYPE_CHECKING:
    from ..stream.format import StreamHeader

TRANSFORM_BYTES_PER_PIXEL = 850
"""Peak bytes per pixel of one piece of ``g_s`` (measured: 1.7 GB above the floor for one 1080p frame)."""
REFINE_BYTES_PER_PIXEL = 1850
"""Peak bytes per pixel of encoder refinement's backward pass (measured: 1.7 GB for one 720p frame)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GOP needs, by part (see the module docstring); ``total`` is the peak, the parts
    alive at the same time added (``encode``: the job encodes, so tokenizing and coding do not
    overlap)."""

    context: int
    logits: int
    transform: int
    frames: int
    output: int = 0
    encode: bool = False
    previews: bool = False

    @property
    def total(self) -> int:
        """The peak: parts that are alive at the same time, added."""
        if self.previews:  # a preview synthesises beside the caches; the logits are gone by then
            work = self.context + max(self.logits, self.transform)
        else:  # tokenize (g_a, ...) is done before the caches exist, and they are dropped before g_s
            work = max(self.transform, self.context + self.logits)
        return work + self.frames + self.output

    def __str__(self) -> str:
        names = {"context": "context caches", "logits": "logits and tables", "transform": "g_s/g_a",
                 "frames": "frames", "output": "output array"}
        parts = ", ".join(f"{text} {_gib(getattr(self, name))}" for name, text in names.items()
                          if getattr(self, name))
        return f"{_gib(self.total)} at peak ({parts})"


def estimate(config: CodecConfig, width: int, height: int, gop_frames: int, scales: int, *,
             temporal: bool = True, encode: bool = False, refine: bool = False, output_frames: int = 0,
             previews: bool = False, resize: int = 1, detail: bool = False) -> MemoryEstimate:
    """Peak bytes to code one GOP of ``gop_frames`` frames of ``width`` x ``height`` through its
    first ``scales`` scales (decoding with sampling runs every scale). ``encode`` adds the input
    frames, ``refine`` the refinement's backward pass; ``output_frames`` counts frames of an
    output array held beside the GOP (``Codec.decode``); ``previews``: frames are synthesised
    while the caches are still kept for later chunks (the streaming ``Decoder``'s previews).
    ``resize``: ``width x height`` is the coded size of frames shown ``resize`` times larger
    (:mod:`progvc.video.resize`), which is the size of the input and output frames. ``detail``: decoding
    with ``fill="sample"``, which keeps the sent scales' latent beside the filled one and
    synthesises both (:func:`progvc.coding.fill.add_detail`)."""
    tok = config.tokenizer
    h, w = -(-height // tok.stride), -(-width // tok.stride)
    tokens = tokens_per_scale(h, w, tok.n_scales)[:scales]
    latent = 4 * gop_frames * tok.latent_channels * h * w  # f_hat (T,C,h,w) float32
    context = _context_bytes(config, tokens, gop_frames, temporal) + latent * (2 if detail else 1)
    rows, vocab = max(tokens), tok.codebook_size  # the largest scale's float32 logits: kept, or a slice
    logits = 4 * (rows * vocab if logits_kept(rows, vocab) else ENTROPY_ENTRIES) + 50 * ENTROPY_ENTRIES
    if encode and temporal:  # a block tried in both context modes (progvc.coding.context_modes) holds two of each
        logits *= 2
    if encode:  # the current chunk's logits, kept until its temperature is chosen
        logits += 4 * min(gop_frames * rows, TEMPERATURE_BUFFER_ROWS) * vocab
    area = width * height
    piece = min(gop_frames * area, TILE_PIXELS)  # a batch of frames, or one tile with its halo
    transform = TRANSFORM_BYTES_PER_PIXEL * piece
    if refine and area <= REFINE_CHUNK_PIXELS:
        transform = max(transform, REFINE_BYTES_PER_PIXEL * min(gop_frames * area, REFINE_CHUNK_PIXELS))
    if encode:  # the quantiser's distance slices, beside the analysis pieces
        transform += 3 * 4 * min(LOOKUP_ENTRIES, gop_frames * h * w * tok.codebook_size)
    shown = area * resize**2  # the frames as given to encode and returned by decode
    # encode holds the input and its coded copy; decode the synthesised frames and, when resized, their
    # upsampling; fill="sample" also the sent scales' picture
    frames = 3 * gop_frames * (shown + area if encode or resize > 1 else area) + 3 * gop_frames * area * detail
    return MemoryEstimate(context, logits, transform, frames, 3 * shown * output_frames, encode, previews)


def decode_estimate(config: CodecConfig, header: StreamHeader, scales: int, output_frames: int = 0,
                    previews: bool = False, fill: str = "none") -> MemoryEstimate:
    """:func:`estimate` for decoding the largest GOP of the stream ``header`` describes through
    ``scales`` scales in fill mode ``fill``, from the header alone (what ``Codec.iter_decode``, the
    streaming ``Decoder`` and ``progvc decode`` check)."""
    width, height = header.coded_size
    return estimate(config, width, height, min(header.gop_size, header.n_frames), scales,
                    temporal=header.temporal, output_frames=output_frames, previews=previews,
                    resize=header.resize, detail=fill == "sample")


def _context_bytes(config: CodecConfig, tokens: list[int], gop_frames: int, temporal: bool) -> int:
    """The most ``GopState`` holds, besides ``f_hat``, while coding scales with ``tokens[k]`` tokens
    per frame in a GOP of ``gop_frames`` frames, replaying what the cache keeps and drops
    (:class:`~progvc.models.cached_attention.KVCache`) in coding order: per token and block its keys
    and values (2 dim floats) until its frame has run the model's last scale (never for that
    scale); with temporal context the memory element (dim floats) of each frame that a later frame
    reads, until every reader has run the last scale; and the token itself (int64)."""
    ctx = config.context
    window = ctx.temporal_window if temporal else 0
    last, per_own, per_mem = config.tokenizer.n_scales - 1, 4 * 2 * ctx.depth * ctx.dim, 4 * ctx.dim
    own, mem, coded, peak = [0] * gop_frames, [0] * gop_frames, 0, 0
    for k, n in enumerate(tokens):
        for t in range(gop_frames):
            if k < last:  # the block of (t,k) ran: its keys are kept for frame t's finer scales
                own[t] += per_own * n
            else:  # frame t is done, and so is the memory of frames whose last reader it was
                own[t] = 0
                mem = [0 if min(src + window, gop_frames - 1) <= t else b for src, b in enumerate(mem)]
            peak = max(peak, sum(own) + sum(mem) + coded)
            coded += 8 * n  # the tokens of (t,k) are committed, and its memory kept for its readers
            if window and t + 1 < gop_frames:
                mem[t] += per_mem * n
            peak = max(peak, sum(own) + sum(mem) + coded)
    return peak


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{math.ceil(n / 2**20)} MiB"
