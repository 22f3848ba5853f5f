"""The progvc container: pack, parse and validate a stream without torch (truncation: :mod:`.truncation`).

Layout (all integers little-endian; the full description lives in ``docs/FORMAT.md``)::

    stream   = header gop*
    header   = "PGVC" version:u8 body_len:u16 body crc32(magic..body):u32
    body     = name_len:u8 name weights_id[8] width:v height:v frames:v fps_num:v fps_den:v gop_size:v
               n_scales:u8 coded_scales:u8 flags:u8                flags bit 0: no temporal context,
               [seed:u64 temperature:f32 top_k:u32 top_p:f32]     bits 1-2: block skip side (0, 1, 2, 4),
               rows:v cols:v                                       bit 3: context-mode flags,
                                                                   bits 4-5: resize factor (1, 2, 3, 4),
                                                                   bit 6: the sampling fields are there
               (v: an unsigned LEB128 varint; without flag bit 6 the sampling fields are IMPLIED_SAMPLING;
               weights_id: the first 8 bytes of the weights' sha256; rows x cols: the finest scale's
               grid, from which progvc.stream.scales.scale_grids gives all n_scales grids)
    gop      = n_chunks:u8 rd_lambda:f32 (payload_len:varint) * n_chunks temperatures crc32(n_chunks..):u32 chunk*
    temperatures = ceil(n_chunks / 2) bytes: chunk i's temperature index (into TEMPERATURES) in the
               low (i even) or high (i odd) 4 bits of byte i // 2; the unused high bits are 0
    chunk    = crc32(tokens):u32 crc16(crc32(tokens) payload):u16 payload     (crc16: low half of CRC-32)

    (version 6: the whole sha256[32], every scale's grid, (rows:v cols:v) * n_scales, and no
    temperatures: every chunk is coded at temperature 1;
    versions 2-5 as version 6, but the body's v fields are width..fps_den:u32 gop_size:u16, rows and cols u16, the
    sampling fields always follow coded_scales and come before the flags; payload_len:u32, and
    chunk = crc32(tokens):u32 crc32(crc32(tokens) payload):u32 payload)

Chunk ``k`` of a GOP holds the tokens of scale ``k`` of every frame of that GOP, so chunks run
coarse to fine and truncation is a byte operation: keep the first ``n`` chunks of each GOP and
rewrite the small per-GOP indexes. ``rd_lambda`` is the rate-distortion multiplier the encoder
chose the GOP's tokens with (:mod:`progvc.coding.rd_choice`); the context model is told it, so it is part of
every GOP's probabilities (and a rate-controlled stream may give each GOP its own).
Every count and length is bounded before anything is
allocated, and every byte is covered by a CRC, so a flipped byte raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from ..runtime.errors import BitstreamError
from .scales import scale_grids

MAGIC = b"PGVC"
VERSION = 8
READABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8)
PORTABLE_VERSION = 8
FLOAT_VERSION = 7
"""Version 8 is version 7 made by a portable context model (:mod:`progvc.models.portable`): its
probabilities are exact integers, so it decodes on any machine. :func:`pack` writes 8 for a
portable header and 7 for one of a float model, whose streams decode where they were made.
Version 6 is version 7 with the whole weights hash and every scale's grid in the header
(``_FULL_HEADERS``), version 5 is version 6 with 32-bit chunk checks and lengths (``_WIDE_CHUNKS``), version 4 is
version 5 without resizing (flag bits 4-5 zero), version 3 is version 4 without context-mode flags
(flag bit 3 zero), version 2 is version 3 without block skip (flag bits 1-2 zero): all still read.
:func:`pack` writes version 6, so truncating an older stream also makes it smaller."""
_WIDE_CHUNKS = 5  # the last version whose chunks carry u32 checks and whose indexes carry u32 lengths
_FULL_HEADERS = 6  # the last version whose header carries the whole sha256 and every scale's grid
# (and whose GOP indexes carry no chunk temperatures)
TEMPERATURES = tuple((i + 1) / 10 for i in range(16))
"""The temperatures a chunk's tokens may be coded at (:mod:`progvc.coding.temperature`), by the 4-bit index
the GOP index carries (version 7): 0.1 .. 1.6."""
NEUTRAL_TEMPERATURE = 9
"""Index of temperature 1.0, the context model's own distribution: the temperature of every chunk
of a stream before version 7."""
WEIGHTS_ID_BYTES = 8
"""Bytes of the weights' sha256 a version-7 header carries (its first ones): what tells one model's
streams from another's; a chance match of two models is one in 2^64. Versions 2-6 carry all 32."""
OLD_VERSIONS = {1: "progvc 0.1 (models progvc-small-v1..v3)"}
MAX_SIDE = 8192
MAX_FRAMES = 1 << 20
MAX_GOP = 256
MAX_SCALES = 32
MAX_SEED = (1 << 64) - 1
MAX_NAME = 64
MAX_LAMBDA = 1e6

