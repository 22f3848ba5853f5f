"""Rate-distortion coding: the token decision, the quality knob, presets and old streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import progvc
from progvc.coding.options import (
    COARSE_LAMBDA_MAX_GOP,
    DEFAULT_COARSE_LAMBDA_SCALE,
    DEFAULT_QUALITY,
    default_coarse_lambda_scale,
    get_preset,
    quality_of,
    rd_lambda,
)
from progvc.coding.rd_choice import TokenChooser
from progvc.models.quantizer import resize
from progvc.stream import format as bs


def _chooser(codec, lam: float, seed: int = 0):
    """A TokenChooser over a random latent of the tiny model's 8x8 grid, with nothing coded yet."""
    gen = torch.Generator().manual_seed(seed)
    grids = codec.tokenizer.grids(32, 32)
    c = codec.config.tokenizer.latent_channels
    f = torch.randn(1, c, *grids[-1], generator=gen)
    return TokenChooser(codec.tokenizer.vq, grids, f, lam, torch.zeros_like(f)), grids


@pytest.mark.parametrize("k", [0, 3])
def test_token_decision_minimises_distortion_plus_lambda_bits(tiny_codec, k):
    """lambda = 0 is the nearest codeword, a huge lambda the model's likeliest code, and any lambda
    the exact minimiser of D + lambda * bits, row by row; the recorded bits are the chosen codes'."""
    gen = torch.Generator().manual_seed(1)
    chooser0, grids = _chooser(tiny_codec, 0.0)
    n_k, vocab = grids[k][0] * grids[k][1], tiny_codec.config.tokenizer.codebook_size
    logits = 3 * torch.randn(n_k, vocab, generator=gen)
    dist = chooser0.distortion(0, k)
    assert np.array_equal(chooser0(0, k, logits), dist.argmin(1).numpy())
    bits = -torch.log_softmax(logits, -1) / math.log(2)
    big, _ = _chooser(tiny_codec, 1e9)
    assert np.array_equal(big(0, k, logits), logits.argmax(1).numpy())
    for lam in (0.3, 3.0):
        chooser, _ = _chooser(tiny_codec, lam)
        picked = torch.from_numpy(chooser(0, k, logits))
        score = dist + lam * bits
        assert torch.equal(score.gather(1, picked[:, None])[:, 0], score.min(1).values)
        assert chooser.bits[0, k] == pytest.approx(float(bits.gather(1, picked[:, None]).sum()), rel=1e-5)


def test_lower_quality_never_costs_more(tiny_codec, clip_factory):
    """Rate falls monotonically as quality falls (that the knob spans a scale step needs a trained
    model: tests/test_shipped_model.py)."""
    x = clip_factory(4, 48, 64, seed=3)
    sizes = [len(tiny_codec.encode(x, quality=q, preset="medium")) for q in (100, 80, 60, 40, 20, 0)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0], sizes


def test_quality_maps_to_lambda_and_back_and_presets_differ():
    assert rd_lambda(100) == 0.0 and quality_of(0.0) == 100
    for q in (0, 17.5, DEFAULT_QUALITY, 99):
        assert quality_of(rd_lambda(q)) == pytest.approx(q)
    lams = [rd_lambda(q) for q in range(0, 101, 10)]
    assert lams == sorted(lams, reverse=True)
    assert get_preset("fast").refine < get_preset("medium").refine < get_preset("slow").refine
    with pytest.raises(progvc.ProgvcError, match="preset"):
        get_preset("placebo")


