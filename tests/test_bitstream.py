"""The container alone: byte flips, cut streams, header bounds, and no torch on this path."""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import progvc
from progvc.stream import format as bs
from progvc.stream import truncation

from .helpers import make_stream


def test_pack_unpack_round_trip():
    stream = make_stream()
    assert bs.unpack(bs.pack(stream)) == stream


def test_truncate_keeps_a_prefix_of_chunks_byte_for_byte():
    stream = make_stream()
    data = bs.pack(stream)
    small = truncation.truncate(data, n_scales=2)
    got = bs.unpack(small)
    assert got.header.coded_scales == 2
    assert got.gops == tuple(g[:2] for g in stream.gops)
    assert truncation.truncate(data, max_bytes=len(small)) == small
    # one byte short of two scales everywhere: the per-GOP budget keeps 2 chunks where they fit
    assert [len(g) for g in bs.unpack(truncation.truncate(data, max_bytes=len(small) - 1)).gops] == [2, 2, 1]
    with pytest.raises(progvc.ConfigError):
        truncation.truncate(data, max_bytes=10)
    with pytest.raises(progvc.ConfigError):
        truncation.truncate(data, n_scales=0)


def test_every_single_byte_flip_is_detected():
    data = bs.pack(make_stream(n_frames=3, gop=2, scales=2))
    for i in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(progvc.BitstreamError):
                bs.unpack(bytes(bad))


def test_cut_streams_raise_unless_partial_and_prefixes_keep_whole_chunks():
    stream = make_stream()
    data = bs.pack(stream)
    seen = 0
    for cut in range(len(data)):
        with pytest.raises(progvc.BitstreamError):
            bs.unpack(data[:cut])
        try:
            part = bs.unpack(data[:cut], partial=True)
        except progvc.BitstreamError:
            assert cut < bs.header_size(data) + 9  # not even one chunk yet
            continue
        seen += 1
        assert not part.complete
        for g, chunks in enumerate(part.gops):
            assert chunks == stream.gops[g][:len(chunks)]
    assert seen > 0
    with pytest.raises(progvc.BitstreamError, match="unexpected bytes"):
        bs.unpack(data + b"\0")


@pytest.mark.parametrize("field,value", [
    ("width", 0), ("width", bs.MAX_SIDE + 1), ("height", 1 << 31), ("n_frames", 0),
    ("n_frames", bs.MAX_FRAMES + 1), ("gop_size", 0), ("gop_size", bs.MAX_GOP + 1), ("coded_scales", 4),
    ("temperature", 0.0), ("top_p", 2.0),
])
def test_header_fields_are_bounded(field, value):
    stream = make_stream()
    with pytest.raises((progvc.BitstreamError, ValueError)):
        bs.pack(replace(stream, header=replace(stream.header, **{field: value})))


def test_huge_frame_count_with_few_bytes_is_refused_before_allocating():
    stream = make_stream(n_frames=1, gop=1, scales=1)
    data = bytearray(bs.pack(stream))
    hdr = bs.pack_header(replace(stream.header, n_frames=bs.MAX_FRAMES))
    with pytest.raises(progvc.BitstreamError, match="GOPs"):
        bs.unpack(hdr + bytes(data[len(hdr):]))


def test_wrong_magic_and_version_say_what_to_do():
    data = bs.pack(make_stream())
    with pytest.raises(progvc.BitstreamError, match="not a progvc stream"):
        bs.unpack(b"RIFF" + data[4:])
    with pytest.raises(progvc.BitstreamError, match="version 9"):
        bs.unpack(data[:4] + b"\x09" + data[5:])
    with pytest.raises(progvc.BitstreamError):
        bs.unpack(b"")


def test_info_describes_bytes_per_scale():
    stream = make_stream()
    data = bs.pack(stream)
    info = progvc.info(data)
    assert info.total_bytes == len(data)
    assert info.bytes_per_scale == tuple(stream.header.n_gops * (6 + 4 * (k + 1)) for k in range(3))  # u32 + u16 checks
    assert info.header_bytes + info.index_bytes + sum(info.bytes_per_scale) == len(data)
    assert info.fps == Fraction(30000, 1001) and info.seed == 7
    assert "33x17" in str(info) and info.to_dict()["bpp"] > 0


def test_truncate_and_info_do_not_import_torch():
    code = ("import sys, progvc; from tests.helpers import make_stream; from progvc.stream import format as bs;"
            "d = bs.pack(make_stream()); progvc.info(progvc.truncate(d, n_scales=1));"
            "assert 'torch' not in sys.modules and 'constriction' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_importing_progvc_changes_no_torch_flag():
    code = ("import torch; before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,"
            " torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype());"
            "import progvc, progvc.codec.codec, progvc.train.context_stage;"
            "assert before == (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,"
            " torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype())")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_random_bytes_never_escape_as_other_exceptions():
    rng = np.random.default_rng(0)
    good = bs.pack(make_stream())
    for i in range(300):
        data = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        if i % 2:
            data = good[: int(rng.integers(0, len(good)))] + data
        with contextlib.suppress(progvc.BitstreamError):
            bs.unpack(data)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, (1 << 32) - 1])