_HEAD = struct.Struct("<4sBH")
_FIXED = struct.Struct("<IIIIIHBBQfIfB")  # width .. flags, versions 2-5
_SAMPLING = struct.Struct("<QfIf")  # seed, temperature, top_k, top_p
_MAX_U32 = (1 << 32) - 1
FLAG_INTRA = 1
SKIP_BLOCKS = (0, 1, 2, 4)
"""Block sides of inter-frame block skip (:mod:`progvc.coding.skip`) the header can signal, by the value
of flag bits 1-2; 0: no skip flags."""
_SKIP_SHIFT = 1
FLAG_MODES = 8
"""Header flag bit 3: every (frame after a GOP's first, scale) block starts with its context-mode
flag (:mod:`progvc.coding.context_modes`); only with temporal context."""
RESIZE_FACTORS = (1, 2, 3, 4)
"""Factors by which a stream's frames may be coded smaller than they are shown (:mod:`progvc.video.resize`),
by the value of flag bits 4-5; 1: coded at their own size."""
_RESIZE_SHIFT = 4
FLAG_SAMPLING = 64
"""Header flag bit 6 (version 6): the sampling fields follow the flags. Without it they are
:data:`IMPLIED_SAMPLING`, the encoder's defaults, and take no bytes."""
FLAG_DEBLOCK = 128
"""Header flag bit 7 (versions 7 and 8, progvc 0.4.2): the decoder deblocks the GOPs it decodes from
every scale (:mod:`progvc.video.deblock`). Without it a stream decodes to the synthesis' pictures, as
every stream before it did; an older decoder refuses a stream with it ("unknown header flags")."""
IMPLIED_SAMPLING = (0, struct.unpack("<f", struct.pack("<f", 0.3))[0], 16, 1.0)
"""(seed, temperature, top_k, top_p) of a version-6 header without flag bit 6 (the temperature as
the f32 it is stored as): ``progvc.coding.fill.DEFAULT_SAMPLING`` with seed 0."""


