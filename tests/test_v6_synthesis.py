"""Issue 30 (v6 leg): a synthesis grown by zero-initialised residual blocks starts as the one it
grew from, so the tokens (and the context model trained on them) stay valid; the grid loss is the
training twin of the bench's grid measure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from progvc.codec.codec import Codec, CodecModel
from progvc.models.autoencoder import ResBlock, SynthesisTransform, load_into_grown
from progvc.models.config import tiny_config
from progvc.train import synthesis_stage
from progvc.train.grid_loss import grid_loss, phase_profile
from progvc.weights import parse_weights, save_weights
from tests.helpers import make_cache, smooth_clip


def test_grown_synthesis_decodes_what_it_grew_from():
    cfg = tiny_config().tokenizer
    torch.manual_seed(0)
    small = SynthesisTransform(cfg)
    for p in small.parameters():  # trained-looking weights: every residual block does something
        p.data.normal_(0, 0.1)
    grown = SynthesisTransform(dataclasses.replace(cfg, synthesis_extra_blocks=2))
    load_into_grown(grown, small)
    blocks = [m for m in grown.net if isinstance(m, ResBlock)]
    assert len(blocks) == sum(isinstance(m, ResBlock) for m in small.net) + 2 * 2  # 2 per level, 2 levels below full
    y = torch.randn(2, cfg.latent_channels, 5, 7)
    with torch.no_grad():
        assert torch.equal(grown(y), small(y))
    with pytest.raises(ValueError, match="differ"):
        load_into_grown(small, grown)


def test_synthesis_stage_grows_the_synthesis_and_keeps_the_stream(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(name="progvc-base")
    model = CodecModel(cfg)
    for p in model.tokenizer.g_s.parameters():
        p.data.normal_(0, 0.05)
    base = tmp_path / "base.safetensors"
    save_weights(base, model.state_dict(), cfg)
    out = tmp_path / "grown"
    args = ["--weights", str(base), "--cache", str(make_cache(tmp_path / "cache")), "--out", str(out), "--batch", "2",
            "--crop", "32", "--device", "cpu", "--film", "false", "--extra-blocks", "1", "--name", "progvc-grown"]
    synthesis_stage.train(synthesis_stage.parse_args(args + ["--steps", "0"]))
    grown_cfg, _ = parse_weights((out / "model.safetensors").read_bytes(), "grown")
    assert grown_cfg.tokenizer.synthesis_extra_blocks == 1 and grown_cfg.name == "progvc-grown"
    before, after = Codec.from_file(base, device="cpu"), Codec.from_file(out / "model.safetensors", device="cpu")
    x = smooth_clip(3, 20, 28)
    a, b = before.encode(x, quality=60), after.encode(x, quality=60)
    np.testing.assert_array_equal(after.decode(b), before.decode(a))  # untrained extra blocks add nothing
    trained = tmp_path / "trained"  # one step with the grid loss on: the grown blocks move
    synthesis_stage.train(synthesis_stage.parse_args(
        [a if a != str(out) else str(trained) for a in args] + ["--steps", "1", "--w-grid", "1", "--lr", "1e-2",
                                                                 "--warmup", "0"]))
    moved = Codec.from_file(trained / "model.safetensors", device="cpu")
    assert moved.decode(moved.encode(x, quality=60)).shape == x.shape
    assert moved.model.tokenizer.g_s.net[3].body[-1].weight.abs().sum() > 0  # an extra block, zero before
    with pytest.raises(ValueError, match="shrink"):
        synthesis_stage.train(synthesis_stage.parse_args(
            ["--weights", str(out / "model.safetensors"), "--out", str(tmp_path / "again"), "--extra-blocks", "0",
             "--film", "false", "--device", "cpu", "--steps", "0"]))


def test_phase_profile_is_the_grid_measures_and_the_loss_sees_only_a_lattice():
    from benchmarks.grid_measure import phase_means

    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).numpy()
    for b in range(2):
        rs, rc = phase_means(luma[b:b + 1], 1)
        cs, cc = phase_means(luma[b:b + 1], 2)
        np.testing.assert_allclose(phase_profile(x)[b].numpy(), (rs + cs) / (rc + cc), rtol=1e-5)
    assert grid_loss(x, x) == 0 and grid_loss(0.5 * x, x) < 1e-10  # sharpness alone is not a grid
    lattice = x.clone()
    lattice[..., 7::8] += 0.3  # a bright row and column every 8 pixels
    lattice[..., 7::8, :] += 0.3
    assert grid_loss(lattice, x) > 100 * grid_loss(x + 0.01 * torch.randn_like(x), x)
    with pytest.raises(ValueError, match="multiple"):
        phase_profile(x[..., :20])


def test_grown_analysis_analyses_what_it_grew_from():
    from progvc.models.autoencoder import AnalysisTransform

    cfg = tiny_config().tokenizer
    torch.manual_seed(1)
    small = AnalysisTransform(cfg)
    for p in small.parameters():
        p.data.normal_(0, 0.1)
    grown = AnalysisTransform(dataclasses.replace(cfg, analysis_extra_blocks=1))
    load_into_grown(grown, small)
    assert sum(isinstance(m, ResBlock) for m in grown.net) == sum(isinstance(m, ResBlock) for m in small.net) + 2
    x = torch.rand(2, 3, 12, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(grown(x), small(x))
    with pytest.raises(ValueError, match="cannot grow"):
        load_into_grown(SynthesisTransform(cfg), small)


def test_tokenizer_stage_grows_both_transforms_from_a_weights_file(tmp_path):
    from progvc.train import tokenizer_stage

    torch.manual_seed(2)
    cfg = tiny_config(name="progvc-base")
    model = CodecModel(cfg)
    for p in [*model.tokenizer.g_a.parameters(), *model.tokenizer.g_s.parameters()]:
        p.data.normal_(0, 0.05)
    base = tmp_path / "base.safetensors"
    save_weights(base, model.state_dict(), cfg)
    args = ["--cache", str(make_cache(tmp_path / "cache")), "--preset", "tiny", "--batch", "2", "--crop", "32",
            "--w-adv", "0", "--device", "cpu", "--seed", "0", "--upsample", "nearest", "--init-from", str(base),
            "--extra-blocks", "1", "--analysis-extra-blocks", "1"]
    out = tmp_path / "grown"
    tokenizer_stage.train(tokenizer_stage.parse_args(args + ["--out", str(out), "--steps", "0"]))
    grown_cfg, state = parse_weights((out / "tokenizer.safetensors").read_bytes(), "grown")
    assert (grown_cfg.tokenizer.synthesis_extra_blocks, grown_cfg.tokenizer.analysis_extra_blocks) == (1, 1)
    from progvc.models.tokenizer import Tokenizer

    grown = Tokenizer(grown_cfg.tokenizer)
    grown.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
    frames = torch.from_numpy(smooth_clip(2, 16, 24))
    with torch.no_grad():  # untrained extra blocks: the same latent and the same decode
        f = model.tokenizer.analyse(frames)
        assert torch.equal(grown.analyse(frames), f)
        assert torch.equal(grown.g_s(f), model.tokenizer.g_s(f))
    trained = tmp_path / "trained"  # two steps with the grid loss on: an extra block of g_a moves
    tokenizer_stage.train(tokenizer_stage.parse_args(args + ["--out", str(trained), "--steps", "2", "--w-grid", "1",
                                                             "--lr", "1e-2", "--warmup", "0"]))
    _, moved = parse_weights((trained / "tokenizer.safetensors").read_bytes(), "trained")
    assert moved["tokenizer.g_a.net.3.body.5.weight"].abs().sum() > 0  # level 1's extra block, zero before
    shrink = ["--extra-blocks", "0", "--analysis-extra-blocks", "0", "--out", str(tmp_path / "x"), "--steps", "0",
              "--init-from", str(trained / "tokenizer.safetensors")]
    with pytest.raises(ValueError, match="shrink"):
        tokenizer_stage.train(tokenizer_stage.parse_args(args + shrink))


@pytest.mark.parametrize("film", [False, True])
def test_a_bfloat16_synthesis_is_close_to_float32_and_ends_in_float32(film):
    """``g_s(..., bfloat16=True)``: every layer but the last in bfloat16, the picture in float32; with
    FiLM too (a prefix told how many octaves are missing)."""
    cfg = dataclasses.replace(tiny_config().tokenizer, prefix_film=film)
    torch.manual_seed(0)
    g_s = SynthesisTransform(cfg)
    for p in g_s.parameters():
        p.data.normal_(0, 0.1)
    y = torch.randn(2, cfg.latent_channels, 6, 5)
    exact, fast = g_s(y, 1.0), g_s(y, 1.0, bfloat16=True)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert not torch.equal(fast, exact) and torch.allclose(fast, exact, atol=0.05 * exact.abs().max().item())
    assert torch.equal(g_s(y, 1.0, bfloat16=False), exact)


@pytest.mark.parametrize("film", [False, True])
def test_a_callers_autocast_reaches_the_synthesis(film):
    """The encoder's search wraps ``g_s`` in its own bfloat16 autocast: the synthesis must not switch it
    off (with FiLM too, whose layers run one by one)."""
    cfg = dataclasses.replace(tiny_config().tokenizer, prefix_film=film)
    torch.manual_seed(0)
    g_s = SynthesisTransform(cfg)
    dtypes = []
    g_s.net[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert g_s(torch.randn(1, cfg.latent_channels, 4, 4), 1.0).dtype == torch.bfloat16
    assert dtypes == [torch.bfloat16]  # the first layer ran under the caller's autocast too
