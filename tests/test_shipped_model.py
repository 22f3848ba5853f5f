"""The shipped default model: loads offline with its hash checked, and codes a real clip exactly."""

from __future__ import annotations

import pytest
import torch

import progvc
from progvc.video.io import read_video
from progvc.weights import load_manifest, weights_dir
from tests.helpers import shared_clip

pytestmark = [pytest.mark.weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def shipped():
    if not (weights_dir() / "manifest.json").exists():
        pytest.skip("progvc/weights/manifest.json is absent")
    return progvc.Codec.from_pretrained(device="cpu")


def test_default_model_is_the_manifest_default_and_hash_checked(shipped):
    manifest = load_manifest(weights_dir())
    assert shipped.config.name == manifest["default"]
    assert shipped.weights_sha256.hex() == manifest["models"][manifest["default"]]["sha256"]


@pytest.mark.shared
def test_shipped_model_round_trips_a_real_clip_exactly(shipped):
    clip = read_video(shared_clip("carphone"), max_frames=3)
    data = shipped.encode(clip.frames, fps=clip.fps)
    sent, got = shipped.tokenize(clip.frames), shipped.decode_tokens(data)
    assert all(torch.equal(a, b) for ga, gb in zip(sent, got, strict=True) for a, b in zip(ga, gb, strict=True))
    frames = progvc.decode(progvc.truncate(data, n_scales=5), seed=1, device="cpu")
    assert frames.shape == clip.frames.shape
    info = progvc.info(data)
    assert info.model_name == shipped.config.name and info.n_frames == 3


def test_encoder_refinement_beats_the_greedy_tokenizer_and_keeps_the_stream_format(shipped):
    """``refine`` moves the latent toward a better *quantised* reconstruction: on a natural-looking
    synthetic clip the shipped model gains clearly over greedy tokens, and the unchanged decoder
    reads back exactly the refined tokens."""
    from progvc.bench.metrics import psnr
    from progvc.video.samples import sample_clip

    clip = sample_clip(2, 64, 96, seed=3).frames
    greedy = shipped.decode(shipped.encode(clip, refine=0))
    data = shipped.encode(clip, refine=10)
    refined = shipped.decode(data)
    assert psnr(clip, refined) > psnr(clip, greedy) + 0.3
    sent, got = shipped.tokenize(clip, refine=10), shipped.decode_tokens(data)
    assert all(torch.equal(a, b) for ga, gb in zip(sent, got, strict=True) for a, b in zip(ga, gb, strict=True))
    assert shipped.encode(clip, refine=10) == data  # same input, same bytes
    with pytest.raises(progvc.ConfigError, match="refine"):
        shipped.encode(clip, refine=-1)


def test_quality_spans_more_than_a_scale_step_with_monotone_rate(shipped):
    """The quality knob fills the gaps truncation leaves: from quality 100 down to 0 the rate falls
    monotonically and reaches below the stream cut by one scale (measured on dev: benchmarks/README.md).
    The lowest qualities may meet at the floor, the fewest bytes the model spends on a clip (v5 reaches
    it at quality 20 on this one); above it every step of the knob changes the rate."""
    from progvc.video.samples import sample_clip

    x = sample_clip(4, 64, 96, seed=3).frames
    sizes = [len(shipped.encode(x, quality=q, preset="fast")) for q in (100, 80, 60, 40, 20, 0)]
    floor = sizes.index(sizes[-1])
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes[:floor + 1])) == floor + 1, sizes
    assert floor >= len(sizes) - 2, sizes  # at most the two lowest qualities at the floor
    one_less = len(progvc.truncate(shipped.encode(x, quality=100, preset="fast"), n_scales=shipped.n_scales - 1))
    assert sizes[-1] < one_less < sizes[0], (sizes, one_less)


def test_prefix_refinement_improves_truncated_pictures_at_little_cost_to_the_full_one(shipped):
    """``prefix_refine`` chooses the coarse scales on a latent refined for the pictures of
    truncated streams too: on a natural-looking synthetic clip the prefixes it aims at decode
    closer to the source, the full picture stays within 0.3 dB (dev: benchmarks/README.md), and
    every truncation decodes exactly (its token checksums hold)."""
    from progvc.bench.metrics import psnr
    from progvc.video.samples import sample_clip

    clip = sample_clip(2, 64, 96, seed=3).frames
    plain = shipped.encode(clip, refine=3, prefix_refine=0)
    aware = shipped.encode(clip, refine=3, prefix_refine=3)
    k = shipped.n_scales

    def quality(data, n):
        return psnr(clip, shipped.decode(progvc.truncate(data, n_scales=n), fill="none"))

    assert quality(aware, k - 4) > quality(plain, k - 4) + 0.1
    assert quality(aware, k - 2) > quality(plain, k - 2)
    assert quality(aware, k) > quality(plain, k) - 0.3
    with pytest.raises(progvc.ConfigError, match="prefix_refine"):
        shipped.encode(clip, prefix_refine=-1)


@pytest.mark.parametrize("tile_pixels", [None, 4096])
def test_the_bfloat16_synthesis_is_the_float32_picture_within_a_few_levels(shipped, monkeypatch, tile_pixels):
    """The decoder's synthesis in bfloat16 (where the CPU computes it natively; forced here, on any CPU)
    against float32: the same stream, pictures a few levels apart at most (on the ten dev clips: at
    most 4, mean 0.09-0.26; benchmarks.decode_precision), PSNR the same to a hundredth of a dB; also
    in tiles (a frame above ``tile_pixels``), and for a prefix. The tiled case runs only where bfloat16
    is native: emulated (an AVX2 CPU, which the decoder never asks for bfloat16) it took 283 s of the
    suite, against 8 s whole."""
    import numpy as np

    from progvc.bench.metrics import psnr
    from progvc.models import tokenizer
    from progvc.video.samples import sample_clip

    if tile_pixels and not tokenizer.synthesis_in_bfloat16(torch.device("cpu")):
        pytest.skip("bfloat16 is emulated on this CPU (no AVX-512 BF16 or AMX), so its decoder synthesises in "
                    "float32; the tiled bfloat16 picture is checked where bfloat16 is native")
    x = sample_clip(2, 96, 128, seed=4).frames
    data = shipped.encode(x, preset="fast")
    if tile_pixels:
        monkeypatch.setattr(shipped.tokenizer, "tile_pixels", tile_pixels)
    for stream in (data, progvc.truncate(data, n_scales=7)):
        pictures = {}
        for bf16 in (False, True):
            monkeypatch.setattr(tokenizer, "synthesis_in_bfloat16", lambda device, on=bf16: on)
            pictures[bf16] = shipped.decode(stream, fill="none")
        diff = np.abs(pictures[True].astype(int) - pictures[False])
        assert diff.max() <= 6 and diff.mean() < 0.25, (diff.max(), diff.mean())
        assert abs(psnr(x, pictures[True]) - psnr(x, pictures[False])) < 0.01
