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

import numpy as np
import pytest
import torch
from hypothesis import settings

from .helpers import portable_pair, ship_tiny_model, smooth_clip

settings.register_profile("seeded", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("PROGVC_HYPOTHESIS", "seeded"))


@pytest.fixture(autouse=True)
def _seed_global_generators():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.fixture(scope="session")
def tiny_codec():
    from progvc.codec.codec import Codec
    from progvc.models.config import tiny_config

    return Codec.from_config(tiny_config(), seed=0, device="cpu")


@pytest.fixture(scope="session")
def tiny_portable_codec():
    """The portable conversion of a seeded tiny codec (:func:`tests.helpers.portable_pair`)."""
    return portable_pair()[1]


@pytest.fixture
def clip_factory():
    return smooth_clip


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A weights folder holding one random tiny model, ``tiny-shipped`` in ``tiny.safetensors``."""
    return ship_tiny_model(tmp_path, monkeypatch)


