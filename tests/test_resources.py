"""Resource bounds (issue 15): limits checked from the header before any model work, frames
produced GOP by GOP, encoding read GOP by GOP. Tiles: tests/test_tiling.py; memory: benchmarks/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import progvc
from progvc import cli
from progvc.codec.limits import Limits
from progvc.codec.streaming import Decoder
from progvc.runtime.errors import ConfigError, LimitError
from progvc.stream import format as bs
from tests.fuzz import harness as fz

from .helpers import smooth_clip


@pytest.fixture(scope="module")
def bombs(tiny_codec):
    """The issue's two bombs, built from real streams of the tiny codec (header-valid, CRCs right)."""
    return {"8192x8192": fz.size_bomb(tiny_codec), "2^20 frames of 1080p": fz.length_bomb(tiny_codec)}


@pytest.fixture
def no_model_work(monkeypatch):
    """Any GOP set up, or any frame synthesised, fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("model work started")

    monkeypatch.setattr("progvc.coding.gop.GopState", forbidden)


def refused_fast(call, match: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match=match):
        call()
    assert time.perf_counter() - t0 < 1.0  # the bound; the refusal itself takes milliseconds


@pytest.mark.parametrize("name", ["8192x8192", "2^20 frames of 1080p"])
def test_bombs_are_refused_fast_before_any_model_work(tiny_codec, bombs, name, no_model_work, tmp_path, capsys):
    data = bombs[name]
    h = bs.parse_header(data)
    assert bs.unpack(data).complete and (h.width * h.height > Limits().max_frame_pixels
                                         or h.n_frames * h.width * h.height > Limits().max_pixels)
    limit = "max_frame_pixels" if name.startswith("8192") else "max_pixels"
    for call in (lambda: tiny_codec.decode(data), lambda: tiny_codec.iter_decode(data),
                 lambda: tiny_codec.decode_tokens(data), lambda: Decoder(tiny_codec).feed(data),
                 lambda: tiny_codec.decode(data, partial=True)):
        refused_fast(call, f"{limit}=.*raise the limit: limits=progvc.Limits")
    (tmp_path / "bomb.pvc").write_bytes(data)
    assert cli.main(["decode", str(tmp_path / "bomb.pvc"), str(tmp_path / "out_%07d.png"), "--device", "cpu"]) \
        == cli.EXIT_LIMIT
    assert "--max-" in capsys.readouterr().err and not list(tmp_path.glob("out*"))


def test_the_size_bomb_is_a_real_stream_that_decodes_with_limits_raised(tiny_codec):
    """What the limits stand between: the same kind of stream at a size this test can afford."""
    data = fz.claim(tiny_codec, fz.first_scale_stream(tiny_codec, 2, 2), 640, 480)
    with pytest.raises(LimitError, match="max_frame_pixels=307199"):
        tiny_codec.decode(data, fill="none", limits=Limits(max_frame_pixels=640 * 480 - 1))
    frames = tiny_codec.decode(data, fill="none", limits=Limits(max_frame_pixels=640 * 480))
    assert frames.shape == (2, 480, 640, 3)
    with pytest.raises(LimitError, match="max_pixels=614399.*max_pixels=614400"):
        tiny_codec.decode_tokens(data, limits=Limits(max_pixels=2 * 640 * 480 - 1))


@pytest.mark.weights
def test_bombs_of_the_shipped_model_end_in_limit_error_in_a_capped_process(tmp_path):
    """The issue's check: progvc.decode in a process whose address space is capped 4 GB above its
    size at start ends in a ProgvcError in under a second."""
    from progvc.weights import weights_dir

    if not (weights_dir() / "manifest.json").exists():
        pytest.skip("progvc/weights/manifest.json is absent")
    codec = progvc.Codec.from_pretrained(device="cpu")
    for name, data in (("size", fz.size_bomb(codec)), ("length", fz.length_bomb(codec))):
        (tmp_path / f"{name}.pvc").write_bytes(data)
    script = f"""
