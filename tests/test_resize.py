"""Coding at a reduced size (progvc.video.resize, header flag bits 4-5): the resampling itself, the
header field, and streams that decode to the input's size by every path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import progvc
from progvc.codec.streaming import Decoder
from progvc.coding.footprint import decode_estimate
from progvc.runtime.errors import BitstreamError, ConfigError
from progvc.stream import format as bs
from progvc.video.resize import downsample, upsample

from .helpers import check_updates, legacy_header, pieces, smooth_clip


def _frames(t: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(("h", "w", "f"), [(8, 12, 2), (7, 13, 2), (9, 10, 3), (5, 6, 4)])
def test_downsample_averages_blocks_with_edges_repeated(h, w, f):
    x = _frames(2, h, w, seed=h * w)
    out = downsample(x, f)
    assert out.shape == (2, -(-h // f), -(-w // f), 3) and out.dtype == torch.uint8
    padded = np.pad(x.numpy().astype(np.float64), ((0, 0), (0, -h % f), (0, -w % f), (0, 0)), mode="edge")
    blocks = padded.reshape(2, -(-h // f), f, -(-w // f), f, 3).mean(axis=(2, 4))
    assert np.array_equal(out.numpy(), np.floor(blocks + 0.5).astype(np.uint8))


def test_upsample_restores_the_size_and_keeps_flat_and_smooth_pictures():
    flat = torch.full((1, 5, 7, 3), 77, dtype=torch.uint8)
    assert torch.equal(upsample(flat, 2, 9, 13), torch.full((1, 9, 13, 3), 77, dtype=torch.uint8))
    clip = torch.from_numpy(smooth_clip(2, 32, 48, seed=1))
    back = upsample(downsample(clip, 2), 2, 32, 48)
    assert back.shape == clip.shape
    err = (back.double() - clip.double()).pow(2).mean().item()
    assert 10 * np.log10(255**2 / err) > 30  # a smooth clip survives the round trip (PSNR in dB)
    assert downsample(clip, 1) is clip and upsample(clip, 1, 32, 48) is clip


def _header(**kw) -> bs.StreamHeader:
    base = dict(model_name="m", weights_sha256=bytes(bs.WEIGHTS_ID_BYTES), width=41, height=23, n_frames=3,
                fps=Fraction(25), gop_size=2, grids=((1, 1), (2, 3)), coded_scales=2)
    return bs.StreamHeader(**{**base, **kw})


@pytest.mark.parametrize("f", bs.RESIZE_FACTORS)
def test_header_round_trips_the_factor_and_names_the_coded_size(f):
    h = _header(resize=f)
    assert bs.parse_header(bs.pack_header(h)) == h
    assert h.coded_size == (-(-41 // f), -(-23 // f))


def test_bad_factor_and_resize_bits_of_an_older_version_are_refused():
    with pytest.raises(BitstreamError, match="resize factor"):
        bs.pack_header(_header(resize=5))
    assert bs.parse_header(legacy_header(_header(resize=2), 5)).resize == 2
    with pytest.raises(BitstreamError, match="unknown header flags"):  # a version-4 stream cannot carry resize bits
        bs.parse_header(legacy_header(_header(resize=2), 4))


@pytest.fixture(scope="module")
def resized(tiny_codec):
    """5 frames of 23x41 in GOPs of 3 and 2, coded at half size."""
    clip = smooth_clip(5, 23, 41, seed=4)
    return clip, tiny_codec.encode(clip, gop_size=3, resize=2)


def test_resized_stream_decodes_to_the_input_size_and_costs_less(tiny_codec, resized):
    clip, data = resized
    h = progvc.info(data)
    assert h.resize == 2 and "coded at 21x12 (resize 2)" in str(h)
    assert bs.parse_header(data).grids == tuple(tiny_codec.tokenizer.grids(12, 21))
    full = tiny_codec.encode(clip, gop_size=3)
    assert len(data) < len(full)
    for n in (1, tiny_codec.n_scales):
        frames = tiny_codec.decode(progvc.truncate(data, n_scales=n))
        assert frames.shape == clip.shape and frames.dtype == np.uint8
    again = tiny_codec.decode(data)
    assert np.array_equal(again, tiny_codec.decode(data))
    assert tiny_codec.encode(clip, gop_size=3, resize=2) == data  # same input, same bytes


@pytest.mark.parametrize("fill", ["none", "sample"])
def test_streaming_decoder_gives_the_same_resized_frames(tiny_codec, resized, fill):
    _, data = resized
    dec = Decoder(tiny_codec, fill=fill, seed=3)
    updates = [u for piece in pieces(data, seed=2, most=40) for u in dec.feed(piece)] + dec.close()
    check_updates(tiny_codec, data, updates, fill=fill, seed=3)


@pytest.mark.parametrize("bad", [0, 5, 1.5, True, "2"])
def test_bad_resize_option_is_refused(tiny_codec, bad):
    with pytest.raises(ConfigError, match="resize must be one of"):
        tiny_codec.encode(smooth_clip(1, 8, 8), resize=bad)


def test_decode_memory_counts_output_frames_at_the_shown_size(tiny_codec):
    small = decode_estimate(tiny_codec.config, _header(width=64, height=64, grids=()), 1, output_frames=3)
    big = decode_estimate(tiny_codec.config, _header(width=128, height=128, resize=2, grids=()), 1, output_frames=3)
    assert big.output == 4 * small.output
    assert big.context == small.context  # the model works at the coded size
