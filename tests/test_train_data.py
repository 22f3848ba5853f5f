"""Training data pipeline: the clip cache and the random GOP windows drawn from it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from progvc.runtime.errors import ConfigError
from progvc.train.data import ClipWindows, _choose_runs, build_cache, downscale
from progvc.video.io import write_video

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"


def counter_clip(t: int, h: int, w: int) -> np.ndarray:
    """(t,h,w,3) uint8 where frame i is filled with value i: windows reveal which frames they hold."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


@pytest.fixture
def clip_dir(tmp_path: Path) -> Path:
    """A folder of small clips: two good ones, one broken, one excluded, one non-video."""
    d = tmp_path / "clips"
    d.mkdir()
    rng = np.random.default_rng(0)
    write_video(d / "wide.mkv", rng.integers(0, 256, (40, 24, 80, 3), dtype=np.uint8), 30)
    y = rng.integers(16, 236, (5, 24 * 32), dtype=np.uint8)
    uv = np.full((5, 2 * 12 * 16), 128, np.uint8)
    (d / "raw__32x24_5f.i420.yuv").write_bytes(np.concatenate([y, uv], axis=1).tobytes())
    (d / "broken.mp4").write_text("not a video")
    write_video(d / "dev_only.y4m", np.zeros((3, 8, 8, 3), np.uint8))
    (d / "README.md").write_text("clips")
    return d


def test_build_cache(clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="broken.mp4"):
        files = build_cache(clip_dir, cache, max_side=40, max_frames_per_clip=12, exclude=["dev_*"])
    assert sorted(f.name for f in files) == ["raw__32x24_5f.i420.yuv.npy", "wide.mkv.npy"]
    wide = np.load(cache / "wide.mkv.npy")
    assert wide.dtype == np.uint8 and wide.shape == (12, 12, 40, 3)  # 4 runs of 3 frames, long side 40
    meta = json.loads((cache / "wide.mkv.json").read_text())
    assert meta["runs"] == [[0, 3], [3, 3], [6, 3], [9, 3]]
    assert meta["source_runs"] == [[0, 3], [12, 3], [25, 3], [37, 3]] and meta["source_frames"] == 40
    assert meta["source_size"] == [80, 24]
    raw = np.load(cache / "raw__32x24_5f.i420.yuv.npy")
    assert raw.shape == (5, 24, 32, 3)  # small enough: not resized
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("cached") for line in lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = build_cache(clip_dir, cache, max_side=40, max_frames_per_clip=12, exclude=["dev_*"])
    assert again == files and "already" in capsys.readouterr().out
    assert not list(cache.glob("*.part"))


def test_build_cache_rebuilds_when_settings_change(clip_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_cache(clip_dir, cache, max_side=40, max_frames_per_clip=12)
        build_cache(clip_dir, cache, max_side=20, max_frames_per_clip=100)
    assert np.load(cache / "wide.mkv.npy").shape == (40, 6, 20, 3)
    with pytest.raises(ConfigError):
        build_cache(tmp_path / "nowhere", cache)


def test_choose_runs() -> None:
    assert _choose_runs(10, 300) == [(0, 10)]
    assert _choose_runs(400, 300) == [(0, 150), (250, 150)]
    runs = _choose_runs(1691, 300)
    assert len(runs) == 4 and all(length == 75 for _, length in runs) and runs[-1][0] + 75 == 1691


def test_downscale() -> None:
    flat = np.full((2, 1080, 1920, 3), 77, np.uint8)
    out = downscale(flat, 512)
    assert out.shape == (2, 288, 512, 3) and (out == 77).all()
    small = np.zeros((1, 5, 7, 3), np.uint8)
    assert downscale(small, 512) is small
    assert downscale(np.zeros((1, 1000, 3, 3), np.uint8), 100).shape == (1, 100, 1, 3)


def make_cache(tmp_path: Path) -> Path:
    """A hand-made cache: one counter clip with two runs, one tiny clip, one too short for a GOP."""
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "count.npy", counter_clip(10, 40, 50))
    (cache / "count.json").write_text(json.dumps({"runs": [[0, 5], [5, 5]]}))
    np.save(cache / "tiny.npy", np.random.default_rng(0).integers(0, 256, (6, 3, 2, 3), dtype=np.uint8))
    np.save(cache / "short.npy", np.zeros((2, 40, 50, 3), np.uint8))
    return cache


