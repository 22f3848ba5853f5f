"""Issue 30 (v6 leg): a synthesis grown by zero-initialised residual blocks starts as the one it
grew from, so the tokens (and the context model trained on them) stay valid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from progvc.codec.codec import Codec, CodecModel
from progvc.models.autoencoder import ResBlock, SynthesisTransform, load_into_grown
from progvc.models.config import tiny_config
from progvc.train import synthesis_stage
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
    with pytest.raises(ValueError, match="shrink"):
        synthesis_stage.train(synthesis_stage.parse_args(
            ["--weights", str(out / "model.safetensors"), "--out", str(tmp_path / "again"), "--extra-blocks", "0",
             "--film", "false", "--device", "cpu", "--steps", "0"]))
