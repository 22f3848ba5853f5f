"""Chunk temperatures: the encoder codes each chunk at the temperature that makes it smallest, the
GOP index carries it, and the decoder reads the same tokens back."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import progvc
from progvc.coding import temperature
from progvc.coding.entropy import ChunkDecoder, probability_table
from progvc.coding.temperature import TemperedChunkEncoder
from progvc.stream import format as bs
from progvc.stream import truncation
from progvc.stream.scales import scale_grids

from .helpers import smooth_clip


def _sharp_draw(seed: int, rows: int, tau: float, vocab: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """Logits (rows, vocab) and tokens drawn from softmax(logits / tau): what a sharper source sends."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 2
    tokens = torch.multinomial(torch.softmax(logits / tau, dim=1), 1, generator=g).squeeze(1).numpy()
    return logits, tokens


def _decode(payload: bytes, index: int, parts: list, flags: np.ndarray, flag_table: np.ndarray) -> list:
    decoder = ChunkDecoder(payload)
    out = [decoder.take(flag_table)]
    out += [decoder.take(probability_table(logits, bs.TEMPERATURES[index])) for logits, _ in parts]
    return out


@pytest.mark.parametrize("buffer_rows", [4096, 50])
def test_the_cheapest_temperature_is_chosen_and_decodes_back(buffer_rows):
    parts = [_sharp_draw(seed, 40, 0.5) for seed in range(4)]
    flags = np.array([1, 0, 1])
    flag_table = np.tile(np.array([[30000, 35536]]), (3, 1))
    sizes = {}
    for candidates in ((bs.NEUTRAL_TEMPERATURE,), temperature.CANDIDATES):
        coder = TemperedChunkEncoder(candidates, buffer_rows)
        coder.add(flags, flag_table)  # a fixed-table symbol before the tokens keeps its place
        for logits, tokens in parts:
            coder.add_logits(tokens, logits)
        payload, index = coder.finish()
        decoded = _decode(payload, index, parts, flags, flag_table)
        assert np.array_equal(decoded[0], flags)
        assert all(np.array_equal(d, t) for d, (_, t) in zip(decoded[1:], parts, strict=True))
        sizes[len(candidates)] = len(payload)
    # tokens drawn at 0.5 code best near 0.5 (decided on the first 50+ rows with the small buffer)
    assert bs.TEMPERATURES[index] in (0.4, 0.5, 0.6)
    assert sizes[len(temperature.CANDIDATES)] < 0.9 * sizes[1]


def test_a_chunk_without_tokens_keeps_temperature_one_and_choice_is_deterministic():
    coder = TemperedChunkEncoder()
    coder.add(np.array([0, 1]), np.tile(np.array([[32768, 32768]]), (2, 1)))
    assert coder.finish()[1] == bs.NEUTRAL_TEMPERATURE
    logits, tokens = _sharp_draw(7, 30, 1.0)
    runs = []
    for _ in range(2):
        coder = TemperedChunkEncoder()
        coder.add_logits(tokens, logits)
        runs.append(coder.finish())
    assert runs[0] == runs[1]


def _header(**kw) -> bs.StreamHeader:
    grids = tuple(scale_grids(3, 5, 3))
    return bs.StreamHeader("m", bytes(bs.WEIGHTS_ID_BYTES), 33, 17, 3, Fraction(25), 2, grids, 3, **kw)


def test_temperatures_travel_in_the_gop_index_and_survive_truncation():
    h = _header()
    gops = ((bs.Chunk(1, b"abcd", temperature=0), bs.Chunk(2, b"", temperature=15), bs.Chunk(3, b"x" * 8,
                                                                                             temperature=4)),
            (bs.Chunk(4, b"abcd", temperature=9),))
    data = bs.pack(bs.Stream(h, gops))
    assert bs.unpack(data).gops == gops
    assert progvc.info(data).coding_temperatures == pytest.approx((0.55, 1.6, 0.5))  # means over GOPs
    cut = bs.unpack(truncation.truncate(data, n_scales=2))
    assert [[c.temperature for c in g] for g in cut.gops] == [[0, 15], [9]]
    # the GOP index holds ceil(n/2) bytes of them: three chunks take two bytes, one chunk one byte
    assert bs.index_size([4, 0, 8]) - bs.index_size([4, 0, 8], version=6) == 2


def test_unused_temperature_bits_and_older_streams():
    h = _header()
    data = bytearray(bs.pack(bs.Stream(h, ((bs.Chunk(1, b"abcd", temperature=3),),) * 2)))
    start = bs.header_size(bytes(data))
    nibble = start + 5 + 1  # n_chunks, rd_lambda, one length byte
    assert data[nibble] == 3
    data[nibble] |= 0x50  # the unused high half of a lone chunk's byte
    struct.pack_into("<I", data, nibble + 1, zlib.crc32(bytes(data[start:nibble + 1])))
    with pytest.raises(progvc.BitstreamError, match="unused temperature bits"):
        bs.unpack(bytes(data))
    old = bs.unpack((Path(__file__).parent / "golden" / "v6-tiny-fast.pvc").read_bytes())
    assert all(c.temperature == bs.NEUTRAL_TEMPERATURE for g in old.gops for c in g)


@pytest.mark.weights
def test_the_shipped_model_codes_low_quality_chunks_sharper_and_smaller(monkeypatch):
    codec = progvc.Codec.from_pretrained(device="cpu")
    clip = smooth_clip(4, 64, 96, seed=3)
    # quality 35: at 25 progvc-small-v5 codes this small clip at its floor (170 bytes with or without
    # sharper chunks: its tokens are nearly free), where there is nothing left to save
    data = codec.encode(clip, quality=35, preset="fast")
    chosen = [bs.TEMPERATURES[c.temperature] for g in bs.unpack(data).gops for c in g]
    assert min(chosen) < 1.0
    monkeypatch.setattr(temperature, "CANDIDATES", (bs.NEUTRAL_TEMPERATURE,))
    neutral = codec.encode(clip, quality=35, preset="fast")
    assert all(c.temperature == bs.NEUTRAL_TEMPERATURE for g in bs.unpack(neutral).gops for c in g)
    assert len(data) < len(neutral)
    # the same tokens, so the same frames
    assert np.array_equal(codec.decode(data), codec.decode(neutral))
