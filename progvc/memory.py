"""What a coding job will hold in memory, estimated before it starts, so that a job that cannot fit
is refused with the estimate instead of being discovered by the kernel (thrashing, OOM killer).

::

    need = estimate(codec.config, width=1920, height=1080, gop_frames=8, scales=10)
    need.total, str(need)    # bytes; "1.7 GiB at peak (context caches 0.7 GiB, logits and tables ...)"

One GOP is coded at a time, so the estimate is per GOP and does not grow with the video's length
(except the array that ``Codec.decode`` returns, which ``iter_decode`` does not build). Its parts:

- **context caches**: the most :class:`progvc.coding.GopState` holds at once: for every token of
  the scales coded so far, its keys and values in each block (4 bytes x 2 depth x dim) and, for
  frames that a later frame reads, its memory element (4 bytes x dim; the readers project it to
  keys and values when they attend). Nothing of the model's last scale is kept beyond the frames
  that still read it (:class:`~progvc.models.cached_attention.KVCache`), so a GOP coded through
  every scale peaks as its last scale starts, holding the coarser scales only: 0.7 GiB for 8 frames
  of 1080p with the shipped model (it was 5.8 GiB when every scale's keys, and the memory's keys
  for every reader, were kept). A test checks this against the tensors a real ``GopState`` holds
  as it codes: when coding changes what it keeps, update :func:`_context_bytes` with it.
- **logits**: one slice of ``ENTROPY_ENTRIES`` float32 logits (``progvc.coding.RowLogits``
  makes them slice by slice; all rows of the finest 1080p scale at once took 0.5 GiB), or the
  whole table where it is at most ``KEEP_LOGITS_BYTES``, plus one slice of probability tables
  (``ENTROPY_ENTRIES`` x 50 bytes); twice that when encoding with temporal context, where a block
  is scored in both context modes (:mod:`progvc.modes`). Attention works a group of tiles at a time
  (``ATTENTION_BYTES``) beside one block's memory keys, less than this.
- **synthesis / analysis**: one piece of ``g_s`` / ``g_a`` work (at most ``TILE_PIXELS`` pixels,
  a tile's halo included) at ``TRANSFORM_BYTES_PER_PIXEL``; when encoding, the quantiser's
  distance slices (``LOOKUP_ENTRIES``) beside them; encoder refinement adds
  ``REFINE_BYTES_PER_PIXEL`` for frames it refines.
- **frames**: the GOP's uint8 frames, in and out; with ``fill="sample"`` also the picture of the
  sent scales alone and, in the caches' part, the latent it is made from (:func:`progvc.fill.add_detail`).

The peak adds the parts alive at once: when encoding, the larger of tokenizing and coding; when
decoding, the larger of coding (caches and logits) and ``g_s``, since the caches are dropped before
the GOP is synthesised; a streaming decode with previews synthesises beside the caches of the
scales still to come, so there the caches and the larger of logits and ``g_s`` add up. The process's own floor (torch
and the model, 0.9 GB on CPU) is not part of the estimate: it is already resident when a job is
checked against what is available. Measured peaks: benchmarks/README.md, "Memory". This module
imports neither torch nor numpy.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import CodecConfig
from .scales import tokens_per_scale

if TYPE_CHECKING:
    from .bitstream import StreamHeader

TRANSFORM_BYTES_PER_PIXEL = 850
"""Peak bytes per pixel of one piece of ``g_s`` (measured: 1.7 GB above the floor for one 1080p frame)."""
REFINE_BYTES_PER_PIXEL = 1850
"""Peak bytes per pixel of encoder refinement's backward pass (measured: 1.7 GB for one 720p frame)."""