def test_every_gop_records_the_lambda_its_tokens_were_chosen_with(tiny_codec, clip_factory):
    """Every preset chooses tokens rate-distortion-wise (presets differ in refinement only) and the
    stream carries that lambda, which the decoder's context model is conditioned on."""
    x = clip_factory(6, 48, 64, seed=4)
    for preset in ("fast", "medium"):
        result = tiny_codec.encode_with_stats(x, quality=30, preset=preset, gop_size=4)
        assert bs.unpack(result.bitstream).rd_lambdas == pytest.approx((rd_lambda(30),) * 2, rel=1e-6)
        assert result.qualities == pytest.approx((30.0, 30.0), abs=1e-3)
        assert np.array_equal(tiny_codec.decode(result.bitstream, fill="none").shape, x.shape)
    assert bs.unpack(tiny_codec.encode(x, quality=100, preset="fast")).rd_lambdas in ((), (0.0, 0.0))


def test_later_frames_are_chosen_at_the_scaled_lambda(tiny_codec, clip_factory):
    """inter_lambda_scale multiplies the lambda of every frame after a GOP's first: the first
    frame's choices and bits are untouched, the later frames' cost less, and either stream decodes
    exactly at every truncation (each scale's token checksum holds; the decoder never learns the
    scale)."""
    gen = torch.Generator().manual_seed(2)
    grids = tiny_codec.tokenizer.grids(32, 32)
    f = torch.randn(3, tiny_codec.config.tokenizer.latent_channels, *grids[-1], generator=gen)
    chooser = TokenChooser(tiny_codec.tokenizer.vq, grids, f, 0.5, torch.zeros_like(f), inter_lambda_scale=3.0)
    assert (chooser.lam_of(0, 0), chooser.lam_of(1, 0), chooser.lam_of(2, len(grids) - 1)) == (0.5, 1.5, 1.5)
    base = clip_factory(1, 48, 64, seed=5)[0]  # every frame mirrored, shifted, its colours rotated: bits to save
    x = np.stack([np.roll(base[:, ::(-1) ** t], 13 * t, axis=1)[..., [(t + c) % 3 for c in range(3)]]
                  for t in range(4)])
    one, scaled = (tiny_codec.encode_with_stats(x, quality=60, preset="fast", inter_lambda_scale=s,
                                                coarse_lambda_scale=1) for s in (1, 8))
    assert scaled.frame_bits[0] == one.frame_bits[0]
    assert sum(scaled.frame_bits[1:]) < sum(one.frame_bits[1:])
    for n in range(1, tiny_codec.n_scales + 1):
        cut = progvc.truncate(scaled.bitstream, n_scales=n)
        assert tiny_codec.decode(cut, fill="none").shape == x.shape  # BitstreamError if a checksum fails
    for bad in (0.5, 0, 65, math.nan, True, "2"):
        with pytest.raises(progvc.ConfigError, match="inter_lambda_scale"):
            tiny_codec.encode(x, inter_lambda_scale=bad)


def test_every_scale_but_the_finest_is_chosen_at_the_coarse_lambda(tiny_codec, clip_factory):
    """coarse_lambda_scale multiplies the lambda of every scale but the finest, by its first value in
    a GOP's first frame and its second in the later frames; the finest scale keeps the frame's
    lambda, the frames it multiplies cost less, and every truncation still decodes exactly."""
    grids = tiny_codec.tokenizer.grids(32, 32)
    finest = len(grids) - 1
    f = torch.zeros(3, tiny_codec.config.tokenizer.latent_channels, *grids[-1])
    chooser = TokenChooser(tiny_codec.tokenizer.vq, grids, f, 0.5, f.clone(), inter_lambda_scale=2.0,
                           coarse_lambda_scale=(1.5, 4.0))
    assert [chooser.lam_of(0, k) for k in (0, finest - 1, finest)] == [0.75, 0.75, 0.5]
    assert [chooser.lam_of(2, k) for k in (0, finest - 1, finest)] == [4.0, 4.0, 1.0]
    base = clip_factory(1, 48, 64, seed=5)[0]
    x = np.stack([np.roll(base[:, ::(-1) ** t], 13 * t, axis=1)[..., [(t + c) % 3 for c in range(3)]]
                  for t in range(4)])  # later frames unlike the first: bits to save
    one, later, first = (tiny_codec.encode_with_stats(x, quality=60, preset="fast", coarse_lambda_scale=s)
                         for s in (1, (1, 8), (8, 1)))
    assert one.frame_bits[0] == later.frame_bits[0] and sum(later.frame_bits[1:]) < sum(one.frame_bits[1:])
    assert first.frame_bits[0] < one.frame_bits[0]
    assert sum(later.estimated_bits[:finest]) < sum(one.estimated_bits[:finest])  # what a cut stream carries
    for n in range(1, tiny_codec.n_scales + 1):
        cut = progvc.truncate(later.bitstream, n_scales=n)
        assert tiny_codec.decode(cut, fill="none").shape == x.shape  # BitstreamError if a checksum fails
    for bad in (0.5, 65, math.nan, True, "2", (1, 2, 3), (2, 0.5)):
        with pytest.raises(progvc.ConfigError, match="coarse_lambda_scale"):
            tiny_codec.encode(x, coarse_lambda_scale=bad)


