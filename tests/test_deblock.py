"""The deblocking filter: small steps at cell boundaries are smoothed, edges and everything away from
the boundaries are kept, and decoding applies it unless told not to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.grid_measure import grid_measure
from progvc.video.deblock import ALPHA, deblock


def blocky(seed: int = 0, step: int = 6) -> np.ndarray:
    """(2,32,40,3) uint8: a smooth ramp plus a random level per 8x8 cell (steps of up to ``step``)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 180, 40)[None, None, :, None] + np.linspace(0, 20, 32)[None, :, None, None]
    cells = rng.integers(-step, step + 1, size=(2, 4, 5, 1)).repeat(8, 1).repeat(8, 2)
    return np.clip(ramp + cells, 0, 255).astype(np.uint8).repeat(3, axis=3)


def test_small_steps_at_cell_boundaries_are_smoothed_and_the_grid_falls():
    x = blocky()
    y = deblock(torch.from_numpy(x), 8).numpy()
    assert y.dtype == np.uint8 and y.shape == x.shape
    assert grid_measure(y).score < grid_measure(x).score - 0.3
    moved = (y != x).any(axis=(0, 3))  # (H,W)
    rows, cols = (np.isin(np.arange(n) % 8, [7, 0]) for n in x.shape[1:3])  # p0 | q0
    assert moved.any() and not moved[~rows[:, None] & ~cols[None, :]].any()
    assert np.array_equal(deblock(torch.from_numpy(x), 8).numpy(), y)  # integers: the same every time


def test_edges_flat_pictures_and_small_pictures_are_kept():
    x = np.full((1, 16, 24, 3), 100, np.uint8)
    x[:, :, 8:] = 100 + ALPHA  # a step as large as alpha at a boundary is an edge of the picture
    assert np.array_equal(deblock(torch.from_numpy(x), 8).numpy(), x)
    flat = np.full((1, 16, 16, 3), 77, np.uint8)
    assert np.array_equal(deblock(torch.from_numpy(flat), 8).numpy(), flat)
    tiny = blocky()[:, :6, :7]  # less than a cell: no boundary
    assert np.array_equal(deblock(torch.from_numpy(tiny), 8).numpy(), tiny)


def test_rows_are_filtered_like_columns():
    x = blocky(seed=1)
    turned = np.ascontiguousarray(x.transpose(0, 2, 1, 3))
    a = deblock(torch.from_numpy(x), 8).numpy()
    b = deblock(torch.from_numpy(turned), 8).numpy().transpose(0, 2, 1, 3)
    # columns first, then rows: the transposed picture is filtered in the other order, so the two
    # differ only where a row and a column boundary cross
    near = np.zeros(x.shape[1:3], bool)
    near[np.isin(np.arange(32) % 8, [7, 0]), :] = True
    other = np.zeros_like(near)
    other[:, np.isin(np.arange(40) % 8, [7, 0])] = True
    assert np.array_equal(a[:, ~(near & other)], b[:, ~(near & other)])


def test_decode_deblocks_every_scale_unless_told_not_to_and_prefixes_never(tiny_codec, clip_factory):
    import progvc

    x = clip_factory(3, 24, 32)
    stream = tiny_codec.encode(x, quality=40)
    plain = tiny_codec.decode(stream, deblock=False)
    filtered = tiny_codec.decode(stream)
    expect = deblock(torch.from_numpy(plain), tiny_codec.config.tokenizer.stride).numpy()
    assert not np.array_equal(expect, plain), "the clip should have steps for the filter to smooth"
    np.testing.assert_array_equal(filtered, expect)
    cut = progvc.truncate(stream, n_scales=2)
    for fill in ("none", "sample"):
        prefix = tiny_codec.decode(cut, fill=fill)
        np.testing.assert_array_equal(prefix, tiny_codec.decode(cut, fill=fill, deblock=False))
    from progvc.codec.streaming import Decoder

    for flag in (True, False):
        dec = Decoder(tiny_codec, deblock=flag, previews=False)
        frames = np.concatenate([u.frames for u in dec.feed(stream) + dec.close() if u.final])
        np.testing.assert_array_equal(frames, filtered if flag else plain)


def test_the_command_line_turns_deblocking_off():
    from progvc.cli.commands import _options
    from progvc.cli.parser import build_parser
    from progvc.codec.options import DecodeOptions

    parser = build_parser()
    on = _options(DecodeOptions, parser.parse_args(["decode", "in.pvc", "out.y4m"]))
    off = _options(DecodeOptions, parser.parse_args(["decode", "in.pvc", "out.y4m", "--no-deblock"]))
    assert on.deblock is True and off.deblock is False


def test_the_stream_says_whether_to_deblock_and_older_headers_cannot(tiny_codec, clip_factory):
    import dataclasses

    import progvc
    from progvc.stream import format as bs

    x = clip_factory(3, 24, 32)
    asked, not_asked = tiny_codec.encode(x, quality=40), tiny_codec.encode(x, quality=40, deblock=False)
    assert bs.parse_header(asked).deblock and not bs.parse_header(not_asked).deblock
    assert asked[bs.header_length(asked):] == not_asked[bs.header_length(not_asked):]  # only the flag differs
    np.testing.assert_array_equal(tiny_codec.decode(not_asked), tiny_codec.decode(asked, deblock=False))
    assert bs.parse_header(progvc.truncate(asked, n_scales=2)).deblock  # a cut stream keeps the flag
    header = bs.parse_header(asked)
    assert bs.parse_header(bs.pack_header(header)) == header
    from tests.helpers import legacy_header

    old = dataclasses.replace(header, deblock=False)
    assert not bs.parse_header(legacy_header(old, 5)).deblock
    raw = bytearray(legacy_header(old, 5))  # set bit 7 in a version-5 header, which does not know it
    raw[len(raw) - 4 - 4 * header.n_scales - 1] |= bs.FLAG_DEBLOCK  # flags, then K grids of 4 bytes, then the CRC
    import struct
    import zlib

    raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
    with pytest.raises(progvc.BitstreamError, match="unknown header flags"):
        bs.parse_header(bytes(raw))
