"""The container alone: byte flips, cut streams, header bounds, and no torch on this path."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

import progvc
from progvc import bitstream as bs


def make_stream(n_frames=5, gop=2, scales=3, payload=lambda g, k: bytes(4 * (k + 1))):
    header = bs.StreamHeader("m", bytes(range(32)), 33, 17, n_frames, Fraction(30000, 1001), gop,
                             tuple((k + 1, k + 2) for k in range(scales)), scales, seed=7)
    gops = tuple(tuple(bs.Chunk(g * 10 + k, payload(g, k)) for k in range(scales)) for g in range(header.n_gops))
    return bs.Stream(header, gops)


def test_pack_unpack_round_trip():
    stream = make_stream()
    assert bs.unpack(bs.pack(stream)) == stream


def test_truncate_keeps_a_prefix_of_chunks_byte_for_byte():
    stream = make_stream()
    data = bs.pack(stream)
    small = bs.truncate(data, n_scales=2)
    got = bs.unpack(small)
    assert got.header.coded_scales == 2
    assert got.gops == tuple(g[:2] for g in stream.gops)
    assert bs.truncate(data, max_bytes=len(small)) == small
    # one byte short of two scales everywhere: the per-GOP budget keeps 2 chunks where they fit
    assert [len(g) for g in bs.unpack(bs.truncate(data, max_bytes=len(small) - 1)).gops] == [2, 2, 1]
    with pytest.raises(progvc.ConfigError):
        bs.truncate(data, max_bytes=10)
    with pytest.raises(progvc.ConfigError):
        bs.truncate(data, n_scales=0)


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
    assert info.bytes_per_scale == tuple(stream.header.n_gops * (8 + 4 * (k + 1)) for k in range(3))
    assert info.header_bytes + info.index_bytes + sum(info.bytes_per_scale) == len(data)
    assert info.fps == Fraction(30000, 1001) and info.seed == 7
    assert "33x17" in str(info) and info.to_dict()["bpp"] > 0


def test_truncate_and_info_do_not_import_torch():
    code = ("import sys, progvc; from tests.test_bitstream import make_stream; from progvc import bitstream as bs;"
            "d = bs.pack(make_stream()); progvc.info(progvc.truncate(d, n_scales=1));"
            "assert 'torch' not in sys.modules and 'constriction' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_importing_progvc_changes_no_torch_flag():
    code = ("import torch; before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,"
            " torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype());"
            "import progvc, progvc.codec, progvc.train.context_stage;"
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
