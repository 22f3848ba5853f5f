"""Both training stages on a tiny model and a synthetic cache: they run, resume and export."""

from __future__ import annotations

import json

import numpy as np
import torch

from progvc.codec import Codec
from progvc.train import context_stage, export, tokenizer_stage
from tests.conftest import smooth_clip


def make_cache(path):
    path.mkdir()
    for i in range(2):
        np.save(path / f"clip{i}.npy", smooth_clip(12, 40, 48, seed=i))
    return path


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
        "--name", "progvc-test"]))
    rows = [json.loads(line) for line in (ctx_out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(rows[0]["bits_per_scale"]) == 4 and "intra_bits_per_scale" in rows[0]

    codec = Codec.from_file(ctx_out / "model.safetensors", device="cpu")
    assert codec.config.name == "progvc-test"
    x = smooth_clip(3, 20, 28)
    data = codec.encode(x)
    assert codec.decode(data).shape == x.shape

    # shipping: float16 file + manifest; the loaded model is the float16-rounded one, in float32
    digest = export.export(ctx_out / "model.safetensors", "progvc-shipped", tmp_path / "weights", True)
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(tmp_path / "weights"))
    shipped = Codec.from_pretrained(device="cpu")
    assert shipped.weights_sha256.hex() == digest and shipped.config.name == "progvc-shipped"
    w = shipped.model.tokenizer.vq.codebook.weight
    assert w.dtype == torch.float32 and torch.equal(w, w.half().float())
    assert shipped.decode(shipped.encode(x)).shape == x.shape