def coded_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) of a ``width x height`` frame coded at ``1/resize`` of its size, rounded up."""
    return -(-width // resize), -(-height // resize)


_CHUNK = struct.Struct("<IH")
_WIDE_CHUNK = struct.Struct("<II")  # versions <= _WIDE_CHUNKS
_GOP_HEAD = struct.Struct("<Bf")  # n_chunks, rd_lambda
_MAX_VARINT = 5  # bytes of a varint at most (< 2**35; header fields are then checked <= 2**32 - 1)


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder must know before the first chunk. ``grids`` are the K latent grids;
    ``weights_sha256`` is the sha256 of the weights that made the stream, or its first
    :data:`WEIGHTS_ID_BYTES` bytes (what version 7 stores; :func:`pack` writes those whatever it is
    given); ``version`` is the format version the stream was read from (it sets the layout of its
    GOP units); 0, the default, stands for the one :func:`pack` writes: :data:`PORTABLE_VERSION` if
    ``portable`` (the stream's model computes in exact integers), else :data:`FLOAT_VERSION`.
    ``deblock``: the decoder deblocks the GOPs it decodes from every scale (:data:`FLAG_DEBLOCK`)."""

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
    skip_block: int = 0
    modes: bool = False
    resize: int = 1
    version: int = 0
    portable: bool = False
    deblock: bool = False

    def __post_init__(self) -> None:
        if self.version == 0:
            object.__setattr__(self, "version", PORTABLE_VERSION if self.portable else FLOAT_VERSION)

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the pictures the tokens describe (:func:`coded_size`); the decoder
        scales them back to ``width x height``."""
        return coded_size(self.width, self.height, self.resize)

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
    """The range-coded tokens of one (GOP, scale) with the CRC-32 of its tokens. The payload's own
    check is made when the chunk is packed and verified when it is read: the low 16 bits of a
    CRC-32 (``wide``: read from a version 2-5 stream, whose chunks carry all 32).

    Why the tokens keep 32 bits and the payload 16: the token check is the end-to-end guarantee
    that a decode is exact (a stream decoded where its probabilities differ, e.g. on another kind
    of device, may differ in a few tokens of one scale, which nothing else would catch); the
    payload check only refuses a corrupt chunk before it is decoded, and a corrupt chunk that
    passes it (1 in 65,536) is still caught by its tokens' check. ``temperature``: the index into
    :data:`TEMPERATURES` of the temperature its tokens were coded at (carried by the GOP index)."""

    crc_tokens: int
    payload: bytes
    wide: bool = False
    temperature: int = NEUTRAL_TEMPERATURE

    @property
    def size(self) -> int:
        """Bytes of the chunk in its stream (checks and payload)."""
        return (_WIDE_CHUNK if self.wide else _CHUNK).size + len(self.payload)


@dataclass(frozen=True)
class Stream:
    """A parsed stream: ``gops[g]`` is GOP g's chunks, coarse first; ``rd_lambdas[g]`` the
    encoder's lambda for GOP g (empty: 0.0 for every GOP); ``index_bytes``: what the GOP indexes
    took in the bytes it was read from (0 for a stream not read from bytes; not compared)."""

    header: StreamHeader
    gops: tuple[tuple[Chunk, ...], ...]
    complete: bool = True
    rd_lambdas: tuple[float, ...] = ()
    index_bytes: int = field(default=0, compare=False)

    def rd_lambda(self, g: int) -> float:
        return self.rd_lambdas[g] if self.rd_lambdas else 0.0


class GopIndex(NamedTuple):
    """What a GOP index says: the lambda its tokens were chosen with, each chunk's payload length,
    and the bytes the index itself takes (count to CRC); ``wide``: its chunks are laid out as in
    versions 2-5 (u32 checks)."""

    rd_lambda: float
    lengths: tuple[int, ...]
    size: int
    wide: bool = False
    temperatures: tuple[int, ...] = ()
    """Each chunk's temperature index; empty before version 7 (every chunk at temperature 1)."""

    @property
    def chunk_head(self) -> int:
        """Bytes before each chunk's payload (its checks)."""
        return (_WIDE_CHUNK if self.wide else _CHUNK).size


def varint(n: int) -> bytes:
    """LEB128: 7 bits per byte, low first, high bit set on all but the last."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _read_varint(view: bytes | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the varint at ``view[pos:]``; None if it is cut short."""
    value = 0
    for i in range(_MAX_VARINT):
        if pos + i >= len(view):
            return None
        byte = view[pos + i]
        value |= (byte & 0x7F) << 7 * i
        if not byte & 0x80:
            _check(byte or i == 0, "a varint has a redundant zero byte")
            return value, pos + i + 1
    raise BitstreamError(f"corrupt progvc stream: a varint longer than {_MAX_VARINT} bytes; "
                         "re-download or re-encode the file")


def index_size(lengths: Sequence[int], version: int = VERSION) -> int:
    """Bytes of the GOP index of chunks with these payload lengths in format ``version``: count,
    rd_lambda, lengths (varints; u32 in versions 2-5), temperatures (version 7), CRC."""
    if version <= _WIDE_CHUNKS:
        return _GOP_HEAD.size + 4 * len(lengths) + 4
    nibbles = (len(lengths) + 1) // 2 if version > _FULL_HEADERS else 0
    return _GOP_HEAD.size + sum(len(varint(n)) for n in lengths) + nibbles + 4


def _pack_temperatures(indices: Sequence[int]) -> bytes:
    """Two 4-bit temperature indices per byte, the even chunk's in the low bits."""
    return bytes(indices[i] | (indices[i + 1] << 4 if i + 1 < len(indices) else 0) for i in range(0, len(indices), 2))


def _chunk_crc(crc_tokens: int, payload: bytes, wide: bool = False) -> int:
    """Check of a chunk's token CRC and payload, so that every byte of a chunk is covered: the low
    16 bits of their CRC-32 (all 32 for ``wide`` chunks)."""
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", crc_tokens)))
    return crc if wide else crc & 0xFFFF


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise BitstreamError(f"corrupt progvc stream: {what}; re-download or re-encode the file")