def test_the_coarse_multiple_is_the_default_in_short_gops_only(tiny_codec, clip_factory):
    """GOPs of up to COARSE_LAMBDA_MAX_GOP frames use DEFAULT_COARSE_LAMBDA_SCALE, longer ones none;
    a clip shorter than its GOP counts its own frames."""
    assert default_coarse_lambda_scale(COARSE_LAMBDA_MAX_GOP) == DEFAULT_COARSE_LAMBDA_SCALE != (1.0, 1.0)
    assert default_coarse_lambda_scale(COARSE_LAMBDA_MAX_GOP + 1) == (1.0, 1.0)
    base = clip_factory(1, 48, 64, seed=5)[0]
    x = np.stack([np.roll(base[:, ::(-1) ** t], 13 * t, axis=1)[..., [(t + c) % 3 for c in range(3)]]
                  for t in range(COARSE_LAMBDA_MAX_GOP + 1)])
    short, long = x[:COARSE_LAMBDA_MAX_GOP], x
    opts = {"preset": "fast", "gop_size": 32}
    assert tiny_codec.encode(short, **opts) == tiny_codec.encode(short, coarse_lambda_scale=DEFAULT_COARSE_LAMBDA_SCALE,
                                                                 **opts)
    assert tiny_codec.encode(long, **opts) == tiny_codec.encode(long, coarse_lambda_scale=1, **opts)
    assert tiny_codec.encode(long, **opts) != tiny_codec.encode(long, coarse_lambda_scale=(8, 8), **opts)


def test_scales_below_the_split_code_the_coarse_latent(tiny_codec):
    """Prefix-aware refinement hands the chooser a second latent: the scales below ``split``
    code it, the finer ones the ordinary latent."""
    gen = torch.Generator().manual_seed(3)
    grids = tiny_codec.tokenizer.grids(32, 32)
    f = torch.randn(1, tiny_codec.config.tokenizer.latent_channels, *grids[-1], generator=gen)
    coarse = f + 1.0
    chooser = TokenChooser(tiny_codec.tokenizer.vq, grids, f, 0.5, torch.zeros_like(f), coarse=coarse, split=2)
    for k, source in ((0, coarse), (1, coarse), (2, f), (3, f)):
        expect = resize(source, grids[k]).flatten(2)[0].t()
        assert torch.equal(chooser.residual(0, k), expect), k


def test_streams_of_format_version_1_are_refused_with_what_to_do(tiny_codec, clip_factory):
    data = tiny_codec.encode(clip_factory(2, 32, 32), preset="fast")
    old = data[:4] + b"\x01" + data[5:]
    with pytest.raises(progvc.BitstreamError, match=r"version 1 was written by progvc 0\.1.*re-encode"):
        tiny_codec.decode(old)
    with pytest.raises(progvc.BitstreamError, match="version 1"):
        progvc.info(old)
