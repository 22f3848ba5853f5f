"""Issue 30 (v5): per-crop quantiser dropout and the grid measure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.grid_measure import grid_excess, grid_measure
from progvc.models.config import tiny_config
from progvc.models.tokenizer import Tokenizer
from progvc.train import tokenizer_stage
from progvc.train.prefix import draw_prefixes, prefix_forward, prefix_sum
from tests.conftest import smooth_clip


def test_draw_prefixes_is_seeded_and_in_range():
    a = draw_prefixes(64, 10, 0.5, 3, torch.Generator().manual_seed(1))
    b = draw_prefixes(64, 10, 0.5, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 3 and a.max() == 10
    assert 10 < int((a < 10).sum()) < 54  # about half cut
    assert torch.all(draw_prefixes(8, 10, 0.0, 3, torch.Generator().manual_seed(0)) == 10)
    assert torch.all(draw_prefixes(8, 10, 1.0, 3, torch.Generator().manual_seed(0)) < 10)
    with pytest.raises(ValueError):
        draw_prefixes(8, 10, 0.5, 0, torch.Generator())


def test_prefix_sum_keeps_each_items_first_scales():
    parts = [torch.full((3, 1, 2, 2), float(10 ** k)) for k in range(3)]  # K=3, B=3
    f_hat = prefix_sum(parts, torch.tensor([1, 2, 3]))
    assert f_hat[:, 0, 0, 0].tolist() == [1.0, 11.0, 111.0]


def test_prefix_forward_matches_the_quantizers_own_prefix():
    """A batch whose crops all keep n scales decodes as ``Tokenizer.forward(x, n)`` does."""
    torch.manual_seed(0)
    tok = Tokenizer(tiny_config().tokenizer).eval()
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    for n in (1, 3, 4):
        ref, ref_tokens, ref_loss = tok(x, n)
        got, tokens, loss = prefix_forward(tok, x, torch.full((2,), n))
        assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(loss, ref_loss)
        assert all(torch.equal(a, b) for a, b in zip(tokens, ref_tokens, strict=True))
    mixed, _, _ = prefix_forward(tok, x, torch.tensor([1, 4]))
    assert torch.allclose(mixed[0], tok(x, 1)[0][0], atol=1e-5) and torch.allclose(mixed[1], tok(x)[0][1], atol=1e-5)


def test_prefix_gradient_reaches_encoder_and_codebook():
    torch.manual_seed(0)
    tok = Tokenizer(tiny_config().tokenizer)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    x_hat, _, vq_loss = prefix_forward(tok, x, torch.tensor([2, 4]))
    ((x_hat - x).abs().mean() + vq_loss).backward()
    assert tok.g_a.net[0].weight.grad.abs().sum() > 0 and tok.vq.codebook.weight.grad.abs().sum() > 0


def test_grid_measure_sees_an_8_pixel_lattice():
    rng = np.random.default_rng(0)
    src = smooth_clip(2, 64, 80, seed=3)
    assert abs(grid_measure(src).score - 1.0) < 0.1  # smooth content: no phase stands out
    grid = src.astype(np.int16)
    grid[:, :, 7::8] += 12  # a bright column every 8 pixels
    grid[:, 7::8] += 12
    grid = np.clip(grid + rng.integers(-1, 2, grid.shape), 0, 255).astype(np.uint8)
    score = grid_measure(grid)
    assert score.score > 1.5 and score.rows > 1.5 and score.cols > 1.5
    assert int(np.argmax(score.phases)) in (6, 7)  # the jumps into and out of the bright line
    assert grid_excess(src, grid) > 0.5 and grid_excess(src, src) == 0.0
    with pytest.raises(ValueError):
        grid_measure(src[:, :8])


@pytest.mark.slow
def test_tokenizer_stage_trains_with_per_crop_prefixes(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "clip0.npy", smooth_clip(6, 40, 48, seed=0))
    out = tmp_path / "tok"
    tokenizer_stage.train(tokenizer_stage.parse_args([
        "--cache", str(cache), "--out", str(out), "--preset", "tiny", "--batch", "4", "--crop", "32",
        "--steps", "4", "--log-every", "2", "--restart-every", "2", "--w-adv", "0", "--save-every", "2",
        "--prefix-share", "0.5", "--prefix-min", "2", "--device", "cpu", "--seed", "0", "--upsample", "bilinear"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("psnr_prefix" in r for r in rows) and (out / "tokenizer.safetensors").is_file()
    from progvc.weights import parse_weights

    cfg, _ = parse_weights((out / "tokenizer.safetensors").read_bytes(), "tokenizer.safetensors")
    assert cfg.tokenizer.upsample == "bilinear"


@pytest.mark.slow
def test_unquantised_steps_train_the_autoencoder_and_leave_the_codebook(tmp_path):
    from progvc.weights import parse_weights

    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "clip0.npy", smooth_clip(6, 40, 48, seed=0))
    base = ["--cache", str(cache), "--preset", "tiny", "--batch", "2", "--crop", "32", "--log-every", "1",
            "--restart-every", "1", "--w-adv", "0", "--device", "cpu", "--seed", "0"]
    tokenizer_stage.train(tokenizer_stage.parse_args(base + ["--out", str(tmp_path / "a"), "--steps", "1"]))
    start = str(tmp_path / "a" / "tokenizer.safetensors")
    out = tmp_path / "b"
    tokenizer_stage.train(tokenizer_stage.parse_args(base + ["--out", str(out), "--steps", "3",
                                                             "--unquantised-share", "1", "--init-from", start]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("psnr_unquantised" in r for r in rows) == 3 and not any("psnr" in r for r in rows)
    _, before = parse_weights(Path(start).read_bytes(), start)
    _, after = parse_weights((out / "tokenizer.safetensors").read_bytes(), "tokenizer.safetensors")
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert any(k.startswith("tokenizer.g_a.") for k in changed) and any(k.startswith("tokenizer.g_s.") for k in changed)
    assert not any(k.startswith("tokenizer.vq.") for k in changed)  # no VQ loss, and no code re-seeded


def test_prefix_latents_are_the_quantizers_tokens_and_sums():
    from benchmarks.tokenizer_prefixes import prefix_latents, usage_per_scale

    torch.manual_seed(0)
    tok = Tokenizer(tiny_config().tokenizer).eval()
    frames = smooth_clip(2, 20, 28, seed=1)
    errors = torch.zeros(tok.cfg.n_scales, 2, dtype=torch.float64)
    tokens, latents = prefix_latents(tok, frames, errors)
    grids = tok.grids(20, 28)
    with torch.no_grad():
        ref = tok.vq.quantize(tok.analyse(torch.from_numpy(frames)), grids)
        assert all(torch.equal(a, b) for a, b in zip(tokens, ref, strict=True))
        assert torch.allclose(latents[1], tok.vq.embed(ref[:2], grids), atol=1e-6)
    counts = torch.stack([torch.bincount(r.flatten(), minlength=tok.cfg.codebook_size) for r in tokens])
    usage = usage_per_scale(counts, errors)
    assert usage[0]["tokens"] == 2 and usage[0]["used"] + usage[0]["dead"] == tok.cfg.codebook_size
    assert all(u["rel_vq_error"] >= 0 and 1 <= u["perplexity"] <= u["used"] for u in usage)


def test_prefix_table_compares_runs_on_shared_clips():
    from benchmarks.prefix_table import table

    row = {"n": 5.0, "psnr": 15.0, "ms_ssim": 0.3, "grid_excess": 0.01}
    base = {"clips": {"a": [row], "b": [{**row, "psnr": 17.0}]}}
    new = {"clips": {"a": [{**row, "psnr": 16.0}], "b": [{**row, "psnr": 18.0}], "c": [row]}}
    text = table([base, new], ["v4", "v5"])
    assert "clips: a, b" in text and "| 5 | 16.00 / 0.300 / +0.010 | 17.00 / 0.300 / +0.010 | +1.00 |" in text


def test_upsample_is_a_checked_config_field_written_only_when_not_nearest():
    import dataclasses

    from progvc.models.config import CodecConfig
    from progvc.runtime.errors import ConfigError

    cfg = tiny_config()
    assert "upsample" not in cfg.to_json()  # an older model's JSON, and its hash, are unchanged
    bilinear = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, upsample="bilinear"))
    assert CodecConfig.from_json(bilinear.to_json()) == bilinear
    with pytest.raises(ConfigError, match="upsample must be one of"):
        dataclasses.replace(cfg.tokenizer, upsample="bicubic")


def test_bilinear_synthesis_paints_no_lattice_on_a_constant_latent():
    """The grid's cause: nearest-neighbour doubling makes every latent cell one stamp, so a constant
    latent decodes to a periodic picture; bilinear doubling of the same weights does not."""
    import dataclasses

    from benchmarks.grid_measure import grid_measure

    def constant_decode(upsample: str) -> np.ndarray:
        torch.manual_seed(0)
        cfg = dataclasses.replace(tiny_config().tokenizer, stride=8, channels=(16, 32, 32, 32), upsample=upsample)
        tok = Tokenizer(cfg).eval()
        with torch.no_grad():
            for p in tok.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
            y = tok.g_s(torch.full((1, cfg.latent_channels, 12, 12), 0.5)).clamp(-1, 1)
        return ((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)[None, 8:-8, 8:-8]

    assert grid_measure(constant_decode("nearest")).score > 1.3
    assert grid_measure(constant_decode("bilinear")).score < grid_measure(constant_decode("nearest")).score - 0.2


@pytest.mark.slow
def test_synthesis_stage_switches_to_bilinear_and_its_checkpoint_loads_for_the_benchmarks(tmp_path):
    """``--upsample bilinear --film false`` fine-tunes g_s alone: the exported codec has bilinear
    up-sampling and the weights it started from everywhere but g_s, and the run's ``last.pt`` loads
    as that tokenizer (benchmarks.tokenizer_prefixes reads checkpoints mid-run)."""
    from benchmarks.tokenizer_prefixes import load_tokenizer
    from progvc.codec.codec import Codec
    from progvc.train import synthesis_stage
    from progvc.weights import save_weights

    from .helpers import make_cache, random_weights

    cfg = tiny_config()
    start = tmp_path / "start.safetensors"
    save_weights(start, random_weights(cfg), cfg)
    out = tmp_path / "syn"
    synthesis_stage.train(synthesis_stage.parse_args([
        "--weights", str(start), "--cache", str(make_cache(tmp_path / "cache")), "--out", str(out), "--steps", "2",
        "--batch", "2", "--crop", "32", "--log-every", "1", "--device", "cpu", "--upsample", "bilinear",
        "--film", "false", "--lr", "1e-3"]))
    tuned = Codec.from_file(out / "model.safetensors", device="cpu")
    assert tuned.config.tokenizer.upsample == "bilinear" and not tuned.config.tokenizer.prefix_film
    before = Codec.from_file(start, device="cpu").model.state_dict()
    after = tuned.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("tokenizer.g_s.") for k in changed)
    tok = load_tokenizer(str(out / "last.pt"), str(start))
    assert tok.cfg.upsample == "bilinear"
    assert all(torch.equal(v, after[f"tokenizer.{k}"]) for k, v in tok.state_dict().items())
    x = smooth_clip(2, 20, 28)
    assert tuned.decode(tuned.encode(x)).shape == x.shape
    with pytest.raises(SystemExit):
        synthesis_stage.parse_args(["--film", "maybe"])


def test_tokenizer_ceiling_decodes_the_quantisers_scales_and_the_unquantised_latent():
    from benchmarks.tokenizer_ceiling import ceiling
    from progvc.bench.metrics import psnr

    torch.manual_seed(0)
    tok = Tokenizer(tiny_config().tokenizer).eval()
    frames = smooth_clip(2, 20, 28, seed=1)
    row = ceiling(tok, frames, extra=2)
    grids = tok.grids(20, 28)
    with torch.no_grad():
        f = tok.analyse(torch.from_numpy(frames))
        f_hat = tok.vq.embed(tok.vq.quantize(f, grids), grids)
        assert row["unquantised"] == psnr(frames, tok.synthesise(f, 20, 28).numpy())
        assert row["scales"] == pytest.approx(psnr(frames, tok.synthesise(f_hat, 20, 28).numpy()), abs=1e-4)
        assert row["rel_error_scales"] == pytest.approx(float((f - f_hat).pow(2).sum() / f.pow(2).sum()), rel=1e-4)
    assert sorted(k for k in row if k.startswith("extra")) == ["extra_1", "extra_2"]


def test_adaptive_bits_is_the_krichevsky_trofimov_code_length_of_the_symbols_in_turn():
    from benchmarks.tokenizer_ceiling import adaptive_bits

    symbols = np.array([0, 2, 2, 1, 2, 0, 2, 2])
    counts, bits = np.zeros(3), 0.0
    for i, s in enumerate(symbols):
        bits -= math.log2((counts[s] + 0.5) / (i + 1.5))
        counts[s] += 1
    assert adaptive_bits(symbols, 3) == pytest.approx(bits, rel=1e-12)
    assert adaptive_bits(symbols[::-1].copy(), 3) == pytest.approx(bits, rel=1e-12)


def test_priced_pass_trades_bits_for_picture_as_lambda_grows():
    from benchmarks.tokenizer_ceiling import ceiling, priced_pass

    torch.manual_seed(0)
    tok = Tokenizer(tiny_config().tokenizer).eval()
    frames = smooth_clip(2, 20, 28, seed=1)
    row = priced_pass(tok, frames, [0.0, 1e3])
    assert row["psnr_scales"] == [ceiling(tok, frames, extra=0)["scales"]]
    assert row["bpp"][0] > row["bpp"][1] > 0
    assert row["psnr"][0] != row["psnr_scales"][0]  # a pass was added (an untrained g_s need not gain from it)
    assert all(0 <= s <= 1 for s in row["share_skipped"]) and row["bpp_finest_scale"][0] > 0
