"""A leg for a lent GPU (progvc.train.device_leg): the cache packs into clips that travel and unpacks
to what it was, the leg runs end to end (here on the CPU, with a tiny model) and joins into a codec,
and what the device tool cannot bring back is refused before it is lost."""

from __future__ import annotations

import json

import numpy as np
import pytest

from progvc.codec.codec import Codec
from progvc.models.config import tiny_config
from progvc.runtime.errors import ConfigError
from progvc.train import common, context_stage, device_leg, tokenizer_stage
from progvc.weights import save_weights

from .helpers import moving, portable_pair, smooth_clip


def _cache(path):
    """Two clips of odd sizes (H.264 4:4:4 needs even ones: packing pads), one with a run file."""
    path.mkdir()
    np.save(path / "a.npy", moving(6, 41, 47, seed=1))
    np.save(path / "b.npy", moving(10, 40, 48, seed=2))
    (path / "b.json").write_text(json.dumps({"runs": [[0, 4], [4, 6]]}))
    return path


def test_pack_then_unpack_gives_back_the_cache(tmp_path):
    cache = _cache(tmp_path / "cache")
    manifest = device_leg.pack(cache, tmp_path / "packed")
    assert [c["name"] for c in manifest["clips"]] == ["a", "b"]
    assert (tmp_path / "packed" / "site" / "pytorch_msssim" / "__init__.py").is_file()
    assert device_leg.unpack(tmp_path / "packed", tmp_path / "back") == ["a", "b"]
    for name in ("a", "b"):
        was, back = np.load(cache / f"{name}.npy"), np.load(tmp_path / "back" / f"{name}.npy")
        assert back.shape == was.shape and back.dtype == np.uint8
        mse = np.mean((back.astype(np.float64) - was) ** 2)
        assert 10 * np.log10(255**2 / mse) > 36, name  # crf 14: a near-lossless copy (43 dB on the train cache)
    assert json.loads((tmp_path / "back" / "b.json").read_text()) == {"runs": [[0, 4], [4, 6]]}
    assert not (tmp_path / "back" / "a.json").exists()


def test_unpack_refuses_a_clip_that_changed_on_the_way(tmp_path):
    device_leg.pack(_cache(tmp_path / "cache"), tmp_path / "packed")
    clip = tmp_path / "packed" / "b.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 1
    clip.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        device_leg.unpack(tmp_path / "packed", tmp_path / "back")


def test_pack_refuses_more_than_its_budget(tmp_path):
    with pytest.raises(ConfigError, match="budget"):
        device_leg.pack(_cache(tmp_path / "cache"), tmp_path / "packed", budget_mib=1e-3)


def test_split_refuses_what_the_device_tool_would_not_bring_back(tmp_path, monkeypatch):
    monkeypatch.setattr(device_leg, "PART_BYTES", 10)
    big = tmp_path / "w.bin"
    big.write_bytes(bytes(range(55)))
    out = tmp_path / "out"
    out.mkdir()
    entry = device_leg.split(big, out)
    assert entry["parts"] == [f"w.part{i}" for i in range(6)]
    assert device_leg.join_parts(out, entry) == big.read_bytes()
    with pytest.raises(ConfigError, match="brings back"):  # 6 parts are all the tool returns
        device_leg.split(big, out)
    (out / "w.part3").write_bytes(b"0123456789")
    with pytest.raises(ConfigError, match="sha256"):
        device_leg.join_parts(out, entry)