# -- the budgets that bound each piece of work: their one home (used by tiling, tokenizer, codec) --
TILE_PIXELS = 1 << 20
"""Pixels (of the larger side of a transform: output of ``g_s``, input of ``g_a``) per piece of
work: a batch of whole frames, or one tile with its halo (:mod:`progvc.models.tiling`). 2^20 keeps
720p whole (921,600 pixels) and tiles 1080p and larger frames: a whole 1080p frame took about
1.7 GB through ``g_s``, which put a 1080p decode at 3.04 GB peak (2^21 before)."""
ENTROPY_ENTRIES = 1 << 22
"""Logit entries (rows x V) made into probability tables, or sampled, at once. The float64 softmax
and int64 tables take about 40-50 bytes per entry: 5.3 GB for the finest scale of one 1080p frame
in one go, 170 MB in slices of 4M entries. Rows are coded (and drawn) in order either way: the same
bytes and the same tokens."""
KEEP_LOGITS_BYTES = 1 << 26
"""A (t, k)'s logits are kept once made when all of them take at most this (64 MB: 4,096 rows,
the finest scale of a 512x512 frame), so that the encoder, which reads them twice, makes them once; larger
tables are made again slice by slice (:class:`progvc.coding.RowLogits`)."""
TEMPERATURE_BUFFER_ROWS = 4096
"""Rows of float32 logits an encoder's chunk keeps while its temperature is undecided
(:class:`progvc.temperature.TemperedChunkEncoder`): 64 MiB for the shipped model's 4096 codes."""
LOOKUP_ENTRIES = 1 << 24
"""Distances (rows x V) computed at once by the quantiser's nearest-codebook lookup. The finest
scale of a 4K frame is 138,240 rows x 4,096 codes: 2.3 GB per float32 temporary, three of them at
once before this bound. 2^24 (64 MB) leaves CIF frames in one slice."""
REFINE_CHUNK_PIXELS = 1 << 20
"""Frames refined together in one batch, in pixels: bounds the memory of the backward pass. A
frame larger than this is not refined (it keeps the greedy latent): the backward pass through
``g_s`` is not tiled and needs about 1.8 kB per pixel (1.7 GB at 720p, measured; 3.7 GB at 1080p)."""


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
    (:mod:`progvc.resize`), which is the size of the input and output frames. ``detail``: decoding
    with ``fill="sample"``, which keeps the sent scales' latent beside the filled one and
    synthesises both (:func:`progvc.fill.add_detail`)."""
    tok = config.tokenizer
    h, w = -(-height // tok.stride), -(-width // tok.stride)
    tokens = tokens_per_scale(h, w, tok.n_scales)[:scales]
    latent = 4 * gop_frames * tok.latent_channels * h * w  # f_hat (T,C,h,w) float32
    context = _context_bytes(config, tokens, gop_frames, temporal) + latent * (2 if detail else 1)
    rows, vocab = max(tokens), tok.codebook_size  # the largest scale's float32 logits: kept, or a slice
    logits = 4 * (rows * vocab if logits_kept(rows, vocab) else ENTROPY_ENTRIES) + 50 * ENTROPY_ENTRIES
    if encode and temporal:  # a block tried in both context modes (progvc.modes) holds two of each
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


def logits_kept(rows: int, vocab: int) -> bool:
    """Whether a (t, k)'s float32 logits of ``rows`` x ``vocab`` are kept whole once made
    (``KEEP_LOGITS_BYTES``), or made again slice by slice (:class:`progvc.coding.RowLogits`)."""
    return 4 * rows * vocab <= KEEP_LOGITS_BYTES


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


TRIM_TOKENS = 1 << 13
"""A GOP hands freed memory back (:func:`return_freed`, between scales and before synthesis) only when its finest grid
has at least this many tokens (720p: 14,400; CIF: 1,584): there the freed temporaries of a scale
are hundreds of MB, while for small frames the trim and the page faults after it cost about 9% of
a CIF decode (2.48 against 2.71 fps cut by two scales) and save nothing that matters."""


def return_freed() -> None:
    """Hand memory the process has freed back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Freed tensors below glibc's mmap threshold (at most 32 MB) stay in the heap, and
    RSS with them: after coding a 720p GOP about 0.65 GB of it, which ``g_s`` then allocates on
    top of (decode peak 2.68 GB instead of 2.25). Called between scales and before synthesis;
    it takes milliseconds and changes no value."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function, or None
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def available() -> int | None:
    """Memory this machine can give a new job now (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{math.ceil(n / 2**20)} MiB"


def row_slices(n_rows: int, row_entries: int, budget: int | None = None) -> list[slice]:
    """Slices of ``n_rows`` rows of ``row_entries`` entries each, at most ``budget`` entries per slice:
    the probability tables (and sampling, and the rate-distortion scores) of the finest 1080p scale
    would take gigabytes at once. Row-wise work done slice by slice gives the same result.
    ``budget`` defaults to ``ENTROPY_ENTRIES`` (read at call time)."""
    step = max(1, (ENTROPY_ENTRIES if budget is None else budget) // row_entries)
    return [slice(i, i + step) for i in range(0, n_rows, step)]
