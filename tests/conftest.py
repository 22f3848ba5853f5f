"""Shared fixtures: a tiny randomly initialised codec and clip factories.

Every test is seeded, so it passes or fails the same way in any order (the suite runs shuffled by
pytest-randomly; ``-p no:randomly`` keeps file order, ``--randomly-seed=N`` replays an order):
random weights come from :func:`random_weights` with an explicit seed, hypothesis draws its examples
deterministically (``PROGVC_HYPOTHESIS=explore`` for fresh random examples), and an autouse fixture
resets torch's, NumPy's and ``random``'s global generators before each test as a safety net.

Markers (pyproject.toml): ``slow`` (seconds or more on 2 cores; ``pytest -m "not slow"`` is the quick
inner loop), ``shared`` (needs ../shared/clips), ``weights`` (needs the shipped model), ``gpu``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = SHARED / "clips"

settings.register_profile("seeded", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("PROGVC_HYPOTHESIS", "seeded"))


@pytest.fixture(autouse=True)
def _seed_global_generators():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


def random_weights(config, seed: int = 0) -> dict:
    """The state dict of a randomly initialised ``CodecModel(config)``, the same for the same seed."""
    from progvc.codec import CodecModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CodecModel(config).state_dict()


@pytest.fixture(scope="session")
def tiny_codec():
    from progvc.codec import Codec
    from progvc.config import tiny_config

    return Codec.from_config(tiny_config(), seed=0, device="cpu")


def portable_pair(seed: int = 0, **context: object):
    """A seeded tiny float codec (context options overridden by ``context``) and its portable
    conversion (:mod:`progvc.models.portable`), which keeps its tokenizer."""
    import dataclasses

    from progvc.codec import Codec
    from progvc.config import tiny_config
    from progvc.models.portable_convert import convert

    cfg = tiny_config(context=dataclasses.replace(tiny_config().context, **context))
    float_codec = Codec.from_config(cfg, seed=seed, device="cpu")
    state = {f"context.{k}": v for k, v in convert(float_codec.context, float_codec.tokenizer.vq).items()}
    state.update({k: v for k, v in float_codec.model.state_dict().items() if k.startswith("tokenizer.")})
    pcfg = dataclasses.replace(cfg, context=dataclasses.replace(cfg.context, portable=True))
    return float_codec, Codec(pcfg, state, device="cpu")


@pytest.fixture(scope="session")
def tiny_portable_codec():
    return portable_pair()[1]


def smooth_clip(n_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving smooth pattern plus noise: (T,H,W,3) uint8, cheap and compressible like video."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(n_frames):
        base = np.stack([np.sin((xx + 2 * t) / 7 + c) + np.cos((yy - t) / 5 - c) for c in range(3)], -1)
        frames.append(np.clip(127 + 60 * base + rng.normal(0, 8, base.shape), 0, 255))
    return np.asarray(frames, dtype=np.uint8)


@pytest.fixture
def clip_factory():
    return smooth_clip


def ship_tiny_model(directory: Path, monkeypatch, name: str = "tiny-shipped",
                    file: str = "tiny.safetensors") -> Path:
    """Write a random tiny model and its manifest into ``directory`` and make it the shipped default."""
    import json

    from progvc.config import tiny_config
    from progvc.weights import save_weights

    cfg = tiny_config(name=name)
    digest = save_weights(directory / file, random_weights(cfg), cfg)
    (directory / "manifest.json").write_text(json.dumps(
        {"default": name, "models": {name: {"file": file, "sha256": digest}}}))
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(directory))
    return directory


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A weights folder holding one random tiny model, ``tiny-shipped`` in ``tiny.safetensors``."""
    return ship_tiny_model(tmp_path, monkeypatch)


def shared_clip(name_part: str) -> Path:
    """A clip from ../shared/clips/dev whose name contains ``name_part``; skips when absent."""
    matches = sorted((CLIPS / "dev").glob(f"*{name_part}*")) if CLIPS.exists() else []
    if not matches:
        pytest.skip("../shared/clips is not present")
    return matches[0]


def legacy_header(h, version: int) -> bytes:
    """``h`` laid out as format versions 2-5 do (fixed-width fields, docs/FORMAT.md "Versions"),
    labelled ``version``, with a correct CRC: how a test makes an older stream's header. These
    versions hold the whole sha256: a shorter weights id is padded with zero bytes."""
    import struct
    import zlib

    from progvc import bitstream as bs

    flags = ((0 if h.temporal else 1) | bs.SKIP_BLOCKS.index(h.skip_block) << 1 | (8 if h.modes else 0)
             | bs.RESIZE_FACTORS.index(h.resize) << 4)
    name = h.model_name.encode()
    body = (bytes([len(name)]) + name + h.weights_sha256.ljust(32, b"\0")
            + struct.pack("<IIIIIHBBQfIfB", h.width, h.height, h.n_frames, h.fps.numerator, h.fps.denominator,
                          h.gop_size, h.n_scales, h.coded_scales, h.seed, h.temperature, h.top_k, h.top_p, flags)
            + b"".join(struct.pack("<HH", r, c) for r, c in h.grids))
    head = struct.pack("<4sBH", bs.MAGIC, version, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))
