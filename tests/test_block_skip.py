"""Block skip: the block layout, the flag model's decisions and coding, and streams that use it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import progvc
from progvc.coding.adaptive import FLAG_TOTAL
from progvc.coding.entropy import ChunkDecoder, ChunkEncoder
from progvc.coding.skip import FlagModel, layout
from progvc.stream import format as bs

from .helpers import legacy_header, smooth_clip


def test_blocks_tile_the_grid_row_major_with_their_neighbours():
    lay = layout(5, 7, 4)  # 2 x 2 blocks, the right and bottom ones cut short
    grid = lay.block.reshape(5, 7)
    assert lay.n == 4
    assert (grid[:4, :4] == 0).all() and (grid[:4, 4:] == 1).all() and (grid[4:, :4] == 2).all()
    assert (grid[4:, 4:] == 3).all()
    assert lay.left.tolist() == [-1, 0, -1, 2] and lay.up.tolist() == [-1, -1, 0, 1]
    assert layout(1, 1, 8).n == 1


def test_flag_decisions_are_the_cheaper_side_and_decode_back():
    """Each flag picks the smaller of J_skip and J_code plus lambda times its own cost under the
    adaptive model; the flags range-code and decode back with the same tables."""
    rng = np.random.default_rng(0)
    lay = layout(12, 16, 2)
    j_skip, j_code = rng.exponential(5.0, lay.n), rng.exponential(5.0, lay.n)
    j_skip[:20] = 0.0  # a run of free copies: the model learns to expect skips
    lam = 2.0
    flags, tables, bits = FlagModel().decide(j_skip, j_code, lam, lay)
    cost = -np.log2(tables / FLAG_TOTAL)
    assert np.array_equal(flags, j_skip + lam * cost[:, 1] <= j_code + lam * cost[:, 0])
    assert bits == pytest.approx(cost[np.arange(lay.n), flags.astype(int)].sum())
    assert cost[19, 1] < 0.3  # after many skips a skip is cheap
    coder = ChunkEncoder()
    coder.add(flags.astype(np.int64), tables)
    assert np.array_equal(FlagModel().read(ChunkDecoder(coder.finish()), lay), flags)


def test_a_repeated_frame_costs_almost_nothing_and_decodes_to_the_same_picture(tiny_codec):
    still = np.repeat(smooth_clip(1, 48, 64, seed=2), 4, axis=0)
    skip = tiny_codec.encode_with_stats(still, quality=50, preset="fast", skip_block=4)
    plain = tiny_codec.encode_with_stats(still, quality=50, preset="fast", skip_block=0)
    bits, plain_bits = np.array(skip.frame_bits), np.array(plain.frame_bits)
    assert bits[0] == pytest.approx(plain_bits[0])  # the first frame has nothing to copy
    assert bits[1:].max() < 0.05 * bits[0] < plain_bits[1:].min()
    # payloads grow in 4-byte words, and at its best chunk temperature (progvc.coding.temperature) the plain
    # stream codes the repeated tokens cheaply too: the skip stream is no larger
    assert len(skip.bitstream) <= len(plain.bitstream)
    frames = tiny_codec.decode(skip.bitstream, fill="none")
    assert all(np.array_equal(f, frames[0]) for f in frames[1:])


def test_streams_say_their_block_side_and_truncate_exactly(tiny_codec, clip_factory):
    x = clip_factory(5, 48, 64, seed=5)
    data = tiny_codec.encode(x, quality=40, preset="fast", skip_block=2, gop_size=3)
    assert bs.parse_header(data).skip_block == 2
    full = tiny_codec.decode_tokens(data)
    for n in range(1, progvc.info(data).coded_scales):
        cut = tiny_codec.decode_tokens(progvc.truncate(data, n_scales=n))
        for gop_full, gop_cut in zip(full, cut, strict=True):
            assert len(gop_cut) == n and all(a.equal(b) for a, b in zip(gop_full[:n], gop_cut, strict=True))
    intra = tiny_codec.encode(x, preset="fast", temporal=False)
    assert bs.parse_header(intra).skip_block == 0  # no previous frame to copy from


@pytest.mark.parametrize("side", [3, 8, -1, True, "4"])
def test_a_block_side_the_format_cannot_signal_is_refused(tiny_codec, clip_factory, side):
    with pytest.raises(progvc.ConfigError, match="skip_block must be one of 0, 1, 2, 4"):
        tiny_codec.encode(clip_factory(2, 32, 32), skip_block=side)


def test_skip_bits_in_a_version_2_header_are_refused(tiny_codec, clip_factory):
    """Version 2 is version 3 without block skip: its streams still parse, unless they claim skip."""
    data = tiny_codec.encode(clip_factory(2, 32, 32), preset="fast", skip_block=0)
    header = dataclasses.replace(bs.parse_header(data), modes=False, deblock=False)  # a header version 2 can say
    assert bs.parse_header(legacy_header(header, 2)) == dataclasses.replace(
        header, version=2, weights_sha256=header.weights_sha256.ljust(32, b"\0"))  # version 2 holds 32 bytes
    claims_skip = legacy_header(dataclasses.replace(header, skip_block=4), 2)
    with pytest.raises(progvc.BitstreamError, match="unknown header flags"):
        bs.parse_header(claims_skip)
