"""The memory budgets that bound each piece of coding work, and the process's memory itself.

Every large temporary of the codec is cut into pieces of a bounded size, so that peak memory does
not grow with the frame size beyond what these constants allow: ``g_s``/``g_a`` work
(``TILE_PIXELS``), probability tables and sampling (``ENTROPY_ENTRIES``, :func:`row_slices`), the
quantiser's distances (``LOOKUP_ENTRIES``), refinement (``REFINE_CHUNK_PIXELS``). What a whole job
then needs is estimated from them in :mod:`progvc.coding.state.footprint`. This module also reads what the
machine has :func:`available` and hands freed memory back (:func:`return_freed`). It imports
neither torch nor numpy, nor anything of progvc.
"""

from __future__ import annotations

import ctypes
import functools
import sys

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
tables are made again slice by slice (:class:`progvc.coding.state.RowLogits`)."""
TEMPERATURE_BUFFER_ROWS = 4096
"""Rows of float32 logits an encoder's chunk keeps while its temperature is undecided
(:class:`progvc.coding.temperature.TemperedChunkEncoder`): 64 MiB for the shipped model's 4096 codes."""
LOOKUP_ENTRIES = 1 << 24
"""Distances (rows x V) computed at once by the quantiser's nearest-codebook lookup. The finest
scale of a 4K frame is 138,240 rows x 4,096 codes: 2.3 GB per float32 temporary, three of them at
once before this bound. 2^24 (64 MB) leaves CIF frames in one slice."""
REFINE_CHUNK_PIXELS = 1 << 20
"""Frames refined together in one batch, in pixels: bounds the memory of the backward pass. A
frame larger than this is not refined (it keeps the greedy latent): the backward pass through
``g_s`` is not tiled and needs about 1.8 kB per pixel (1.7 GB at 720p, measured; 3.7 GB at 1080p)."""


def logits_kept(rows: int, vocab: int) -> bool:
    """Whether a (t, k)'s float32 logits of ``rows`` x ``vocab`` are kept whole once made
    (``KEEP_LOGITS_BYTES``), or made again slice by slice (:class:`progvc.coding.state.RowLogits`)."""
    return 4 * rows * vocab <= KEEP_LOGITS_BYTES


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


def row_slices(n_rows: int, row_entries: int, budget: int | None = None) -> list[slice]:
    """Slices of ``n_rows`` rows of ``row_entries`` entries each, at most ``budget`` entries per slice:
    the probability tables (and sampling, and the rate-distortion scores) of the finest 1080p scale
    would take gigabytes at once. Row-wise work done slice by slice gives the same result.
    ``budget`` defaults to ``ENTROPY_ENTRIES`` (read at call time)."""
    step = max(1, (ENTROPY_ENTRIES if budget is None else budget) // row_entries)
    return [slice(i, i + step) for i in range(0, n_rows, step)]