def _validate_header(h: StreamHeader) -> None:
    _check(1 <= len(h.model_name) <= MAX_NAME and h.model_name.isascii(),
           f"model name of {len(h.model_name)} characters outside 1..{MAX_NAME} ASCII")
    _check(1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE,
           f"frame size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    _check(1 <= h.n_frames <= MAX_FRAMES, f"frame count {h.n_frames} outside 1..{MAX_FRAMES}")
    _check(1 <= h.gop_size <= MAX_GOP, f"GOP size {h.gop_size} outside 1..{MAX_GOP}")
    _check(1 <= h.n_scales <= MAX_SCALES, f"scale count {h.n_scales} outside 1..{MAX_SCALES}")
    _check(1 <= h.coded_scales <= h.n_scales, f"coded scales {h.coded_scales} outside 1..{h.n_scales}")
    _check(h.fps > 0, "frame rate is not positive")
    _check(h.fps.numerator <= _MAX_U32 and h.fps.denominator <= _MAX_U32, "frame rate terms above 2^32 - 1")
    _check(len(h.weights_sha256) in (WEIGHTS_ID_BYTES, 32), f"weights hash is not {WEIGHTS_ID_BYTES} or 32 bytes")
    _check(h.skip_block in SKIP_BLOCKS and (h.temporal or not h.skip_block),
           f"block skip side {h.skip_block} not one of {SKIP_BLOCKS} (0 without temporal context)")
    _check(h.temporal or not h.modes, "context-mode flags without temporal context")
    _check(h.resize in RESIZE_FACTORS, f"resize factor {h.resize} not one of {RESIZE_FACTORS}")
    _check(0 < h.temperature <= 100 and 0 < h.top_p <= 1, "sampling parameters out of range")
    for r, c in h.grids:
        _check(1 <= r <= MAX_SIDE and 1 <= c <= MAX_SIDE, f"scale grid {r}x{c} out of range")


def pack_header(h: StreamHeader) -> bytes:
    """The header's bytes (magic to CRC) in version :data:`VERSION`, validated.

    Version 7 writes only the finest grid, so the grids must be the ones :func:`scale_grids` gives
    for it (every progvc model's are); a header whose grids are not raises :class:`BitstreamError`.
    """
    _validate_header(h)
    _check(list(h.grids) == scale_grids(*h.grids[-1], h.n_scales),
           "scale grids that do not follow progvc's schedule (progvc.stream.scales.scale_grids)")
    name = h.model_name.encode("ascii")
    sampling = _SAMPLING.unpack(_SAMPLING.pack(h.seed, h.temperature, h.top_k, h.top_p))  # as stored
    explicit = sampling != IMPLIED_SAMPLING
    flags = ((0 if h.temporal else FLAG_INTRA) | SKIP_BLOCKS.index(h.skip_block) << _SKIP_SHIFT
             | (FLAG_MODES if h.modes else 0) | RESIZE_FACTORS.index(h.resize) << _RESIZE_SHIFT
             | (FLAG_SAMPLING if explicit else 0) | (FLAG_DEBLOCK if h.deblock else 0))
    body = (bytes([len(name)]) + name + h.weights_sha256[:WEIGHTS_ID_BYTES]
            + b"".join(varint(v) for v in (h.width, h.height, h.n_frames, h.fps.numerator, h.fps.denominator,
                                           h.gop_size))
            + bytes([h.n_scales, h.coded_scales, flags]) + (_SAMPLING.pack(*sampling) if explicit else b"")
            + varint(h.grids[-1][0]) + varint(h.grids[-1][1]))
    head = _HEAD.pack(MAGIC, PORTABLE_VERSION if h.portable else FLOAT_VERSION, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def _as_bytes(data: object) -> bytes | memoryview:
    """``data`` as bytes or a flat byte view; anything that is not a bytes-like object is refused."""
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError as exc:
        hint = " (read the file first: pathlib.Path(p).read_bytes())" if isinstance(data, str) else ""
        raise BitstreamError(f"a progvc stream is bytes, got {type(data).__name__}{hint}") from exc


def header_length(prefix: bytes | bytearray | memoryview) -> int | None:
    """Bytes the header takes (magic to header CRC), read from any prefix of a stream.

    None while the prefix is too short to tell (fewer than 7 bytes). Bad magic bytes raise
    :class:`BitstreamError` as soon as the prefix shows them, a foreign version once it is in;
    nothing else is checked (:func:`parse_header` does that once the whole header is in).
    """
    view = _as_bytes(prefix)
    if bytes(view[:len(MAGIC)]) != MAGIC[:min(len(view), len(MAGIC))]:
        raise BitstreamError("not a progvc stream (bad magic bytes); pass a file written by progvc.encode")
    if len(view) < _HEAD.size:
        return None
    _, version, body_len = _HEAD.unpack_from(view, 0)
    if version in OLD_VERSIONS:
        raise BitstreamError(f"stream format version {version} was written by {OLD_VERSIONS[version]}; this "
                             f"progvc reads versions {READABLE_VERSIONS[0]}..{VERSION} only: re-encode the video, "
                             "or decode the stream with the progvc release that made it")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"stream format version {version} is not supported by this progvc "
                             f"(reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade progvc")
    return _HEAD.size + body_len + 4


def _unpack_header(data: bytes | memoryview) -> tuple[StreamHeader, int]:
    data = _as_bytes(data)
    if len(data) < _HEAD.size:
        raise BitstreamError(f"not a progvc stream: only {len(data)} bytes; pass a complete .pvc file")
    end = header_length(data) - 4  # type: ignore[operator]  # not None: 7 bytes are in
    _check(len(data) >= end + 4, "header is cut short")
    _check(struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[:end]), "header checksum mismatch")
    body = bytes(data[_HEAD.size:end])
    _, version, _ = _HEAD.unpack_from(data, 0)
    name_len = body[0] if body else 0
    sha_len = 32 if version <= _FULL_HEADERS else WEIGHTS_ID_BYTES
    _check(len(body) >= 1 + name_len + sha_len, "header body too short")
    name = body[1:1 + name_len]
    _check(name.isascii() and len(name) > 0, "model name is not ASCII")
    sha = body[1 + name_len:1 + name_len + sha_len]
    pos = 1 + name_len + sha_len
    w, h, t, fn, fd, gop, coded, (seed, temp, top_k, top_p), flags, grids = (
        _read_body_v5(body, pos) if version <= _WIDE_CHUNKS else _read_body_v6(body, pos, version > _FULL_HEADERS))
    known = (FLAG_INTRA | (3 << _SKIP_SHIFT if version >= 3 else 0) | (FLAG_MODES if version >= 4 else 0)
             | (3 << _RESIZE_SHIFT if version >= 5 else 0) | (FLAG_SAMPLING if version >= 6 else 0)
             | (FLAG_DEBLOCK if version >= FLOAT_VERSION else 0))
    _check(flags & ~known == 0, f"unknown header flags {flags:#x}")
    _check(fd > 0 and fn > 0, "frame rate is zero")
    header = StreamHeader(name.decode(), sha, w, h, t, Fraction(fn, fd), gop, grids, coded, seed, temp, top_k,
                          top_p, not flags & FLAG_INTRA, SKIP_BLOCKS[flags >> _SKIP_SHIFT & 3],
                          bool(flags & FLAG_MODES), RESIZE_FACTORS[flags >> _RESIZE_SHIFT & 3], version,
                          version >= PORTABLE_VERSION, bool(flags & FLAG_DEBLOCK))
    _validate_header(header)
    return header, end + 4


