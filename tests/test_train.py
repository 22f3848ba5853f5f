"""Both training stages on a tiny model and a synthetic cache: they run, resume and export."""

from __future__ import annotations

import json

import pytest
import torch

from progvc.codec.codec import Codec
from progvc.train import context_stage, export, synthesis_stage, tokenizer_stage
from tests.helpers import smooth_clip

from .helpers import make_cache


@pytest.mark.slow
def test_stages_train_resume_and_export_a_codec(tmp_path, monkeypatch):
    cache = make_cache(tmp_path / "cache")
    tok_out = tmp_path / "tok"
    args = ["--cache", str(cache), "--out", str(tok_out), "--preset", "tiny", "--batch", "2", "--crop", "32",
            "--log-every", "2", "--restart-every", "2", "--disc-start", "3", "--save-every", "2", "--device", "cpu"]
    tokenizer_stage.train(tokenizer_stage.parse_args(args + ["--steps", "4"]))
    assert torch.load(tok_out / "last.pt", weights_only=True)["step"] == 4
    tokenizer_stage.train(tokenizer_stage.parse_args(args + ["--steps", "6"]))  # resumes at 4
    rows = [json.loads(line) for line in (tok_out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6 and any("code_used" in r for r in rows)
    assert json.loads((tok_out / "config.json").read_text())["steps"] == 6

    ctx_out = tmp_path / "ctx"
    context_stage.train(context_stage.parse_args([
        "--tokenizer", str(tok_out / "tokenizer.safetensors"), "--cache", str(cache), "--out", str(ctx_out),
        "--steps", "3", "--batch", "2", "--gop", "3", "--crop", "32", "--log-every", "1", "--device", "cpu",
        "--name", "progvc-test", "--refine", "2"]))
    rows = [json.loads(line) for line in (ctx_out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(rows[0]["bits_per_scale"]) == 4 and "intra_bits_per_scale" in rows[0]

    codec = Codec.from_file(ctx_out / "model.safetensors", device="cpu")
    assert codec.config.name == "progvc-test"
    x = smooth_clip(3, 20, 28)
    data = codec.encode(x)
    assert codec.decode(data).shape == x.shape

    # stage 3 (tried for v4, not shipped): g_s told the missing octaves, fine-tuned on prefixes
    syn_out = tmp_path / "syn"
    synthesis_stage.train(synthesis_stage.parse_args([
        "--weights", str(ctx_out / "model.safetensors"), "--cache", str(cache), "--out", str(syn_out),
        "--steps", "2", "--batch", "2", "--crop", "32", "--log-every", "1", "--device", "cpu"]))
    film = Codec.from_file(syn_out / "model.safetensors", device="cpu")
    assert film.config.tokenizer.prefix_film and film.decode(film.encode(x), 2).shape == x.shape

    # shipping: float16 file + manifest; the loaded model is the float16-rounded one, in float32
    digest = export.export(ctx_out / "model.safetensors", "progvc-shipped", tmp_path / "weights", True)
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(tmp_path / "weights"))
    shipped = Codec.from_pretrained(device="cpu")
    assert shipped.weights_sha256.hex() == digest and shipped.config.name == "progvc-shipped"
    w = shipped.model.tokenizer.vq.codebook.weight
    assert w.dtype == torch.float32 and torch.equal(w, w.half().float())
    assert shipped.decode(shipped.encode(x)).shape == x.shape


def test_warm_start_copies_the_layers_that_fit_into_a_deeper_tokenizer(tmp_path):
    """Stride 4 -> stride 8: the encoder's early levels, the decoder's late levels and the
    quantiser carry over; the new level keeps its fresh initialisation."""
    import dataclasses

    from progvc.models.config import tiny_config
    from progvc.models.tokenizer import Tokenizer
    from progvc.train.common import warm_start
    from progvc.weights import save_weights

    cfg = tiny_config()
    torch.manual_seed(0)
    old = Tokenizer(cfg.tokenizer)
    for p in old.parameters():
        p.data.normal_()
    save_weights(tmp_path / "old.safetensors", {f"tokenizer.{k}": v for k, v in old.state_dict().items()}, cfg)
    new = Tokenizer(dataclasses.replace(cfg.tokenizer, stride=8, channels=(16, 32, 48)))
    before = {k: v.clone() for k, v in new.state_dict().items()}
    copied = warm_start(new, str(tmp_path / "old.safetensors"))
    src, dst = old.state_dict(), new.state_dict()
    assert torch.equal(dst["g_a.net.0.weight"], src["g_a.net.0.weight"])  # full-resolution stem
    assert torch.equal(dst["g_s.net.13.weight"], src["g_s.net.10.weight"])  # output conv, shifted by 3
    assert torch.equal(dst["vq.codebook.weight"], src["vq.codebook.weight"])
    assert torch.equal(dst["g_s.net.0.weight"], before["g_s.net.0.weight"])  # 8->48 input conv: fresh
    changed = sum(not torch.equal(dst[k], before[k]) for k in dst)
    assert 0 < copied == changed < len(dst)