@pytest.mark.slow
def test_a_leg_runs_and_joins_into_a_codec(tmp_path):
    device_leg.pack(_cache(tmp_path / "cache"), tmp_path / "packed")
    tiny = ["--batch", "2", "--crop", "32", "--log-every", "1"]
    tokenizer = " ".join(["--preset", "tiny", "--channels", "16,24", "--steps", "3", "--prefix-share", "0.5", *tiny])
    context = " ".join(["--steps", "2", "--gop", "2", "--name", "progvc-leg", "--quality-min", "30", *tiny])
    _, portable = portable_pair()  # the shipped default is portable: the leg warm-starts from it made float
    save_weights(tmp_path / "portable.safetensors", portable.model.state_dict(), portable.config)

    def leg(out: str, init: str) -> dict:
        assert device_leg.main(["run", "--data", str(tmp_path / "packed"), "--out", str(tmp_path / out), "--work",
                                str(tmp_path / f"work_{out}"), "--device", "cpu", "--workers", "1",
                                "--tokenizer-minutes", "1", "--tokenizer-args", tokenizer, "--context-minutes", "1",
                                "--context-args", context, "--context-init", init]) == 0
        return json.loads((tmp_path / out / "leg.json").read_text())

    tok, ctx = leg("failed", "no-such-file.safetensors")["phases"]
    assert "error" not in tok and [r["step"] for r in tok["log"] if "loss" in r] == [1, 2, 3]
    assert "no-such-file" in ctx["error"]  # the context phase failed; the tokenizer still came back
    assert [p.name for p in device_leg.join(tmp_path / "failed", tmp_path / "j1")] == ["tokenizer.safetensors"]

    tok, ctx = leg("out", str(tmp_path / "portable.safetensors"))["phases"]
    assert "error" not in ctx and len(ctx["log"]) == 2 and ctx["argv"][-4:] == ["--max-minutes", "1.0",
                                                                                 "--lr-by-time", "true"]
    written = device_leg.join(tmp_path / "out", tmp_path / "joined")
    assert [p.name for p in written] == ["tokenizer.safetensors", "model.safetensors"]
    codec = Codec.from_file(tmp_path / "joined" / "model.safetensors", device="cpu")
    assert codec.config.name == "progvc-leg" and not codec.config.context.portable
    assert codec.config.tokenizer.channels == (16, 24)  # the leg's wider tokenizer (tiny's is 16,32)
    x = smooth_clip(3, 24, 32)
    assert codec.decode(codec.encode(x)).shape == x.shape


@pytest.mark.slow
def test_a_call_cut_during_the_context_phase_still_brings_back_the_tokenizer(tmp_path, monkeypatch):
    device_leg.pack(_cache(tmp_path / "cache"), tmp_path / "packed")

    def cut(cfg):
        raise KeyboardInterrupt  # as the device tool's time limit ends the call

    monkeypatch.setattr(context_stage, "train", cut)
    with pytest.raises(KeyboardInterrupt):
        device_leg.main(["run", "--data", str(tmp_path / "packed"), "--out", str(tmp_path / "out"), "--work",
                         str(tmp_path / "work"), "--device", "cpu", "--workers", "1", "--tokenizer-minutes", "1",
                         "--tokenizer-args", "--preset tiny --steps 2 --batch 2 --crop 32", "--context-minutes", "1"])
    assert [p["phase"] for p in json.loads((tmp_path / "out" / "leg.json").read_text())["phases"]] == ["tokenizer"]
    assert [p.name for p in device_leg.join(tmp_path / "out", tmp_path / "j")] == ["tokenizer.safetensors"]


def test_a_run_bounded_by_time_ends_its_cosine_at_the_low_rate():
    assert common.lr_at(10, 1.0, 5, 10**9) > 0.99  # by steps alone, a run of 10**9 steps has barely begun
    assert common.lr_at(10, 1.0, 5, 10**9, done=1.0) == pytest.approx(0.1)
    assert common.lr_at(10, 1.0, 5, 10**9, done=0.5) == pytest.approx(0.55)

    class Cfg:
        max_minutes, lr_by_time = 10.0, False

    assert common.time_share(Cfg, 0.0) == 0.0  # off unless asked for
    Cfg.lr_by_time = True
    assert common.time_share(Cfg, 0.0) > 1  # since 1970: long over


def test_the_tokenizer_stage_takes_the_autoencoders_widths():
    preset = tiny_config().tokenizer
    cfg = tokenizer_stage.parse_args(["--channels", "8,48", "--latent-channels", "12"])
    tok = tokenizer_stage.tokenizer_config(preset, cfg)
    assert (tok.channels, tok.latent_channels, tok.stride) == ((8, 48), 12, preset.stride)
    with pytest.raises(ConfigError, match="--channels"):
        tokenizer_stage.tokenizer_config(preset, tokenizer_stage.parse_args(["--channels", "8;48"]))
