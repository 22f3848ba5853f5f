"""The progvc container: parse, validate, truncate and describe a stream without torch.

Layout (all integers little-endian; the full description lives in ``docs/FORMAT.md``)::

    stream   = header gop*
    header   = "PGVC" version:u8 body_len:u16 body crc32(magic..body):u32
    body     = name_len:u8 name sha256[32] width:u32 height:u32 frames:u32 fps_num:u32 fps_den:u32
               gop_size:u16 n_scales:u8 coded_scales:u8 seed:u64 temperature:f32 top_k:u32 top_p:f32
               flags:u8 (rows:u16 cols:u16) * n_scales       flags bit 0: no temporal context
    gop      = n_chunks:u8 (payload_len:u32) * n_chunks crc32(n_chunks..lengths):u32 chunk*
    chunk    = crc32(tokens):u32 crc32(crc32(tokens) payload):u32 payload

Chunk ``k`` of a GOP holds the tokens of scale ``k`` of every frame of that GOP, so chunks run
coarse to fine and truncation is a byte operation: keep the first ``n`` chunks of each GOP and
rewrite the small per-GOP indexes. Every count and length is bounded before anything is
allocated, and every byte is covered by a CRC, so a flipped byte raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from fractions import Fraction

from .errors import BitstreamError, ConfigError

MAGIC = b"PGVC"
VERSION = 1
MAX_SIDE = 8192
MAX_FRAMES = 1 << 20
MAX_GOP = 256
MAX_SCALES = 32
MAX_SEED = (1 << 64) - 1

_HEAD = struct.Struct("<4sBH")
_FIXED = struct.Struct("<IIIIIHBBQfIfB")  # width .. flags
FLAG_INTRA = 1
_CHUNK = struct.Struct("<II")


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder must know before the first chunk. ``grids`` are the K latent grids."""

    model_name: str
    weights_sha256: bytes
    width: int
    height: int
    n_frames: int
    fps: Fraction
    gop_size: int
    grids: tuple[tuple[int, int], ...]
    coded_scales: int
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    temporal: bool = True

    @property
    def n_scales(self) -> int:
        return len(self.grids)

    @property
    def n_gops(self) -> int:
        return -(-self.n_frames // self.gop_size)

    def gop_frames(self, g: int) -> int:
        """Number of frames of GOP ``g`` (the last one may be short)."""
        return min(self.gop_size, self.n_frames - g * self.gop_size)


@dataclass(frozen=True)
class Chunk:
    """The range-coded tokens of one (GOP, scale) with CRCs of the tokens and of the payload."""

    crc_tokens: int
    payload: bytes

    @property
    def size(self) -> int:
        return _CHUNK.size + len(self.payload)


@dataclass(frozen=True)
class Stream:
    header: StreamHeader
    gops: tuple[tuple[Chunk, ...], ...]
    complete: bool = True


def _chunk_crc(crc_tokens: int, payload: bytes) -> int:
    """CRC of a chunk's token checksum and payload: every byte of a chunk is covered."""
    return zlib.crc32(payload, zlib.crc32(struct.pack("<I", crc_tokens)))


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise BitstreamError(f"corrupt progvc stream: {what}; re-download or re-encode the file")


def _validate_header(h: StreamHeader) -> None:
    _check(1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE,
           f"frame size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    _check(1 <= h.n_frames <= MAX_FRAMES, f"frame count {h.n_frames} outside 1..{MAX_FRAMES}")
    _check(1 <= h.gop_size <= MAX_GOP, f"GOP size {h.gop_size} outside 1..{MAX_GOP}")
    _check(1 <= h.n_scales <= MAX_SCALES, f"scale count {h.n_scales} outside 1..{MAX_SCALES}")
    _check(1 <= h.coded_scales <= h.n_scales, f"coded scales {h.coded_scales} outside 1..{h.n_scales}")
    _check(h.fps > 0, "frame rate is not positive")
    _check(len(h.weights_sha256) == 32, "weights hash is not 32 bytes")
    _check(0 < h.temperature <= 100 and 0 < h.top_p <= 1, "sampling parameters out of range")
    for r, c in h.grids:
        _check(1 <= r <= MAX_SIDE and 1 <= c <= MAX_SIDE, f"scale grid {r}x{c} out of range")


def _pack_header(h: StreamHeader) -> bytes:
    _validate_header(h)
    name = h.model_name.encode("ascii")
    body = bytes([len(name)]) + name + h.weights_sha256 + _FIXED.pack(
        h.width, h.height, h.n_frames, h.fps.numerator, h.fps.denominator, h.gop_size,
        h.n_scales, h.coded_scales, h.seed, h.temperature, h.top_k, h.top_p, 0 if h.temporal else FLAG_INTRA,
    ) + b"".join(struct.pack("<HH", r, c) for r, c in h.grids)
    head = _HEAD.pack(MAGIC, VERSION, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def _unpack_header(data: bytes | memoryview) -> tuple[StreamHeader, int]:
    if len(data) < _HEAD.size:
        raise BitstreamError(f"not a progvc stream: only {len(data)} bytes; pass a complete .pvc file")
    magic, version, body_len = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError("not a progvc stream (bad magic bytes); pass a file written by progvc.encode")
    if version != VERSION:
        raise BitstreamError(f"stream format version {version} is not supported by this progvc "
                             f"(reads version {VERSION}); upgrade progvc")
    end = _HEAD.size + body_len
    _check(len(data) >= end + 4, "header is cut short")
    _check(struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[:end]), "header checksum mismatch")
    body = bytes(data[_HEAD.size:end])
    name_len = body[0] if body else 0
    n_scales_at = 1 + name_len + 32 + _FIXED.size
    _check(len(body) >= n_scales_at, "header body too short")
    name = body[1:1 + name_len]
    _check(name.isascii() and len(name) > 0, "model name is not ASCII")
    fields = _FIXED.unpack_from(body, 1 + name_len + 32)
    w, h, t, fn, fd, gop, k, coded, seed, temp, top_k, top_p, flags = fields
    _check(flags & ~FLAG_INTRA == 0, f"unknown header flags {flags:#x}")
    _check(len(body) == n_scales_at + 4 * k, "header length does not match its scale count")
    _check(fd > 0 and fn > 0, "frame rate is zero")
    grids = tuple(struct.unpack_from("<HH", body, n_scales_at + 4 * i) for i in range(k))
    header = StreamHeader(name.decode(), body[1 + name_len:1 + name_len + 32], w, h, t, Fraction(fn, fd),
                          gop, grids, coded, seed, temp, top_k, top_p, not flags & FLAG_INTRA)
    _validate_header(header)
    return header, end + 4


def pack(stream: Stream) -> bytes:
    """Serialise a :class:`Stream`. The inverse of :func:`unpack`."""
    h = stream.header
    _validate_header(h)
    if len(stream.gops) != h.n_gops:
        raise ValueError(f"{len(stream.gops)} GOPs given, header says {h.n_gops}")
    out = [_pack_header(h)]
    for chunks in stream.gops:
        if not 1 <= len(chunks) <= h.coded_scales:
            raise ValueError(f"a GOP has {len(chunks)} chunks, expected 1..{h.coded_scales}")
        index = bytes([len(chunks)]) + b"".join(struct.pack("<I", len(c.payload)) for c in chunks)
        out += [index, struct.pack("<I", zlib.crc32(index))]
        out += [_CHUNK.pack(c.crc_tokens, _chunk_crc(c.crc_tokens, c.payload)) + c.payload for c in chunks]
    return b"".join(out)


def unpack(data: bytes | bytearray | memoryview, *, partial: bool = False) -> Stream:
    """Parse and validate a stream.

    With ``partial=True`` a prefix that ends anywhere is accepted: the result holds every complete
    chunk (``complete=False`` when some were missing), which is what a streaming decoder needs.
    Without it, a stream that is cut short raises :class:`BitstreamError`.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    header, pos = _unpack_header(view)
    min_gop = 1 + 4 + 4 + _CHUNK.size  # one chunk with an empty payload
    _check(partial or header.n_gops * min_gop <= len(view) - pos,
           f"header promises {header.n_gops} GOPs but only {len(view) - pos} bytes follow")
    gops: list[tuple[Chunk, ...]] = []
    complete = True
    for _ in range(header.n_gops):
        chunks, pos, ok = _unpack_gop(view, pos, header, partial)
        if chunks:
            gops.append(chunks)
        if not ok:
            complete = False
            break
    _check(pos == len(view) or not complete, f"{len(view) - pos} unexpected bytes after the last GOP")
    return Stream(header, tuple(gops), complete)


def _unpack_gop(view, pos: int, header: StreamHeader, partial: bool) -> tuple[tuple[Chunk, ...], int, bool]:
    """Parse one GOP unit at ``pos``; returns (chunks, new position, whether the GOP was whole)."""
    def short(what: str) -> tuple[tuple[Chunk, ...], int, bool]:
        if partial:
            return tuple(chunks), pos, False
        raise BitstreamError(f"stream is cut short inside {what}; use progvc.truncate to make smaller "
                             "streams, or decode with partial=True")

    chunks: list[Chunk] = []
    if pos >= len(view):
        return short("a GOP index")
    n = view[pos]
    _check(1 <= n <= header.coded_scales, f"GOP has {n} chunks, header allows 1..{header.coded_scales}")
    end = pos + 1 + 4 * n
    if end + 4 > len(view):
        return short("a GOP index")
    _check(struct.unpack_from("<I", view, end)[0] == zlib.crc32(view[pos:end]), "GOP index checksum mismatch")
    lengths = struct.unpack_from(f"<{n}I", view, pos + 1)
    pos = end + 4
    for length in lengths:
        stop = pos + _CHUNK.size + length
        if stop > len(view):
            if not partial:
                _check(False, f"chunk of {length} bytes runs past the end of the stream")
            return short("a chunk")
        crc_tokens, crc_payload = _CHUNK.unpack_from(view, pos)
        payload = bytes(view[pos + _CHUNK.size:stop])
        _check(_chunk_crc(crc_tokens, payload) == crc_payload, "chunk payload checksum mismatch")
        chunks.append(Chunk(crc_tokens, payload))
        pos = stop
    return tuple(chunks), pos, True


def header_size(data: bytes) -> int:
    """Bytes taken by the header of a valid stream (magic to header CRC)."""
    return _unpack_header(data)[1]


def parse_header(data: bytes) -> StreamHeader:
    """Only the header: cheap, for routing a stream to the right model."""
    return _unpack_header(data)[0]


def truncate(data: bytes, n_scales: int | None = None, max_bytes: int | None = None) -> bytes:
    """Return a valid stream that keeps the first ``n_scales`` chunks of every GOP.

    With ``max_bytes`` instead, keep the largest number of scales whose stream fits in
    ``max_bytes``. No token is re-encoded: chunks are copied byte for byte.
    """
    if (n_scales is None) == (max_bytes is None):
        raise ConfigError("truncate needs exactly one of n_scales or max_bytes")
    stream = unpack(data)
    if n_scales is not None:
        return pack(_keep(stream, n_scales))
    for n in range(stream.header.coded_scales, 0, -1):
        out = pack(_keep(stream, n))
        if len(out) <= max_bytes:  # type: ignore[operator]
            return out
    raise ConfigError(f"max_bytes={max_bytes} is below the smallest stream of one scale "
                      f"({len(pack(_keep(stream, 1)))} bytes); allow more bytes")


def _keep(stream: Stream, n: int) -> Stream:
    top = stream.header.coded_scales
    if not 1 <= n <= stream.header.n_scales:
        raise ConfigError(f"n_scales={n} is outside 1..{stream.header.n_scales}")
    n = min(n, top)
    gops = tuple(chunks[:n] for chunks in stream.gops)
    return Stream(replace(stream.header, coded_scales=n), gops)
