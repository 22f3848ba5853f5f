"""fill="sample" keeps the sent scales' picture and adds the finest band of a draw (progvc.coding.fill.add_detail)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import progvc
from progvc.coding import fill as fill_mod
from progvc.coding import gop as gop_coding
from progvc.coding.footprint import decode_estimate


def _frames(seed: int, shape: tuple[int, ...] = (2, 23, 31, 3)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def test_a_flat_draw_adds_nothing_and_a_draw_equal_to_the_base_keeps_its_low_band():
    base, draw = _frames(1), _frames(2)
    flat = torch.full_like(draw, 77)
    assert torch.equal(fill_mod.add_detail(base, flat), base)
    smooth = fill_mod.add_detail(torch.full_like(base, 128), draw).float() - 128
    assert abs(float(smooth.mean())) < 1.0, "the band has no DC"
    assert float(smooth.std()) > 20, "a noise draw is all band"


def test_strips_give_the_frame_filtered_whole(monkeypatch):
    base, draw = _frames(3, (2, 37, 29, 3)), _frames(4, (2, 37, 29, 3))
    whole = fill_mod.add_detail(base, draw)
    monkeypatch.setattr(fill_mod, "STRIP_PIXELS", 29 * 5)  # strips of 5 rows: halos cross every seam
    assert torch.equal(fill_mod.add_detail(base, draw), whole)


def test_frames_smaller_than_the_filter_keep_the_base_and_shapes_must_match():
    base, draw = _frames(5, (1, 3, 40, 3)), _frames(6, (1, 3, 40, 3))
    assert torch.equal(fill_mod.add_detail(base, draw), base)
    with pytest.raises(ValueError, match="differ in shape"):
        fill_mod.add_detail(base, draw[:, :, :30])


def test_sample_is_the_sent_scales_picture_plus_the_band_of_a_draw(tiny_codec, clip_factory, monkeypatch):
    full = tiny_codec.encode(clip_factory(3, 40, 56, seed=7))
    data = progvc.truncate(full, n_scales=2)
    seen = []
    real = gop_coding.add_detail

    def spy(base, draw):
        seen.append((base.clone(), draw.clone()))
        return real(base, draw)

    monkeypatch.setattr(gop_coding, "add_detail", spy)
    sampled = tiny_codec.decode(data, fill="sample", seed=3, deblock=False)  # the synthesis' pictures as they are
    assert len(seen) == 1
    base, draw = seen[0]
    assert np.array_equal(base.numpy(), tiny_codec.decode(data, fill="none", deblock=False)), \
        "the base is the sent scales' picture"
    assert not torch.equal(draw, base), "the draw fills the missing scales"
    assert np.array_equal(sampled, real(base, draw).numpy())
    assert np.array_equal(tiny_codec.decode(full, fill="sample"), tiny_codec.decode(full))
    assert len(seen) == 1, "nothing is missing from a full stream: no band is added"


def test_the_memory_estimate_counts_the_second_picture_of_sample(tiny_codec):
    data = tiny_codec.encode(np.zeros((3, 40, 56, 3), np.uint8))
    header = progvc.stream.format.parse_header(data)
    none = decode_estimate(tiny_codec.config, header, tiny_codec.n_scales)
    sample = decode_estimate(tiny_codec.config, header, tiny_codec.n_scales, fill="sample")
    width, height = header.coded_size
    assert sample.frames - none.frames == 3 * 3 * width * height
    assert sample.context > none.context


def _whole_row_draw(logits: torch.Tensor, opts: fill_mod.SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """sample_tokens as it was written before the top-k columns were taken apart: top-k on whole
    float64 rows, then the same draw."""
    z = logits.numpy().astype(np.float64) / opts.temperature
    if 0 < opts.top_k < z.shape[1]:
        kth = np.partition(z, -opts.top_k, axis=1)[:, -opts.top_k, None]
        z = np.where(z < kth, -np.inf, z)
    return fill_mod.draw_rows(z, opts.top_p, rng)


@pytest.mark.parametrize("opts", [fill_mod.DEFAULT_SAMPLING, fill_mod.SamplingOptions(1.0, 0, 1.0),
                                  fill_mod.SamplingOptions(0.5, 900, 0.97), fill_mod.SamplingOptions(0.7, 3, 0.6)])
def test_top_k_columns_draw_the_tokens_whole_rows_draw(opts):
    """The compact top-k path (exactly k kept per row) and the whole-row path (ties at the k-th
    logit: integer logits tie often) draw what whole rows would, from the same generator."""
    gen = torch.Generator().manual_seed(11)
    smooth = torch.randn(300, 1024, generator=gen) * 4
    tied = torch.randint(0, 6, (300, 1024), generator=gen).float()
    for logits in (smooth, tied):
        got = fill_mod.sample_tokens(logits, opts, np.random.default_rng(5))
        assert np.array_equal(got, _whole_row_draw(logits, opts, np.random.default_rng(5)))