import resource, time
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 30), size + (4 << 30)))
import progvc
for name in ("size", "length"):
    data = open({str(tmp_path)!r} + f"/{{name}}.pvc", "rb").read()
    t0 = time.perf_counter()
    try:
        progvc.decode(data, device="cpu")
    except progvc.ProgvcError as exc:
        print(name, type(exc).__name__, time.perf_counter() - t0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": "."})
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["size", "LimitError"], ["length", "LimitError"]], out
    assert all(float(line[2]) < 1.0 for line in lines), lines


def test_limits_are_validated_and_named():
    for bad in (dict(max_pixels=0), dict(max_frame_pixels=True), dict(max_pixels=1.5)):
        with pytest.raises(ConfigError, match="Limits.max_"):
            Limits(**bad)
    with pytest.raises(ConfigError, match="progvc.Limits"):
        progvc.decode(fz.synthetic_streams()[0], limits={"max_pixels": 1})
    assert Limits.unlimited().max_frame_pixels >= bs.MAX_SIDE ** 2
    assert Limits.unlimited().max_pixels >= bs.MAX_SIDE ** 2 * bs.MAX_FRAMES


def test_encode_refuses_frames_above_the_limit_before_model_work(tiny_codec, no_model_work, monkeypatch):
    monkeypatch.setattr(tiny_codec.tokenizer, "tokenize", None)
    with pytest.raises(LimitError, match="the video has frames of 28x20 .*max_frame_pixels=28x20|--max-frame-pixels"):
        tiny_codec.encode(smooth_clip(2, 20, 28), limits=Limits(max_frame_pixels=28 * 20 - 1))


# -- GOP by GOP ----------------------------------------------------------------------------------