def _read_body_v5(body: bytes, pos: int) -> tuple:
    """The fields after the weights hash, laid out as versions 2-5 do (fixed widths)."""
    _check(len(body) >= pos + _FIXED.size, "header body too short")
    w, h, t, fn, fd, gop, k, coded, seed, temp, top_k, top_p, flags = _FIXED.unpack_from(body, pos)
    pos += _FIXED.size
    _check(len(body) == pos + 4 * k, "header length does not match its scale count")
    grids = tuple(struct.unpack_from("<HH", body, pos + 4 * i) for i in range(k))
    return w, h, t, fn, fd, gop, coded, (seed, temp, top_k, top_p), flags, grids


def _read_body_v6(body: bytes, pos: int, finest_only: bool) -> tuple:
    """The fields after the weights hash, laid out as versions 6 and 7 do (varints, optional
    sampling); ``finest_only`` (version 7): only the finest grid is written, the others follow
    from it by :func:`scale_grids`."""
    def v() -> int:
        nonlocal pos
        got = _read_varint(body, pos)
        _check(got is not None, "header body too short")
        value, pos = got  # type: ignore[misc]
        _check(value <= _MAX_U32, f"header field {value} above 2^32 - 1")
        return value

    w, h, t, fn, fd, gop = (v() for _ in range(6))
    _check(len(body) >= pos + 3, "header body too short")
    k, coded, flags = body[pos:pos + 3]
    pos += 3
    sampling = IMPLIED_SAMPLING
    if flags & FLAG_SAMPLING:
        _check(len(body) >= pos + _SAMPLING.size, "header body too short")
        sampling = _SAMPLING.unpack_from(body, pos)
        pos += _SAMPLING.size
    if finest_only:
        rows, cols = v(), v()
        _check(1 <= k <= MAX_SCALES, f"scale count {k} outside 1..{MAX_SCALES}")
        _check(1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE, f"scale grid {rows}x{cols} out of range")
        grids = tuple(scale_grids(rows, cols, k))
    else:
        grids = tuple((v(), v()) for _ in range(k))
    _check(pos == len(body), "header length does not match its scale count")
    return w, h, t, fn, fd, gop, coded, sampling, flags, grids


