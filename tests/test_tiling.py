"""Tiled g_s / g_a (progvc.models.tiling): the same numbers as the whole image, in bounded pieces."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from progvc.models import tiling
from progvc.models.config import tiny_config
from progvc.models.tokenizer import Tokenizer

from .helpers import smooth_clip


@pytest.fixture(scope="module", params=["nearest", "bilinear"])
def tok(request):
    """A tiny tokenizer, with each of the synthesis' up-sampling modes (bilinear reads one more
    input cell on each side: the measured halo must cover it)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config().tokenizer, upsample=request.param)
    t = Tokenizer(cfg).eval()
    with torch.no_grad():  # a trained-looking model: GroupNorm affine and residual branches not at identity
        for p in t.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return t


def test_tiled_synthesis_equals_the_whole_image(tok):
    y = torch.randn(2, 8, 23, 37, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = tok.g_s(y)
        for max_pixels in (40 * 40, 90 * 150):  # many small tiles, two tiles
            got = torch.cat([tiling.tiled(tok.g_s, y[i:i + 1], scale=4, norms=tok.g_s, max_pixels=max_pixels)
                             for i in range(2)])
            assert got.shape == whole.shape
            torch.testing.assert_close(got, whole, rtol=0, atol=2e-5)


def test_tiled_analysis_equals_the_whole_image_and_keeps_strided_grids_aligned(tok):
    x = torch.rand(1, 3, 92, 140, generator=torch.Generator().manual_seed(2)) * 2 - 1  # multiples of the stride
    with torch.no_grad():
        whole = tok.g_a(x)
        got = tiling.tiled(tok.g_a, x, scale=Fraction(1, 4), norms=tok.g_a, max_pixels=30 * 30)
    torch.testing.assert_close(got, whole, rtol=0, atol=2e-5)


def test_naive_tiles_would_not_do(tok):
    """The reason for the statistics passes: with each tile's own GroupNorm statistics, far from any
    seam the output moves (so a halo alone cannot fix it)."""
    y = torch.randn(1, 8, 24, 40, generator=torch.Generator().manual_seed(3))
    y[..., :, 20:] = 3 * y[..., :, 20:] + 1  # halves with different statistics, as in real frames
    with torch.no_grad():
        whole = tok.g_s(y)
        naive = torch.cat([tok.g_s(y[..., :, :20]), tok.g_s(y[..., :, 20:])], dim=-1)
        exact = tiling.tiled(tok.g_s, y, scale=4, norms=tok.g_s, max_pixels=24 * 4 * 20 * 4)
    centre = (slice(None), slice(None), slice(40, 56), slice(20, 60))  # 20+ pixels from the seam at 80
    assert (naive - whole)[centre].abs().max() > 1e-2
    assert (exact - whole).abs().max() < 2e-5


def test_receptive_radius_of_known_stacks():
    torch.manual_seed(0)
    convs = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.SiLU(), nn.Conv2d(2, 2, 5, padding=2))
    assert tiling.receptive_radius(convs, 2, Fraction(1), None, torch.device("cpu")) == 3 + 1
    up = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Upsample(scale_factor=2),
                       nn.Conv2d(4, 3, 3, padding=1))
    # one input cell feeds a 2x2 block; its outputs reach 1 cell (first conv) + 1 output pixel = 1 cell more
    assert tiling.receptive_radius(up, 2, Fraction(2), up, torch.device("cpu")) == 2 + 1


def test_norms_are_restored_even_when_fn_fails(tok):
    def broken(x):
        tok.g_s(x)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        tiling.tiled(broken, torch.zeros(1, 8, 20, 20), scale=4, norms=tok.g_s, max_pixels=16 * 16, halo=2)
    assert not any("forward" in vars(m) for m in tok.modules())
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(tok.g_s(x), tok.g_s(x))


def test_bounded_batches_small_frames_and_tiles_large_ones(tok, monkeypatch):
    calls = []
    real = tiling.tiled
    monkeypatch.setattr(tiling, "tiled", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    y = torch.randn(5, 8, 10, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = tok.g_s(y)
        batched = tiling.bounded(tok.g_s, y, scale=4, norms=tok.g_s, max_pixels=2 * 40 * 48)
        assert not calls
        torch.testing.assert_close(batched, whole, rtol=0, atol=2e-5)  # batch size moves the last bits
        small = tiling.bounded(tok.g_s, y, scale=4, norms=tok.g_s, max_pixels=20 * 24)
    assert len(calls) == 5
    torch.testing.assert_close(small, whole, rtol=0, atol=2e-5)


def test_tokenizer_frames_barely_change_when_tiled(tok, monkeypatch):
    """uint8 frames through the tokenizer with and without tiles: at most 1 apart, on few pixels, in
    float32 (the bfloat16 synthesis, tiled and whole, is held near float32 in test_shipped_model)."""
    from progvc.models import tokenizer

    monkeypatch.setattr(tokenizer, "synthesis_in_bfloat16", lambda device: False)
    frames = torch.from_numpy(smooth_clip(2, 44, 60, seed=5))
    with torch.no_grad():
        f = tok.analyse(frames)
        whole = tok.synthesise(f, 44, 60)
        tok.tile_pixels = 24 * 24
        try:
            f_tiled, got = tok.analyse(frames), tok.synthesise(f, 44, 60)
        finally:
            tok.tile_pixels = tiling.TILE_PIXELS
    torch.testing.assert_close(f_tiled, f, rtol=0, atol=2e-5)
    diff = np.abs(got.numpy().astype(int) - whole.numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_codebook_lookup_in_slices_picks_the_same_codes(tok, monkeypatch):
    """The quantiser's nearest-code search runs a slice of rows at a time (memory.LOOKUP_ENTRIES)."""
    z = torch.randn(2, 8, 30, 41, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        whole = tok.vq.lookup(z)
        monkeypatch.setattr("progvc.models.quantizer.LOOKUP_ENTRIES", 100 * tok.cfg.codebook_size)
        assert torch.equal(tok.vq.lookup(z), whole)