def test_iter_decode_checks_up_front_and_decodes_a_gop_only_when_asked(tiny_codec, monkeypatch):
    data = tiny_codec.encode(smooth_clip(6, 20, 28, seed=1), gop_size=2)
    whole = tiny_codec.decode(data, seed=3)
    calls = []
    real = tiny_codec.gop_decoder
    monkeypatch.setattr(tiny_codec, "gop_decoder", lambda *a: calls.append(1) or real(*a))
    gops = tiny_codec.iter_decode(data, seed=3)
    assert not calls and gops.n_frames == 6 and gops.header.gop_size == 2 and "6 frames of 28x20" in repr(gops)
    first = next(gops)
    assert len(calls) == 1 and first.shape == (2, 20, 28, 3)
    assert np.array_equal(np.concatenate([first, *gops]), whole)
    bad = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(progvc.BitstreamError):
        tiny_codec.iter_decode(bad)  # raised by the call, before any next()
    prefix = data[:len(data) * 2 // 3]
    part = tiny_codec.iter_decode(prefix, partial=True, seed=3)
    got = np.concatenate(list(part))
    assert len(got) == part.n_frames == 4 and np.array_equal(got, tiny_codec.decode(prefix, partial=True, seed=3))


def test_coding_mode_is_not_held_between_gops(tiny_codec):
    gops = tiny_codec.iter_decode(tiny_codec.encode(smooth_clip(4, 12, 12, seed=2), gop_size=2))
    for _ in gops:
        assert not torch.is_inference_mode_enabled()


def test_encoding_a_path_reads_one_gop_at_a_time(tiny_codec, tmp_path, monkeypatch):
    from progvc.coding.gop import GopEncoder
    from progvc.video import io as video_io

    clip = smooth_clip(7, 20, 28, seed=4)
    video_io.write_video(tmp_path / "clip.y4m", clip, fps=10)
    read, seen = [], []
    real_rgb, real_latent = video_io._to_rgb, GopEncoder.latent
    monkeypatch.setattr(video_io, "_to_rgb", lambda *a: read.append(1) or real_rgb(*a))
    monkeypatch.setattr(GopEncoder, "latent", lambda self, x, *a: seen.append(len(read)) or real_latent(self, x, *a))
    data = tiny_codec.encode(tmp_path / "clip.y4m", gop_size=2, refine=0)
    assert seen == [2, 4, 6, 7]  # frames decoded from the file when each GOP was encoded
    monkeypatch.undo()
    assert data == tiny_codec.encode(video_io.read_video(tmp_path / "clip.y4m").frames, gop_size=2, refine=0, fps=10)
    assert tiny_codec.encode(tmp_path / "clip.y4m", gop_size=2, refine=0, max_frames=3) == \
        tiny_codec.encode(clip[:3], gop_size=2, refine=0, fps=10)


def test_probability_tables_made_in_slices_give_the_same_bytes(tiny_portable_codec, monkeypatch):
    """Encoder and decoder turn logits into tables a slice of rows at a time (ENTROPY_ENTRIES):
    the range coder codes rows in order, so the stream and the frames do not change. Only the
    portable model promises it: a float model's logits of a row may change with the number of
    rows in its matrix product (they do under PyTorch 2.14's CPU kernels)."""
    tiny_codec = tiny_portable_codec
    clip = smooth_clip(3, 20, 28, seed=6)
    data = tiny_codec.encode(clip)
    frames = tiny_codec.decode(data, seed=1)
    sampled = tiny_codec.decode(data, n_scales=2, fill="sample", seed=1)  # scales 3, 4 drawn, in slices below
    monkeypatch.setattr("progvc.runtime.memory.ENTROPY_ENTRIES", 3 * tiny_codec.config.tokenizer.codebook_size)
    assert len(progvc.runtime.memory.row_slices(7, tiny_codec.config.tokenizer.codebook_size)) == 3
    assert tiny_codec.encode(clip) == data
    assert np.array_equal(tiny_codec.decode(data, seed=1), frames)
    assert np.array_equal(tiny_codec.decode(data, n_scales=2, fill="sample", seed=1), sampled)
    updates = Decoder(tiny_codec, seed=1, previews=False).feed(data)
    assert np.array_equal(np.concatenate([u.frames for u in updates]), frames)


# -- memory estimate -----------------------------------------------------------------------------

def held_bytes(obj, seen: set) -> int:
    """Bytes of the distinct tensor storages reachable through lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(x, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(held_bytes(x, seen) for x in obj.values())
    if type(obj).__module__.startswith("progvc.models.cached_attention"):  # the KV caches
        return held_bytes(vars(obj), seen)
    return 0


@pytest.mark.parametrize("scales", [None, 2])
@pytest.mark.parametrize("temporal", [True, False])
def test_the_context_estimate_is_what_a_gop_state_holds(tiny_codec, temporal, scales):
    """The estimate's largest part, checked against the tensors a real GOP keeps, at its peak over
    every step of coding (every scale, and a stream cut to 2 scales): when the coding path changes
    what it caches, this fails until progvc.runtime.memory follows. Coded through the last scale, or
    finished for synthesis, the GOP keeps no attention cache at all."""
    from progvc.coding.footprint import estimate

    data = tiny_codec.encode(smooth_clip(4, 20, 28, seed=7), gop_size=4, temporal=temporal, n_scales=scales)
    states, peaks = [], []
    real = progvc.coding.gop.GopState

    class Spy(real):
        def logits(self, t, k):
            out = super().logits(t, k)
            peaks.append(held_bytes(vars(self), set()))
            return out

        def commit(self, t, k, tokens):
            super().commit(t, k, tokens)
            peaks.append(held_bytes(vars(self), set()))

    def spy(*args, **kwargs):
        states.append(Spy(*args, **kwargs))
        return states[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("progvc.coding.gop.GopState", spy)
        tiny_codec.decode(data, fill="none")
    (state,) = states
    need = estimate(tiny_codec.config, 28, 20, 4, scales or tiny_codec.n_scales, temporal=temporal)
    assert max(peaks) == need.context
    assert state.cache.own == [[]] * 4 and state.cache.mem == [[]] * 4


def test_a_job_that_will_not_fit_is_refused_with_the_estimate(tiny_codec, monkeypatch):
    data = tiny_codec.encode(smooth_clip(4, 20, 28, seed=8), gop_size=4)
    tight = Limits(max_memory=1 << 20)
    monkeypatch.setattr("progvc.coding.gop.GopState", None)
    for call in (lambda: tiny_codec.decode(data, limits=tight), lambda: tiny_codec.iter_decode(data, limits=tight),
                 lambda: Decoder(tiny_codec, limits=tight).feed(data),
                 lambda: tiny_codec.encode(smooth_clip(4, 20, 28), limits=tight)):
        with pytest.raises(LimitError, match=r"needs about .*context caches .*max_memory=1048576.*--max-memory"):
            call()
    monkeypatch.setattr("progvc.runtime.memory.available", lambda: 1 << 20)
    monkeypatch.setattr("progvc.codec.limits.available", lambda: 1 << 20)
    with pytest.raises(LimitError, match="available on this machine"):
        tiny_codec.iter_decode(data)


def test_a_short_clip_is_checked_for_the_frames_it_has_not_the_gop_it_could_fill(tiny_codec):
    """A GOP longer than the clip codes the clip as one short GOP, so encode's memory check
    counts the clip's frames: a long default GOP does not refuse a short clip."""
    from progvc.coding.footprint import estimate

    clip = smooth_clip(4, 20, 28, seed=8)
    need = {g: estimate(tiny_codec.config, 28, 20, g, tiny_codec.n_scales, encode=True, refine=True).total
            for g in (4, 64)}
    assert need[64] > need[4]
    fits = Limits(max_memory=need[4])
    long, short = (bs.unpack(tiny_codec.encode(clip, gop_size=g, limits=fits)) for g in (64, 4))
    assert long.header.gop_size == 64 and long.gops == short.gops  # the same tokens; only the header differs


def test_the_default_gop_is_as_long_as_8_frames_of_1080p_allow(tiny_codec):
    """Without gop_size, encode codes GOPs of up to 32 frames, fewer at larger sizes, so that a
    default GOP's decode needs no more memory than 8 frames of 1080p (the measured row)."""
    from progvc.coding.footprint import estimate
    from progvc.coding.options import default_gop_size
    from progvc.models.config import small_config

    sizes = {"qcif": (176, 144), "cif": (352, 288), "480p": (854, 480), "576p": (1024, 576), "720p": (1280, 720),
             "1080p": (1920, 1080), "4k": (3840, 2160)}
    gops = {name: default_gop_size(w, h) for name, (w, h) in sizes.items()}
    assert gops == {"qcif": 32, "cif": 32, "480p": 32, "576p": 24, "720p": 16, "1080p": 8, "4k": 8}
    cfg = small_config()
    reference = estimate(cfg, 1920, 1080, 8, 10).total  # pixels are not quite memory: within 3%
    ratios = {name: estimate(cfg, w, h, gops[name], 10).total / reference for name, (w, h) in sizes.items()}
    assert max(r for name, r in ratios.items() if name != "4k") < 1.03, ratios
    clip = smooth_clip(3, 20, 28, seed=8)
    assert bs.parse_header(tiny_codec.encode(clip)).gop_size == default_gop_size(28, 20) == 32
    assert bs.parse_header(tiny_codec.encode(clip, gop_size=2)).gop_size == 2


def test_memory_estimate_of_the_shipped_architecture_matches_the_measured_table():
    """The numbers benchmarks/README.md quotes, so that a change to the estimate shows there."""
    from progvc.coding.footprint import estimate
    from progvc.models.config import small_config
    from progvc.runtime.memory import available

    cfg = small_config()
    gib = {name: estimate(cfg, w, h, 8, 10).total / 2**30 for name, (w, h) in
           {"cif": (352, 288), "720p": (1280, 720), "1080p": (1920, 1080)}.items()}
    assert 0.4 < gib["cif"] < 1 and 0.7 < gib["720p"] < 1.5 and 0.8 < gib["1080p"] < 1.5, gib
    assert "context caches" in str(estimate(cfg, 1920, 1080, 8, 10))
    assert available() is None or available() > 0
