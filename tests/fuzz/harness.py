"""Hostile-input fuzzing of the container and the decoder (issue 6), and the long-running harness.

Three levels share one vocabulary of mutations with ``tests/test_hostile_streams.py`` and
``tests/test_resources.py``:

- **container**: random bytes, cuts, bit flips, header fields at their extremes laid out with
  ``struct``, tampered GOP indexes; most with every CRC recomputed (:func:`reseal`) so that the
  bounds checks, not the checksums, must reject them. Run through ``unpack`` (whole and partial),
  ``info`` and ``truncate``.
- **decoder**: real streams of the tiny codec with payload bits flipped, chunks swapped between GOPs
  and scales or taken from other streams, tampered headers; re-packed with ``bitstream.pack`` (new
  chunk CRCs, the old ``crc_tokens``) or resealed, then run through ``decode_tokens`` / ``decode``.
- **extreme** (issue 15): header-valid streams, every CRC and chunk right, that claim extreme frame
  sizes and counts (up to 8192x8192, up to 2^20 frames); above the default limits every decoding
  entry point must raise ``LimitError`` before any model work (:func:`extreme_case`).

Every case must end within a second with ``BitstreamError`` or a correct result: a container that
round-trips, a decode whose tokens all pass their checksums and equal the encoder's tokens wherever
the chunks they depend on are untouched. Anything else is a failure::

    nice -n 19 python -m tests.fuzz.harness --cases 100000 --decoder-cases 1000000 --decoder-seconds 600 --seed 1
    nice -n 19 python -m tests.fuzz.harness --cases 0 --decoder-cases 0 --extreme-cases 10000 --seed 1
    nice -n 19 python -m tests.fuzz.harness --replay decoder:17 --seed 1      # one case again

Mutations draw their randomness through a ``Draws`` object, so the same code runs from a seeded
``random.Random`` here and from hypothesis (which shrinks failures) in the test suite. Nothing in
this module is collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Protocol, TypeVar

from progvc.runtime.errors import BitstreamError, ConfigError
from progvc.stream import format as bs
from progvc.stream import truncation
from progvc.stream.info import info
from progvc.stream.scales import scale_grids

T = TypeVar("T")
CASE_LIMIT_S = 1.0


# -- randomness --------------------------------------------------------------------------------

class Draws(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...  # inclusive
    def blob(self, n: int) -> bytes: ...


class RandomDraws:
    """:class:`Draws` from a seeded ``random.Random``."""

    def __init__(self, seed: Any) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def blob(self, n: int) -> bytes:
        return self.rng.randbytes(n)


def pick(d: Draws, items: Sequence[T]) -> T:
    return items[d.integer(0, len(items) - 1)]


# -- streams laid out by hand ------------------------------------------------------------------

EXTREMES: dict[str, list[Any]] = {
    "name": [b"", b"m", b"x" * 64, b"x" * 65, b"x" * 255, b"\xff\xfe"],
    "width": [0, 1, 8192, 8193, 1 << 31, (1 << 32) - 1],
    "height": [0, 1, 8192, 8193, 1 << 31, (1 << 32) - 1],
    "frames": [0, 1, 1 << 20, (1 << 20) + 1, (1 << 32) - 1],
    "fps_num": [0, 1, (1 << 32) - 1],
    "fps_den": [0, 1, (1 << 32) - 1],
    "gop": [0, 1, 256, 257, 65535],
    "n_scales": [0, 1, 32, 33, 255],
    "coded": [0, 1, 32, 33, 255],
    "seed": [0, (1 << 64) - 1],
    "temperature": [0.0, -0.0, -1.0, 1e-45, 100.0, 100.00001, math.inf, math.nan],
    "top_k": [0, (1 << 32) - 1],
    "top_p": [0.0, -0.0, 1e-45, 1.0, 1.0000001, math.inf, math.nan],
    "flags": [0, 1, 2, 3, 6, 7, 8, 9, 14, 16, 17, 48, 49, 64, 65, 72, 128, 255],
    "side": [0, 1, 8192, 8193, 65535],
}
"""Header field values at and beyond the bounds of docs/FORMAT.md (``side``: a grid's rows or cols)."""

VALID = dict(name=b"m", sha=bytes(range(32)), width=33, height=17, frames=5, fps_num=30000, fps_den=1001, gop=2,
             coded=3, seed=7, temperature=1.0, top_k=0, top_p=1.0, flags=64, grids=((1, 1), (2, 2), (3, 4)))


def header_bytes(f: dict[str, Any], body_len: int | None = None) -> bytes:
    """A header laid out from ``f`` with ``struct`` as docs/FORMAT.md says, with a correct CRC.

    The scale count is ``len(f["grids"])`` and only the last (finest) grid is written: the parser
    derives the others from it; the weights hash is cut to its first 8 bytes; the sampling fields
    are written when flag bit 6 is set. ``body_len`` overrides the length field; the body is then
    cut or zero-padded to it, so the CRC still matches and only the bounds checks can object.
    """
    grids = f["grids"]
    body = (bytes([len(f["name"]) % 256]) + f["name"] + f["sha"][:8]
            + b"".join(leb128(f[k]) for k in ("width", "height", "frames", "fps_num", "fps_den", "gop"))
            + bytes([len(grids) % 256, f["coded"], f["flags"]])
            + (struct.pack("<QfIf", f["seed"], f["temperature"], f["top_k"], f["top_p"]) if f["flags"] & 64 else b"")
            + b"".join(leb128(r) + leb128(c) for r, c in grids[-1:]))
    if body_len is not None:
        body = body[:body_len].ljust(body_len, b"\0")
    head = struct.pack("<4sBH", bs.MAGIC, bs.VERSION, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def header_valid(f: dict[str, Any]) -> bool:
    """The bounds of docs/FORMAT.md, restated independently of the parser."""
    def f32(x: float) -> float:
        return struct.unpack("<f", struct.pack("<f", x))[0]

    k = len(f["grids"])
    return (1 <= len(f["name"]) <= 64 and f["name"].isascii()
            and 1 <= f["width"] <= 8192 and 1 <= f["height"] <= 8192 and 1 <= f["frames"] <= 1 << 20
            and f["fps_num"] > 0 and f["fps_den"] > 0 and 1 <= f["gop"] <= 256 and 1 <= k <= 32
            and 1 <= f["coded"] <= k
            and (not f["flags"] & 64 or (0 < f32(f["temperature"]) <= 100 and 0 < f32(f["top_p"]) <= 1))
            and f["flags"] & ~127 == 0 and not (f["flags"] & 1 and f["flags"] & 14)  # skip, modes need temporal
            and all(1 <= s <= 8192 for s in f["grids"][-1]))


def leb128(n: int) -> bytes:
    """A payload length as the format's varint: 7 bits per byte, low first, high bit = more."""
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n >= 0x80 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _chunk_check(t: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<I", t))) & 0xFFFF


def gop_bytes(payloads: Sequence[bytes], tokens: Sequence[int] | None = None, n_chunks: int | None = None,
              lengths: Sequence[int] | None = None, rd_lambda: float = 0.0) -> bytes:
    """One GOP unit with correct index and chunk CRCs, every chunk at temperature 1; ``n_chunks`` /
    ``lengths`` override the index."""
    lengths = [len(p) for p in payloads] if lengths is None else list(lengths)
    index = struct.pack("<Bf", len(lengths) if n_chunks is None else n_chunks, rd_lambda)
    index += b"".join(leb128(n) for n in lengths)
    neutral = bs.NEUTRAL_TEMPERATURE  # each chunk's temperature index, two to a byte, the odd high half 0
    index += bytes(neutral | (neutral << 4 if 2 * i + 1 < len(lengths) else 0) for i in range((len(lengths) + 1) // 2))
    out = [index, struct.pack("<I", zlib.crc32(index))]
    for i, p in enumerate(payloads):
        t = tokens[i] if tokens else i
        out.append(struct.pack("<IH", t, _chunk_check(t, p)) + p)
    return b"".join(out)


def reseal(data: bytes) -> bytes:
    """Recompute every CRC that a lenient walk of ``data`` finds (header, GOP indexes, chunks).

    A mutation followed by ``reseal`` is judged by the bounds checks and the decoder, not by a checksum.
    """
    out = bytearray(data)
    if len(out) < 7:
        return bytes(out)
    pos = 7 + struct.unpack_from("<H", out, 5)[0]
    if len(out) < pos + 4:
        return bytes(out)
    struct.pack_into("<I", out, pos, zlib.crc32(out[:pos]))
    pos += 4
    while pos < len(out):
        n, end, lengths = out[pos], pos + 5, []  # n_chunks u8, rd_lambda f32, lengths
        for _ in range(n):
            value, shift = 0, 0
            while end < len(out) and shift < 35:
                value |= (out[end] & 0x7F) << shift
                end, shift = end + 1, shift + 7
                if not out[end - 1] & 0x80:
                    break
            lengths.append(value)
        end += (n + 1) // 2  # the chunks' temperature indices
        if end + 4 > len(out):
            break
        struct.pack_into("<I", out, end, zlib.crc32(out[pos:end]))
        pos = end + 4
        for length in lengths:
            if pos + 6 + length > len(out):
                return bytes(out)
            t = struct.unpack_from("<I", out, pos)[0]
            struct.pack_into("<H", out, pos + 4, _chunk_check(t, bytes(out[pos + 6:pos + 6 + length])))
            pos += 6 + length
    return bytes(out)


def synthetic_streams() -> list[bytes]:
    """Small valid streams with made-up payloads (the container does not look inside them)."""
    out = []
    for frames, gop, scales in ((5, 2, 3), (1, 1, 1), (3, 4, 2)):
        grids = tuple(scale_grids(scales, scales + 1, scales))
        h = bs.StreamHeader("m", bytes(range(32)), 33, 17, frames, Fraction(30000, 1001), gop, grids, scales, seed=7)
        gops = tuple(tuple(bs.Chunk(g * 10 + k, bytes(4 * (k + 1))) for k in range(scales)) for g in range(h.n_gops))
        out.append(bs.pack(bs.Stream(h, gops)))
    return out


# -- container level ---------------------------------------------------------------------------

def flip(d: Draws, data: bytes, n: int) -> bytes:
    out = bytearray(data)
    for _ in range(n if out else 0):
        out[d.integer(0, len(out) - 1)] ^= 1 << d.integer(0, 7)
    return bytes(out)


def draw_fields(d: Draws) -> dict[str, Any]:
    """Header fields, each either valid or one of its :data:`EXTREMES`."""
    f = dict(VALID)
    for name in ("name", "width", "height", "frames", "fps_num", "fps_den", "gop", "coded", "seed",
                 "temperature", "top_k", "top_p", "flags"):
        if d.integer(0, 3) == 0:
            f[name] = pick(d, EXTREMES[name])
    k = pick(d, EXTREMES["n_scales"]) if d.integer(0, 3) == 0 else 3
    f["grids"] = tuple((pick(d, EXTREMES["side"]) if d.integer(0, 7) == 0 else i % 7 + 1,
                        pick(d, EXTREMES["side"]) if d.integer(0, 7) == 0 else i % 5 + 1) for i in range(k))
    return f


def field_case(d: Draws) -> tuple[bytes, bool | None]:
    """A header with fields at extremes, followed by well-formed GOPs when few enough are promised
    (then ``unpack`` must succeed exactly when :func:`header_valid`) or by a little noise."""
    f = draw_fields(d)
    if d.integer(0, 7) == 0:  # a length field that disagrees with the body
        real = len(header_bytes(f)) - 11
        return header_bytes(f, pick(d, [0, 1, real - 1, real + 1, real + 4, 65535])), False
    n_gops = -(-f["frames"] // f["gop"]) if f["gop"] else 0
    if d.integer(0, 2) and 1 <= n_gops <= 16 and f["coded"] >= 1:
        tail = b"".join(gop_bytes([d.blob(4 * d.integer(0, 2)) for _ in range(d.integer(1, min(f["coded"], 3)))])
                        for _ in range(n_gops))
        return header_bytes(f) + tail, header_valid(f)
    return header_bytes(f) + d.blob(d.integer(0, 40)), False if not header_valid(f) else None


def gop_index_case(d: Draws) -> bytes:
    """A valid header, then GOP indexes that claim odd chunk counts and lengths (CRCs correct)."""
    units = []
    for _ in range(d.integer(1, 3)):
        payloads = [d.blob(pick(d, [0, 1, 3, 4, 8])) for _ in range(d.integer(0, 4))]
        lengths = [pick(d, [len(p), 0, 1, 4, 1 << 31, (1 << 32) - 1, d.integer(0, 64)]) if d.integer(0, 2) == 0
                   else len(p) for p in payloads]
        n = pick(d, [len(payloads), 0, 3, 4, 255]) if d.integer(0, 2) == 0 else None
        units.append(gop_bytes(payloads, n_chunks=n, lengths=lengths))
    return header_bytes(VALID) + b"".join(units)


def mutate_container(d: Draws, seeds: Sequence[bytes]) -> tuple[bytes, bool | None]:
    """One hostile container and whether ``unpack`` must accept it (True / False / None: either)."""
    base = pick(d, seeds)
    kind = d.integer(0, 9)
    if kind == 0:
        return d.blob(d.integer(0, 200)), None
    if kind == 1:  # magic and version right, then noise
        return base[:7] + d.blob(d.integer(0, 200)), None
    if kind == 2:  # cut anywhere: a whole stream needs every byte
        return base[:d.integer(0, len(base) - 1)], False
    if kind == 3:  # up to 3 bit flips: the CRCs must catch them (unless two flips cancel out)
        data = flip(d, base, d.integer(1, 3))
        return data, data == base
    if kind == 4:  # bit flips with every CRC recomputed: the bounds checks must catch them
        return reseal(flip(d, base, d.integer(1, 8))), None
    if kind == 5:  # bytes inserted or removed, CRCs recomputed
        i = d.integer(0, len(base))
        j = i + d.integer(0, 8)
        return reseal(base[:i] + d.blob(d.integer(0, 8)) + base[j:]), None
    if kind == 6:
        return field_case(d)
    if kind == 7:
        return gop_index_case(d), None
    if kind == 8:  # two streams spliced at random points
        other = pick(d, seeds)
        return reseal(base[:d.integer(0, len(base))] + other[d.integer(0, len(other)):]), None
    out = bytearray(base)  # kind 9: a byte set to an extreme, CRCs recomputed
    out[d.integer(0, len(out) - 1)] = pick(d, [0, 0xFF, 0x80, 0x7F, d.integer(0, 255)])
    return reseal(bytes(out)), None


def check_container(data: bytes, expect: bool | None = None) -> str:
    """Run the byte-level API on ``data``: 'decoded' or 'rejected' (BitstreamError).

    Raises AssertionError when an outcome is wrong, and lets any other exception through.
    """
    try:
        stream = bs.unpack(data)
    except BitstreamError:
        stream = None
    assert expect is None or (stream is not None) == expect, f"unpack {'refused' if expect else 'accepted'} it"
    try:
        part = bs.unpack(data, partial=True)
    except BitstreamError:
        part = None
    if part is not None:
        assert info(data, partial=True).complete == part.complete
    if stream is None:
        for call in (info, lambda x: truncation.truncate(x, n_scales=1)):
            try:
                call(data)
            except BitstreamError:
                continue
            raise AssertionError("info/truncate accepted a stream that unpack refused")
        return "rejected"
    assert part == stream, "partial=True parsed a whole stream differently"
    assert bs.unpack(bs.pack(stream)) == stream, "pack(unpack(data)) does not round-trip"
    i = info(data)
    assert i.total_bytes == len(data) == i.header_bytes + i.index_bytes + sum(i.bytes_per_scale)
    for n in {1, stream.header.coded_scales}:
        small = bs.unpack(truncation.truncate(data, n_scales=n))
        assert small.gops == tuple(g[:n] for g in stream.gops), "truncate did not keep a prefix of chunks"
    with contextlib.suppress(ConfigError):  # a budget below one chunk per GOP
        assert len(truncation.truncate(data, max_bytes=len(data) - 1)) < len(data)
    return "decoded"


# -- decoder level -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """A stream made by the tiny codec and the tokens its encoder saw, ``tokens[g][k]`` (T,h,w)."""

    data: bytes
    stream: bs.Stream
    tokens: list


def make_references(codec: Any) -> list[Reference]:
    """Streams the decoder-level cases start from: two clips of one size (chunks of one can be
    spliced into the other), an intra-only one of another size, one truncated to 2 scales and a
    longer one with GOPs of 4 frames and larger chunks."""
    from tests.helpers import smooth_clip

    out = []
    for shape, seed, options in (((3, 16, 16), 0, {"gop_size": 2}), ((3, 16, 16), 1, {"gop_size": 2}),
                                 ((2, 8, 12), 2, {"gop_size": 1, "temporal": False}),
                                 ((3, 16, 16), 3, {"gop_size": 2, "n_scales": 2}),
                                 ((6, 32, 44), 4, {"gop_size": 4})):
        data = codec.encode(smooth_clip(*shape, seed=seed), **options)
        out.append(Reference(data, bs.unpack(data), codec.decode_tokens(data)))
    codec.decode(out[0].data)  # warm the synthesis and sampling paths too
    return out


HEADER_CHANGES: dict[str, Callable[[Draws, bs.StreamHeader], Any]] = {
    "model_name": lambda d, h: pick(d, ["progvc-other", "m", "x" * 64]),
    "weights_sha256": lambda d, h: d.blob(8),
    "grids": lambda d, h: tuple(scale_grids(h.grids[-1][0] + d.integer(0, 1), h.grids[-1][1] + d.integer(0, 1),
                                            len(h.grids))),
    "temporal": lambda d, h: not h.temporal,
    "skip_block": lambda d, h: pick(d, [s for s in bs.SKIP_BLOCKS if s != h.skip_block]),
    "modes": lambda d, h: not h.modes,
    "resize": lambda d, h: pick(d, [f for f in bs.RESIZE_FACTORS if f != h.resize]),
    "seed": lambda d, h: d.integer(0, (1 << 64) - 1),
    "temperature": lambda d, h: pick(d, [1e-3, 0.5, 2.0, 100.0]),
    "top_k": lambda d, h: pick(d, [1, 2, 63, 64, (1 << 32) - 1]),
    "top_p": lambda d, h: pick(d, [1e-6, 0.5, 1.0]),
    "n_frames": lambda d, h: max(1, h.n_frames + pick(d, [-1, 1])),
    "gop_size": lambda d, h: pick(d, [1, 2, 3, 4]),
    "width": lambda d, h: pick(d, [h.width - 1, h.width + 1, h.width + 4, 8192]),
    "height": lambda d, h: pick(d, [h.height - 1, h.height + 1, h.height + 4, 8192]),
}


def mutate_stream(d: Draws, refs: Sequence[Reference]) -> tuple[bytes, Reference, bool] | None:
    """A hostile variant of a reference stream: (bytes, its reference, decode it as a prefix?).

    None when the drawn mutation cannot be laid out (``pack`` refuses an inconsistent header).
    """
    ref = pick(d, refs)
    h, gops = ref.stream.header, [list(chunks) for chunks in ref.stream.gops]

    def where() -> tuple[int, int]:
        g = d.integer(0, len(gops) - 1)
        return g, d.integer(0, len(gops[g]) - 1)

    kind = d.integer(0, 8)
    if kind == 0:  # payload bits flipped; pack recomputes the chunk CRC, crc_tokens stays
        g, k = where()
        c = gops[g][k]
        gops[g][k] = replace(c, payload=flip(d, c.payload, d.integer(1, 3)))
    elif kind == 1:  # wrong token checksum
        g, k = where()
        gops[g][k] = replace(gops[g][k], crc_tokens=gops[g][k].crc_tokens ^ d.integer(1, (1 << 32) - 1))
    elif kind == 2:  # two chunks swapped (between GOPs and/or scales)
        (g, k), (g2, k2) = where(), where()
        gops[g][k], gops[g2][k2] = gops[g2][k2], gops[g][k]
    elif kind == 3:  # a chunk from another stream
        other = pick(d, refs).stream.gops
        g, k = where()
        g2 = d.integer(0, len(other) - 1)
        gops[g][k] = other[g2][d.integer(0, len(other[g2]) - 1)]
    elif kind == 4:  # payload cut or extended
        g, k = where()
        p = gops[g][k].payload
        p = p[:d.integer(0, len(p))] if d.integer(0, 1) else p + d.blob(pick(d, [1, 3, 4, 8]))
        gops[g][k] = replace(gops[g][k], payload=p)
    elif kind == 5:  # a GOP keeps fewer chunks: a valid stream
        g = d.integer(0, len(gops) - 1)
        gops[g] = gops[g][:d.integer(1, len(gops[g]))]
    elif kind == 6:  # a header field changed
        field = pick(d, sorted(HEADER_CHANGES))
        h = replace(h, **{field: HEADER_CHANGES[field](d, h)})
    elif kind == 7:  # bit flips anywhere, every CRC recomputed
        return reseal(flip(d, ref.data, d.integer(1, 4))), ref, False
    else:  # a prefix, decoded progressively
        return ref.data[:d.integer(0, len(ref.data))], ref, True
    try:
        return bs.pack(bs.Stream(h, tuple(tuple(c) for c in gops))), ref, False
    except (ValueError, BitstreamError):
        return None


def _same_context(ref: Reference, stream: bs.Stream, g: int, k: int) -> bool:
    """Whether tokens (g, k) of ``stream`` must equal the reference's: same coding header, same
    frame count in GOP g and the same chunks 1..k there (GOPs code on their own)."""
    a, b = ref.stream.header, stream.header
    return ((a.model_name, a.weights_sha256, a.grids, a.temporal, a.skip_block, a.modes, a.resize)
            == (b.model_name, b.weights_sha256, b.grids, b.temporal, b.skip_block, b.modes, b.resize)
            and g < len(ref.stream.gops) and a.gop_frames(g) == b.gop_frames(g)
            and stream.gops[g][:k + 1] == ref.stream.gops[g][:k + 1])


def check_decoder(codec: Any, d: Draws, data: bytes, ref: Reference, partial: bool = False) -> str:
    """Decode ``data``: 'decoded' or 'rejected' (BitstreamError); AssertionError on a wrong result."""
    import numpy as np
    import torch

    from progvc.coding.gop import tokens_crc

    if partial:
        try:
            frames = codec.decode(data, partial=True, fill=("mean", "sample", "none")[d.integer(0, 2)])
        except BitstreamError:
            return "rejected"
        stream = bs.unpack(data, partial=True)
        h = stream.header
        assert frames.shape == (sum(h.gop_frames(g) for g in range(len(stream.gops))), h.height, h.width, 3)
        return "decoded"
    n = None if d.integer(0, 2) else d.integer(1, codec.n_scales)
    try:
        got = codec.decode_tokens(data, n)
    except BitstreamError:
        return "rejected"
    stream = bs.unpack(data)
    h = stream.header
    assert len(got) == len(stream.gops)
    for g, (chunks, maps) in enumerate(zip(stream.gops, got, strict=True)):
        assert len(maps) == min(len(chunks), n or h.coded_scales)
        for k, r in enumerate(maps):
            assert tuple(r.shape) == (h.gop_frames(g), *h.grids[k])
            assert tokens_crc(list(r)) == chunks[k].crc_tokens, f"tokens ({g},{k}) fail their checksum"
            if _same_context(ref, stream, g, k):
                assert torch.equal(r, ref.tokens[g][k]), f"tokens ({g},{k}) differ from the encoder's"
    if d.integer(0, 3) == 0:
        try:
            fill = ("mean", "sample", "none")[d.integer(0, 2)]
            frames = codec.decode(data, n, fill=fill, seed=d.integer(0, (1 << 64) - 1))
        except BitstreamError as exc:
            raise AssertionError(f"decode refused what decode_tokens accepted: {exc}") from exc
        assert frames.shape == (h.n_frames, h.height, h.width, 3) and frames.dtype == np.uint8
    return "decoded"


# -- resource bombs: header-valid streams that ask for absurd work (issue 15) ------------------

def first_scale_stream(codec: Any, n_frames: int, gop_size: int, seed: int = 0) -> bytes:
    """A real stream of ``codec`` truncated to its first scale: 1x1 token grids, which every frame
    size shares, so its chunks stay valid (token checksums included) under any claimed size.

    Intra only: with temporal context a frame's first-scale probabilities read the previous
    frame's memory, which depends on the latent size (phi's zero padding), so later frames would
    fail their token checksums at another size."""
    from tests.helpers import smooth_clip

    data = codec.encode(smooth_clip(n_frames, 16, 16, seed=seed), gop_size=gop_size, refine=0, temporal=False)
    return truncation.truncate(data, n_scales=1)


def claim(codec: Any, data: bytes, width: int, height: int, n_frames: int | None = None) -> bytes:
    """``data`` (one GOP unit is enough) rewritten to claim frames of ``width`` x ``height``, with the
    grids ``codec`` computes for that size, and ``n_frames`` frames (whole GOPs; its first GOP unit
    repeated): header-valid, every CRC right, every chunk decodable. Laid out with bytes, not
    ``bitstream.pack``, so that a million GOPs cost milliseconds."""
    h = bs.parse_header(data)
    n_frames = h.n_frames if n_frames is None else n_frames
    grids = tuple(codec.tokenizer.grids(height, width))
    assert grids[0] == h.grids[0] and n_frames % h.gop_size == 0 and h.gop_frames(0) == h.gop_size
    start = bs.header_size(data)
    unit = data[start:start + bs.chunk_ends(bs.gop_index(data, h, start))[-1]]  # type: ignore[arg-type]
    fields = dict(VALID, name=h.model_name.encode(), sha=h.weights_sha256, width=width, height=height,
                  frames=n_frames, fps_num=h.fps.numerator, fps_den=h.fps.denominator, gop=h.gop_size,
                  coded=1, seed=h.seed, grids=grids, flags=0 if h.temporal else 1)
    return header_bytes(fields) + unit * (n_frames // h.gop_size)


def size_bomb(codec: Any) -> bytes:
    """The issue's first bomb: 2 real frames truncated to one scale, claiming 8192x8192."""
    return claim(codec, first_scale_stream(codec, 2, 2), 8192, 8192)


def length_bomb(codec: Any) -> bytes:
    """The issue's second bomb: one real GOP unit repeated, claiming 2^20 frames of 1080p."""
    return claim(codec, first_scale_stream(codec, codec.gop_size, codec.gop_size), 1920, 1080, bs.MAX_FRAMES)


def extreme_case(d: Draws, codec: Any, sources: Sequence[bytes]) -> str:
    """A header-valid stream with an extreme frame size and/or count, decoded with default limits.

    Sizes come from the format's bounds and the edges of the default limits, counts from one GOP
    to 2^20 frames. Above a limit, every decoding entry point must raise LimitError (fast, before
    any model work: 'rejected'). Within the limits, ``iter_decode`` must accept it with the right
    frame count, and its first GOP must have the right shape when it is cheap to make ('decoded').
    Accepted streams are cut to 2^12 GOPs: parsing is linear in their length (about 20 us per GOP).
    """
    from progvc.codec.limits import Limits
    from progvc.codec.streaming import Decoder
    from progvc.runtime.errors import LimitError

    limits = Limits()
    edge = math.isqrt(limits.max_frame_pixels)
    sides = [1, 2, 7, 16, 17, 255, edge - 1, edge, edge + 1, 4096, 8191, 8192]
    width, height = pick(d, sides), pick(d, sides)
    if d.integer(0, 3) == 0:  # an area right at the limit, or one pixel row above it
        width = pick(d, [1024, 2048, 4096, 8192])
        height = min(8192, limits.max_frame_pixels // width + d.integer(0, 1))
    source = pick(d, sources)
    gop = bs.parse_header(source).gop_size
    n_frames = pick(d, [1, 2, 3, 1000, 1 << 16, limits.max_pixels // (width * height), bs.MAX_FRAMES])
    n_frames = max(gop, min(n_frames, bs.MAX_FRAMES) // gop * gop)
    area = width * height
    allowed = area <= limits.max_frame_pixels and n_frames * area <= limits.max_pixels  # restated, not imported
    if allowed:
        n_frames = min(n_frames, gop << 12)
    data = claim(codec, source, width, height, n_frames)
    if not allowed:
        for call in (lambda: codec.decode(data), lambda: codec.iter_decode(data), lambda: codec.decode_tokens(data),
                     lambda: Decoder(codec).feed(data)):
            try:
                call()
            except LimitError:
                continue
            raise AssertionError(f"{width}x{height} x {n_frames} frames passed the limits")
        return "rejected"
    gops = codec.iter_decode(data, fill="none")
    assert gops.n_frames == n_frames, (gops.n_frames, n_frames)
    if gop * area <= 1 << 16:
        assert next(gops).shape == (gop, height, width, 3)
    return "decoded"


# -- the harness -------------------------------------------------------------------------------

@dataclass
class Tally:
    """Outcomes of one level; times are CPU seconds of this process (the limit) and wall seconds."""

    level: str
    outcomes: Counter
    slowest: float = 0.0
    slowest_case: int = -1
    slowest_wall: float = 0.0
    failures: int = 0

    def line(self) -> str:
        total = sum(self.outcomes.values())
        return (f"{self.level}: {total} cases, {self.outcomes['decoded']} decoded, {self.outcomes['rejected']} "
                f"refused (BitstreamError; LimitError at the extreme level), "
                f"{self.outcomes['skipped']} skipped (not constructible), "
                f"{self.failures} failures; slowest case {self.slowest * 1000:.1f} ms CPU (#{self.slowest_case}), "
                f"slowest wall {self.slowest_wall * 1000:.1f} ms")


def run_level(level: str, n: int, seed: int, case: Callable[[Draws], str], seconds: float, max_failures: int,
              only: int | None = None) -> Tally:
    tally = Tally(level, Counter())
    start = time.perf_counter()
    for i in ([only] if only is not None else range(n)):
        if time.perf_counter() - start > seconds or tally.failures >= max_failures:
            break
        t0, wall0 = time.process_time(), time.perf_counter()
        try:
            outcome = case(RandomDraws(f"{seed}:{level}:{i}"))
        except Exception:  # anything but BitstreamError (handled inside) is a finding
            tally.failures += 1
            print(f"FAIL {level}:{i} (replay: --seed {seed} --replay {level}:{i})", file=sys.stderr)
            traceback.print_exc()
            outcome = "failed"
        # The limit is on CPU time: on a shared machine (nice 19 beside a training run) wall time
        # measures the scheduler more than the decoder. Both are reported.
        elapsed, wall = time.process_time() - t0, time.perf_counter() - wall0
        tally.outcomes[outcome] += 1
        tally.slowest_wall = max(tally.slowest_wall, wall)
        if elapsed > tally.slowest:
            tally.slowest, tally.slowest_case = elapsed, i
        if elapsed > CASE_LIMIT_S and outcome != "failed":
            tally.failures += 1
            print(f"SLOW {level}:{i}: {elapsed:.2f} s CPU, {wall:.2f} s wall (replay: --seed {seed} "
                  f"--replay {level}:{i})", file=sys.stderr)
        if (i + 1) % 10000 == 0 or (level != "container" and (i + 1) % 500 == 0):
            print(f"  {tally.line()}", file=sys.stderr, flush=True)
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.harness", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000, help="container-level cases (default 10000)")
    p.add_argument("--decoder-cases", type=int, default=200, help="decoder-level cases (default 200)")
    p.add_argument("--decoder-seconds", type=float, default=math.inf, help="stop the decoder level after this")
    p.add_argument("--extreme-cases", type=int, default=10_000,
                   help="header-valid streams of extreme sizes and counts against the default limits (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-failures", type=int, default=20, help="stop a level after this many failures")
    p.add_argument("--replay", help="run one case again, e.g. container:123 or decoder:17")
    args = p.parse_args(argv)
    only_level, only = (args.replay.split(":")[0], int(args.replay.split(":")[1])) if args.replay else (None, None)

    import torch

    from progvc.codec.codec import Codec
    from progvc.models.config import tiny_config

    torch.set_num_threads(1)  # tiny tensors: threads only add scheduling noise to the timings
    codec = Codec.from_config(tiny_config(), seed=0, device="cpu")
    refs = make_references(codec)
    seeds = synthetic_streams() + [r.data for r in refs]

    def container_case(d: Draws) -> str:
        return check_container(*mutate_container(d, seeds))

    def decoder_case(d: Draws) -> str:
        made = mutate_stream(d, refs)
        return "skipped" if made is None else check_decoder(codec, d, made[0], made[1], made[2])

    extreme_sources = [first_scale_stream(codec, n, n, seed=n) for n in (1, 2, 4)]

    def extreme(d: Draws) -> str:
        return extreme_case(d, codec, extreme_sources)

    # Everything built so far (torch, the codec, the references) lives until the end: freeze it out
    # of the garbage collector. Otherwise a full collection, which walks every object of the
    # process, lands on whichever case happens to trigger it: 0.2 s per collection measured here,
    # 1.4 s on a loaded machine, charged to a case whose own work took 31 ms.
    gc.collect()
    gc.freeze()

    tallies = []
    if only_level in (None, "container"):
        tallies.append(run_level("container", args.cases, args.seed, container_case, math.inf, args.max_failures,
                                 only if only_level else None))
    if only_level in (None, "decoder"):
        tallies.append(run_level("decoder", args.decoder_cases, args.seed, decoder_case, args.decoder_seconds,
                                 args.max_failures, only if only_level else None))
    if only_level in (None, "extreme"):
        tallies.append(run_level("extreme", args.extreme_cases, args.seed, extreme, math.inf, args.max_failures,
                                 only if only_level else None))
    for t in tallies:
        print(t.line())
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 1 if any(t.failures for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