def test_payload_lengths_are_varints_that_round_trip(n):
    code = bs.varint(n)
    assert len(code) == max(1, -(-n.bit_length() // 7))
    assert bs._read_varint(code, 0) == (n, len(code))
    assert bs._read_varint(code[:-1], 0) is None  # cut short: wait for more bytes


@pytest.mark.parametrize("code", [b"\x80\x00", b"\xff\xff\xff\xff\xff\x01"])
def test_non_canonical_or_overlong_varints_are_refused(code):
    with pytest.raises(progvc.BitstreamError):
        bs._read_varint(code, 0)


def test_default_sampling_takes_no_header_bytes_and_other_sampling_round_trips():
    base = make_stream().header
    implied = replace(base, seed=0, temperature=0.3, top_k=16, top_p=1.0)
    small, big = bs.pack_header(implied), bs.pack_header(base)
    assert len(big) - len(small) == 20  # seed u64, temperature f32, top_k u32, top_p f32
    got = bs.parse_header(small)
    assert (got.seed, got.temperature, got.top_k, got.top_p) == bs.IMPLIED_SAMPLING
    assert bs.parse_header(big) == base
    from progvc.coding.fill import DEFAULT_SAMPLING  # the encoder's defaults are the implied ones
    assert bs.IMPLIED_SAMPLING[1:] == (np.float32(DEFAULT_SAMPLING.temperature), DEFAULT_SAMPLING.top_k,
                                       DEFAULT_SAMPLING.top_p)


def test_chunks_check_their_payload_with_16_bits_and_older_streams_with_32():
    chunk = bs.Chunk(0x12345678, b"abcd")
    data = bs.pack(bs.Stream(replace(make_stream(n_frames=1, gop=1, scales=1).header), ((chunk,),)))
    assert data[-4 - 6:-4 - 2] == struct.pack("<I", 0x12345678)  # the token CRC whole, then 2 bytes
    payload_check = zlib.crc32(b"abcd", zlib.crc32(struct.pack("<I", 0x12345678))) & 0xFFFF
    assert struct.unpack("<H", data[-6:-4])[0] == payload_check
    wide = bs.Chunk(0x12345678, b"abcd", wide=True)
    assert (chunk.size, wide.size) == (10, 12)


def test_an_older_stream_is_rewritten_in_the_current_format_by_truncate():
    golden = Path(__file__).parent / "golden" / "v5-tiny-fast.pvc"
    old = golden.read_bytes()
    stream = bs.unpack(old)
    assert stream.header.version == 5 and all(c.wide for g in stream.gops for c in g)
    new = truncation.truncate(old, n_scales=stream.header.coded_scales)
    again = bs.unpack(new)
    assert again.header.version == bs.FLOAT_VERSION and len(new) < len(old)  # a float model's stream
    assert [[c.payload for c in g] for g in again.gops] == [[c.payload for c in g] for g in stream.gops]
    assert all(c.crc_tokens == o.crc_tokens and not c.wide
               for g, h in zip(again.gops, stream.gops, strict=True) for c, o in zip(g, h, strict=True))


@pytest.mark.parametrize("name", ["v5-tiny-fast", "v5-progvc-small-v4", "v5-tiny-resize-2"])
def test_the_container_benchmark_restates_the_format_5_layout_exactly(name):
    from benchmarks.container import format5_bytes

    old = (Path(__file__).parent / "golden" / f"{name}.pvc").read_bytes()
    assert format5_bytes(bs.unpack(old)) == len(old)
    assert format5_bytes(bs.unpack(truncation.truncate(old, n_scales=2))) > len(truncation.truncate(old, n_scales=2))


@pytest.mark.parametrize("name", ["v6-tiny-fast", "v6-progvc-small-v4", "v6-tiny-resize-2"])
def test_the_container_benchmark_restates_the_format_6_layout_exactly(name):
    from benchmarks.container import format6_bytes

    old = (Path(__file__).parent / "golden" / f"{name}.pvc").read_bytes()
    assert old[4] == 6 and format6_bytes(bs.unpack(old)) == len(old)
    assert format6_bytes(bs.unpack(truncation.truncate(old, n_scales=2))) > len(truncation.truncate(old, n_scales=2))


@pytest.mark.parametrize("name", ["tiny-fast", "v6-tiny-fast", "v5-tiny-fast", "v2-tiny-fast"])
def test_info_accounts_for_every_byte_in_any_format(name):
    data = (Path(__file__).parent / "golden" / f"{name}.pvc").read_bytes()
    info = progvc.info(data)
    assert info.header_bytes + info.index_bytes + sum(info.bytes_per_scale) == info.total_bytes == len(data)