def test_windows_shapes_and_range(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    data = ClipWindows(cache, gop=4, crop=32, seed=0)
    assert [p.name for p, _ in data.clips] == ["count.npy", "tiny.npy"]  # short.npy has < 4 frames
    it = iter(data)
    for _ in range(20):
        x = next(it)
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
    single = next(iter(ClipWindows(cache, gop=1, crop=16)))
    assert single.shape == (1, 3, 16, 16)
    assert [p.name for p, _ in ClipWindows(cache, gop=4, crop=32, min_side=32).clips] == ["count.npy"]


def test_windows_stay_inside_runs_and_use_strides_and_reversal(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    (cache / "tiny.npy").unlink()
    data = ClipWindows(cache, gop=3, crop=8, seed=1)
    rng = np.random.default_rng(5)
    steps, directions = set(), set()
    for _ in range(200):
        frames = (data.sample(rng)[:, 0, 0, 0] * 255).round().int().tolist()
        assert len({f // 5 for f in frames}) == 1, frames  # never straddles the gap between runs
        diffs = {b - a for a, b in zip(frames, frames[1:], strict=False)}
        assert len(diffs) == 1, frames
        steps.add(abs(diffs.pop()))
        directions.add(frames[0] < frames[-1])
    assert steps == {1, 2} and directions == {True, False}


def test_small_clips_are_padded_and_flips_happen(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    ramp = np.broadcast_to(np.arange(6, dtype=np.uint8)[None, None, :, None] * 40, (4, 5, 6, 3)).copy()
    np.save(cache / "ramp.npy", ramp)
    data = ClipWindows(cache, gop=2, crop=16, seed=0)
    rng = np.random.default_rng(0)
    orientations = set()
    for _ in range(40):
        x = data.sample(rng)
        assert x.shape == (2, 3, 16, 16)
        row = (x[0, 0, 0] * 255).round().int()
        orientations.add(int(row[:6].sum() - row[-6:].sum()) > 0)  # padding mirrors, flips reverse
    assert len(orientations) == 2


def test_windows_are_seeded_and_worker_aware(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    a = [next(iter(ClipWindows(cache, gop=2, crop=8, seed=3))) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    b = next(iter(ClipWindows(cache, gop=2, crop=8, seed=4)))
    assert not torch.equal(a[0], b)
    loader = torch.utils.data.DataLoader(ClipWindows(cache, gop=2, crop=8, seed=3), batch_size=4, num_workers=2)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == 2:
            break
    assert batches[0].shape == (4, 2, 3, 8, 8) and not torch.equal(batches[0], batches[1])


def test_weights_are_capped(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "long.npy", np.zeros((100, 4, 4, 3), np.uint8))
    np.save(cache / "short.npy", np.zeros((10, 4, 4, 3), np.uint8))
    assert np.allclose(ClipWindows(cache, gop=2, crop=4).weights, [100 / 110, 10 / 110])
    assert np.allclose(ClipWindows(cache, gop=2, crop=4, weight_cap=20).weights, [20 / 30, 10 / 30])
    with pytest.raises(ConfigError, match="build_cache"):
        ClipWindows(tmp_path / "empty", gop=2)
    with pytest.raises(ConfigError):
        ClipWindows(cache, gop=0)


@pytest.mark.shared
def test_real_cache_when_built() -> None:
    cache = Path(__file__).resolve().parents[1] / "cache" / "train"
    if not SHARED_CLIPS.is_dir() or not any(cache.glob("*.npy")):
        pytest.skip("no built training cache (run build_cache on ../shared/clips/train)")
    x = next(iter(ClipWindows(cache, gop=4, crop=128, seed=0)))
    assert x.shape == (4, 3, 128, 128) and x.std() > 0