def pack(stream: Stream) -> bytes:
    """Serialise a :class:`Stream`. The inverse of :func:`unpack`."""
    h = stream.header
    _validate_header(h)
    if len(stream.gops) != h.n_gops:
        raise ValueError(f"{len(stream.gops)} GOPs given, header says {h.n_gops}")
    if stream.rd_lambdas and len(stream.rd_lambdas) != len(stream.gops):
        raise ValueError(f"{len(stream.rd_lambdas)} lambdas given for {len(stream.gops)} GOPs")
    out = [pack_header(h)]
    for g, chunks in enumerate(stream.gops):
        if not 1 <= len(chunks) <= h.coded_scales:
            raise ValueError(f"a GOP has {len(chunks)} chunks, expected 1..{h.coded_scales}")
        lam = stream.rd_lambda(g)
        if not 0 <= lam <= MAX_LAMBDA:
            raise ValueError(f"rd_lambda {lam} of GOP {g} outside 0..{MAX_LAMBDA}")
        if not all(0 <= c.temperature < len(TEMPERATURES) for c in chunks):
            raise ValueError(f"a chunk temperature index outside 0..{len(TEMPERATURES) - 1}")
        index = (_GOP_HEAD.pack(len(chunks), lam) + b"".join(varint(len(c.payload)) for c in chunks)
                 + _pack_temperatures([c.temperature for c in chunks]))
        out += [index, struct.pack("<I", zlib.crc32(index))]
        out += [_CHUNK.pack(c.crc_tokens, _chunk_crc(c.crc_tokens, c.payload)) + c.payload for c in chunks]
    return b"".join(out)


def unpack(data: bytes | bytearray | memoryview, *, partial: bool = False) -> Stream:
    """Parse and validate a stream.

    With ``partial=True`` a prefix that ends anywhere is accepted: the result holds every complete
    chunk (``complete=False`` when some were missing), which is what a streaming decoder needs.
    Without it, a stream that is cut short raises :class:`BitstreamError`.
    """
    view = _as_bytes(data)
    header, pos = _unpack_header(view)
    min_gop = index_size([0], header.version) + _CHUNK.size  # one chunk with an empty payload
    _check(partial or header.n_gops * min_gop <= len(view) - pos,
           f"header promises {header.n_gops} GOPs but only {len(view) - pos} bytes follow")
    gops: list[tuple[Chunk, ...]] = []
    lambdas: list[float] = []
    index_bytes = 0
    complete = True
    for _ in range(header.n_gops):
        chunks, lam, end, ok = read_gop(view, header, pos, partial=partial)
        index_bytes += end - pos - sum(c.size for c in chunks)  # 0 while the index is not in
        pos = end
        if chunks:
            gops.append(chunks)
            lambdas.append(lam)
        if not ok:
            complete = False
            break
    _check(pos == len(view) or not complete, f"{len(view) - pos} unexpected bytes after the last GOP")
    return Stream(header, tuple(gops), complete, tuple(lambdas) if any(lambdas) else (),  # () is all zeros
                  index_bytes)


