"""Weights files: hash-checked, config inside, clear errors that name the file."""

from __future__ import annotations

import json

import pytest

import progvc
from progvc.codec.codec import Codec
from progvc.models.config import tiny_config
from progvc.weights import load_named, save_weights

from .helpers import random_weights


def test_named_model_loads_and_its_hash_is_the_stream_identity(weights_dir, clip_factory):
    codec = Codec.from_pretrained(device="cpu")
    assert codec.config.name == "tiny-shipped"
    manifest = json.loads((weights_dir / "manifest.json").read_text())
    data = codec.encode(clip_factory(2, 16, 16))
    carried = progvc.info(data).weights_sha256  # the first 8 bytes of the file's sha256, in hex
    assert len(carried) == 16 and manifest["models"]["tiny-shipped"]["sha256"].startswith(carried)
    # the module-level API picks the model named in the stream
    assert progvc.decode(data, device="cpu").shape == (2, 16, 16, 3)


def test_modified_file_is_refused_by_name(weights_dir):
    path = weights_dir / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(progvc.WeightsError, match="tiny.safetensors.*modified or truncated"):
        load_named()


def test_truncated_file_is_refused(weights_dir):
    path = weights_dir / "tiny.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(progvc.WeightsError, match="tiny.safetensors"):
        load_named()


def test_unreadable_file_with_matching_hash_is_refused(weights_dir):
    from progvc.weights import sha256_hex

    path = weights_dir / "tiny.safetensors"
    path.write_bytes(b"not safetensors at all")
    manifest = json.loads((weights_dir / "manifest.json").read_text())
    manifest["models"]["tiny-shipped"]["sha256"] = sha256_hex(path.read_bytes())
    (weights_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(progvc.WeightsError, match="not a readable safetensors"):
        load_named()


def test_config_that_does_not_match_the_tensors_is_refused(tmp_path):
    cfg = tiny_config(name="tiny-shipped")
    state = random_weights(cfg)
    bigger = tiny_config(name="tiny-shipped", gop_size=5)
    bigger = type(bigger)(name=bigger.name, tokenizer=type(cfg.tokenizer)(
        stride=4, channels=(16, 32), latent_channels=8, codebook_size=128, n_scales=4, n_phi=2), context=cfg.context)
    save_weights(tmp_path / "bad.safetensors", state, bigger)
    with pytest.raises(progvc.WeightsError, match="bad.safetensors.*do not match its config"):
        Codec.from_file(tmp_path / "bad.safetensors")


def test_unknown_model_name_lists_the_known_ones(weights_dir):
    with pytest.raises(progvc.WeightsError, match="tiny-shipped"):
        load_named("nope")


def test_missing_manifest_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(progvc.WeightsError, match="manifest"):
        load_named()


def test_peek_config_reads_the_header_alone_without_torch(weights_dir, tmp_path):
    import subprocess
    import sys

    from progvc.weights import peek_config

    assert peek_config() == load_named()[0] == peek_config(path=weights_dir / "tiny.safetensors")
    code = ("import sys; from progvc.weights import peek_config; print(peek_config().name); "
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "tiny-shipped", done.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    for bad in (tmp_path / "junk.safetensors", tmp_path / "none.safetensors"):
        with pytest.raises(progvc.WeightsError, match=bad.name):
            peek_config(path=bad)
    with pytest.raises(progvc.WeightsError, match="tiny-shipped"):
        peek_config("nope")


def test_the_package_folder_is_the_default_and_export_writes_there(tmp_path, monkeypatch):
    from progvc.train import export
    from progvc.weights import shipped_dir, weights_dir

    monkeypatch.delenv("PROGVC_WEIGHTS_DIR", raising=False)
    assert str(weights_dir()) == str(shipped_dir()) and shipped_dir().name == "weights"
    assert (shipped_dir().parent / "__init__.py").is_file()  # progvc/weights/, inside the package
    cfg = tiny_config()
    save_weights(tmp_path / "run.safetensors", random_weights(cfg), cfg)
    folder = tmp_path / "pkg"
    monkeypatch.setattr(export, "shipped_dir", lambda: folder)
    digest = export.export(tmp_path / "run.safetensors", "tiny-exported")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == {"default": "tiny-exported",
                        "models": {"tiny-exported": {"file": "tiny-exported.safetensors", "sha256": digest}}}
