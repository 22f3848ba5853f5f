"""Rate control: byte and bpp budgets shared among GOPs, per-GOP scale counts, ``encode(bpp=...)``."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import progvc
from progvc.stream import format as bs
from progvc.stream import truncation


def make_stream(frames=9, gop=4, scales=4, size=lambda g, k: 8 * (k + 1) ** 2):
    """A model-free stream; chunk (g, k) has a payload of ``size(g, k)`` bytes."""
    header = bs.StreamHeader("m", bytes(32), 64, 48, frames, Fraction(25), gop,
                             tuple((k + 1, k + 1) for k in range(scales)), scales)
    gops = tuple(tuple(bs.Chunk(g * 100 + k, bytes([g]) * size(g, k)) for k in range(scales))
                 for g in range(header.n_gops))
    return bs.pack(bs.Stream(header, gops))


def counts(data: bytes) -> list[int]:
    return [len(chunks) for chunks in bs.unpack(data).gops]


def smallest(data: bytes) -> int:
    return len(truncation.truncate(data, n_scales=1))


def test_every_budget_is_respected_and_chunks_are_byte_prefixes():
    rng = np.random.default_rng(0)
    data = make_stream(frames=11, gop=3, size=lambda g, k: int(rng.integers(0, 300)))
    full = bs.unpack(data)
    low = smallest(data)
    for budget in range(low, len(data) + 40, 7):
        out = truncation.truncate(data, max_bytes=budget)
        assert len(out) <= budget
        got = bs.unpack(out)
        assert got.header.coded_scales == max(counts(out))
        assert all(chunks == full.gops[g][:len(chunks)] for g, chunks in enumerate(got.gops))
        assert truncation.truncate(out, max_bytes=budget) == out
    assert truncation.truncate(data, max_bytes=len(data)) == data
    assert counts(truncation.truncate(data, max_bytes=low)) == [1] * full.header.n_gops
    with pytest.raises(progvc.ConfigError, match=f"{low} bytes"):
        truncation.truncate(data, max_bytes=low - 1)


def test_budget_is_shared_by_frame_count_and_savings_carry_forward():
    # GOP 1 is expensive, GOPs 0 and 2 cheap: the budget it gets depends on what GOP 0 left over
    data = make_stream(frames=12, gop=4, size=lambda g, k: (60 if g == 1 else 6) * (k + 1) ** 2)
    header_bytes = bs.header_size(data)
    per_gop = [len(bs.pack(bs.Stream(bs.unpack(data).header, (chunks,) * 3))) - header_bytes
               for chunks in bs.unpack(data).gops]  # bytes of a stream of three copies of one GOP
    share = 3 * 640 // 3
    out = truncation.truncate(data, max_bytes=header_bytes + 3 * 640)
    kept = counts(out)
    assert kept[0] == 4 and kept[1] < 4 and len(set(kept)) > 1
    # GOP 1 alone, with only its own share, keeps fewer scales than with GOP 0's savings
    alone = truncation.truncate(make_stream(frames=4, gop=4, size=lambda g, k: 60 * (k + 1) ** 2),
                        max_bytes=header_bytes + share)
    assert counts(alone)[0] < kept[1], (per_gop, kept)


def test_short_last_gop_gets_a_smaller_share():
    data = make_stream(frames=9, gop=4, size=lambda g, k: 40 * (k + 1))  # GOPs of 4, 4 and 1 frames
    kept = counts(truncation.truncate(data, max_bytes=len(truncation.truncate(data, n_scales=2)) + 60))
    assert kept[2] <= kept[0], kept


def test_bpp_is_a_byte_budget_over_the_pixels():
    data = make_stream()
    pixels = 64 * 48 * 9
    for budget in (smallest(data), 700, len(data) - 5, len(data)):
        assert truncation.truncate(data, bpp=8 * budget / pixels) == truncation.truncate(data, max_bytes=budget)
    assert truncation.truncate(data, bpp=progvc.info(data).bpp) == data


@pytest.mark.parametrize("kwargs", [{}, {"n_scales": 1, "max_bytes": 10**6}, {"max_bytes": 10**6, "bpp": 1.0},
                                    {"max_bytes": 0}, {"max_bytes": 2.5}, {"max_bytes": True}, {"bpp": -1},
                                    {"bpp": float("nan")}, {"bpp": float("inf")}, {"n_scales": 0},
                                    {"n_scales": 5}, {"n_scales": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(progvc.ConfigError):
        truncation.truncate(make_stream(), **kwargs)


def test_uneven_stream_decodes_each_gop_at_its_own_scale_count(tiny_codec, clip_factory):
    x = clip_factory(6, 16, 24, seed=4)
    data = tiny_codec.encode(x, gop_size=4)
    budgets = (progvc.truncate(data, max_bytes=b) for b in range(smallest(data), len(data), 3))
    uneven = next(d for d in budgets if len(set(counts(d))) > 1)
    assert progvc.info(uneven).coded_scales == max(counts(uneven))
    for fill in ("mean", "sample", "none"):
        got = tiny_codec.decode(uneven, fill=fill, seed=1)
        refs = {n: tiny_codec.decode(data, n, fill=fill, seed=1) for n in set(counts(uneven))}
        for g, n in enumerate(counts(uneven)):
            assert np.array_equal(got[4 * g:4 * g + 4], refs[n][4 * g:4 * g + 4]), (g, n, fill)


@pytest.mark.slow
def test_encode_with_bpp_lands_within_ten_percent_below_the_target(tiny_codec, clip_factory):
    x = clip_factory(6, 32, 48, seed=6)
    full = tiny_codec.encode_with_stats(x, quality=100)
    low = tiny_codec.encode_with_stats(x, quality=0)
    for bpp in (0.6 * low.bpp + 0.4 * full.bpp, 0.2 * low.bpp + 0.8 * full.bpp, full.bpp * 2):
        res = tiny_codec.encode_with_stats(x, bpp=bpp, resize=1)  # the search itself, at one size
        assert res.bpp <= bpp and tiny_codec.encode(x, bpp=bpp, resize=1) == res.bitstream
        assert res.bpp >= 0.9 * min(bpp, full.bpp), (bpp, res.bpp)
        assert tiny_codec.decode(res.bitstream).shape == x.shape
    below = 0.5 * low.bpp  # reachable only by dropping scales
    res = tiny_codec.encode_with_stats(x, bpp=below, resize=1)
    assert res.bpp <= below and max(counts(res.bitstream)) < tiny_codec.n_scales
    with pytest.raises(progvc.ConfigError, match="not both"):
        tiny_codec.encode(x, 2, bpp=0.5)
    with pytest.raises(progvc.ConfigError, match="smallest"):
        tiny_codec.encode(x, bpp=1e-4)


def _sse(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.square(a.astype(np.int64) - b).sum())


@pytest.mark.slow
def test_bpp_without_resize_keeps_the_size_that_decodes_closer(tiny_codec, clip_factory):
    """Every size of AUTO_RESIZE is coded to the budget; the stream kept is the one whose decode
    has the least squared error against the source."""
    from progvc.coding.options import AUTO_RESIZE

    assert AUTO_RESIZE[0] == 1
    x = clip_factory(5, 32, 48, seed=8)
    low, high = (tiny_codec.encode_with_stats(x, quality=q, resize=1).bpp for q in (0, 100))
    chosen = set()
    for bpp in (0.5 * low, low, 0.5 * (low + high), 2 * high):
        got = tiny_codec.encode_with_stats(x, bpp=bpp)
        streams = [tiny_codec.encode(x, bpp=bpp, resize=f) for f in AUTO_RESIZE]
        errors = [_sse(x, tiny_codec.decode(data)) for data in streams]
        assert got.bitstream == streams[int(np.argmin(errors))] and got.bpp <= bpp, bpp
        assert got.bitstream == tiny_codec.encode(x, bpp=bpp)  # same input, same bytes
        chosen.add(progvc.info(got.bitstream).resize)
    assert chosen == {1, 2}  # half size at the two lowest budgets, full size at the two highest


def test_module_level_encode_with_bpp(tmp_path, monkeypatch, clip_factory):
    from progvc.codec.codec import Codec

    from .helpers import ship_tiny_model

    ship_tiny_model(tmp_path, monkeypatch, name="tiny-rate", file="t.safetensors")
    monkeypatch.setattr(progvc, "_default", {})
    x = clip_factory(4, 16, 16)
    codec = Codec.from_file(tmp_path / "t.safetensors", device="cpu")
    full = codec.encode(x)
    bpp = 0.8 * progvc.info(full).bpp
    data = progvc.encode(x, bpp=bpp, device="cpu")
    assert data == codec.encode(x, bpp=bpp) and progvc.info(data).bpp <= bpp