def gop_index(prefix: bytes | bytearray | memoryview, header: StreamHeader, pos: int = 0) -> GopIndex | None:
    """The GOP index at ``prefix[pos:]``: its rd_lambda, the payload lengths of its chunks and its size.

    None while the index is incomplete. The chunk count is checked against ``header`` as soon as
    its byte is in, the index CRC and the lambda's range once the whole index is; each raises
    :class:`BitstreamError`. The chunks themselves are not looked at (:func:`read_gop` does that).
    """
    view = _as_bytes(prefix)
    if pos >= len(view):
        return None
    n = view[pos]
    _check(1 <= n <= header.coded_scales, f"GOP has {n} chunks, header allows 1..{header.coded_scales}")
    end, wide = pos + _GOP_HEAD.size, header.version <= _WIDE_CHUNKS
    if wide:
        end += 4 * n
        if end > len(view):
            return None
        lengths = struct.unpack_from(f"<{n}I", view, pos + _GOP_HEAD.size)
    else:
        read = []
        for _ in range(n):
            got = _read_varint(view, end)
            if got is None:
                return None
            length, end = got
            read.append(length)
        lengths = tuple(read)
    packed = b""
    if header.version > _FULL_HEADERS:  # the chunks' temperature indices, two to a byte
        packed = bytes(view[end:end + (n + 1) // 2])
        end += (n + 1) // 2
    if end + 4 > len(view):
        return None
    _check(struct.unpack_from("<I", view, end)[0] == zlib.crc32(view[pos:end]), "GOP index checksum mismatch")
    temperatures = tuple(packed[i // 2] >> 4 * (i % 2) & 15 for i in range(n)) if packed else ()
    _check(not packed or not n % 2 or packed[-1] >> 4 == 0, "unused temperature bits are set")
    lam = _GOP_HEAD.unpack_from(view, pos)[1]
    _check(0 <= lam <= MAX_LAMBDA, f"GOP rd_lambda {lam} outside 0..{MAX_LAMBDA}")
    return GopIndex(lam, lengths, end + 4 - pos, wide, temperatures)


def chunk_ends(index: GopIndex) -> list[int]:
    """Where each chunk of a GOP unit ends, in bytes from the start of the unit (index included)."""
    ends, pos = [], index.size
    for length in index.lengths:
        pos += index.chunk_head + length
        ends.append(pos)
    return ends


def read_gop(data: bytes | bytearray | memoryview, header: StreamHeader, pos: int = 0, *,
             partial: bool = False) -> tuple[tuple[Chunk, ...], float, int, bool]:
    """Parse and validate the GOP unit at ``data[pos:]``: (chunks, rd_lambda, position after them,
    whole?).

    With ``partial=True`` a unit cut short returns the chunks that are complete and ``False``;
    without it, it raises :class:`BitstreamError`, as does any failed check.
    """
    view = _as_bytes(data)
    chunks: list[Chunk] = []
    lam = 0.0

    def short(what: str) -> tuple[tuple[Chunk, ...], float, int, bool]:
        if partial:
            return tuple(chunks), lam, pos, False
        raise BitstreamError(f"stream is cut short inside {what}; use progvc.truncate to make smaller "
                             "streams, or decode with partial=True")

    index = gop_index(view, header, pos)
    if index is None:
        return short("a GOP index")
    lam, wide = index.rd_lambda, index.wide
    temperatures = index.temperatures or (NEUTRAL_TEMPERATURE,) * len(index.lengths)
    head = _WIDE_CHUNK if wide else _CHUNK
    pos += index.size
    for length, temperature in zip(index.lengths, temperatures, strict=True):
        stop = pos + head.size + length
        if stop > len(view):
            if not partial:
                _check(False, f"chunk of {length} bytes runs past the end of the stream")
            return short("a chunk")
        crc_tokens, crc_payload = head.unpack_from(view, pos)
        payload = bytes(view[pos + head.size:stop])
        _check(_chunk_crc(crc_tokens, payload, wide) == crc_payload, "chunk payload checksum mismatch")
        chunks.append(Chunk(crc_tokens, payload, wide, temperature))
        pos = stop
    return tuple(chunks), lam, pos, True


def header_size(data: bytes) -> int:
    """Bytes taken by the header of a valid stream (magic to header CRC)."""
    return _unpack_header(data)[1]


def parse_header(data: bytes) -> StreamHeader:
    """Only the header: cheap, for routing a stream to the right model."""
    return _unpack_header(data)[0]


def gop_costs(chunks: tuple[Chunk, ...]) -> list[int]:
    """Bytes of a GOP unit that keeps its first n chunks, for n = 1..len(chunks) (increasing), as
    :func:`pack` writes it (the current version, whatever version the chunks were read from)."""
    costs, total = [], 0
    for n, c in enumerate(chunks, 1):
        total += _CHUNK.size + len(c.payload)
        costs.append(index_size([len(d.payload) for d in chunks[:n]]) + total)
    return costs
