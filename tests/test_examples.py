"""Every example runs through its ``main(argv)`` on a tiny random model and writes what it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import progvc
from progvc.codec.codec import Codec
from progvc.models.config import tiny_config
from progvc.video.io import read_video, write_video
from progvc.weights import save_weights

from .helpers import random_weights, ship_tiny_model, smooth_clip

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    """Import examples/<name>.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    cfg = tiny_config()
    save_weights(path, random_weights(cfg), cfg)
    return path


def png_shape(path: Path) -> tuple[int, ...]:
    return read_video(path).frames.shape


def test_progressive_preview(weights, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["--weights", str(weights), "--device", "cpu", "--frames", "3", "--size", "40x24", "--out", str(out)]
    assert load("progressive_preview").main(args) == 0
    k = tiny_config().tokenizer.n_scales
    gap = 4
    assert png_shape(out) == (1, k * (24 + gap) + gap, 3 * (40 + gap) + gap, 3)
    table = [line for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(line.split()[0]) for line in table[1:]] == list(range(1, k + 1))


def test_progressive_preview_grid_is_exact(weights, tmp_path):
    module = load("progressive_preview")
    a = np.zeros((2, 3, 3), np.uint8)
    b = np.full((2, 3, 3), 200, np.uint8)
    image = module.grid([[a, b], [b, a]], gap=1)
    assert image.shape == (7, 9, 3)
    assert (image[1:3, 1:4] == 0).all() and (image[1:3, 5:8] == 200).all() and (image[0] == 255).all()
    module.write_png(tmp_path / "g.png", image)
    assert np.array_equal(read_video(tmp_path / "g.png").frames[0], image)


def test_adaptive_streaming(weights, tmp_path, capsys):
    out = tmp_path / "trace.png"
    args = ["--weights", str(weights), "--device", "cpu", "--frames", "10", "--size", "40x24", "--out", str(out),
            "--gop", "4", "--trace", "0:8,0.16:0.05,0.32:8"]
    assert load("adaptive_streaming").main(args) == 0
    assert png_shape(out)[0] == 1 and not [p for p in tmp_path.iterdir() if p.name != "trace.png"]
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1, 2]  # GOPs of 4, 4, 2 frames
    scales = [int(r[4]) for r in rows]
    assert scales[1] < scales[0], "the drop in bandwidth must drop scales"


def test_adaptive_streaming_keeps_what_fits(weights):
    module = load("adaptive_streaming")
    codec = Codec.from_file(weights, device="cpu")
    data = codec.encode(smooth_clip(8, 16, 24), fps=4, gop_size=4)  # 2 GOPs of one second each
    small, kept, budgets = module.adapt(data, [(0.0, 1e6)])
    assert small == data and kept == [4, 4]
    small, kept, _ = module.adapt(data, [(0.0, 1e-3)])
    assert small == progvc.truncate(data, n_scales=1) and kept == [1, 1]
    frames = module.receive(codec, small, seed=3)
    assert np.array_equal(frames, codec.decode(small, seed=3))


def test_batch_encode(weights, tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "streams"
    videos.mkdir()
    write_video(videos / "a.y4m", smooth_clip(3, 16, 24, seed=1))
    write_video(videos / "b.mp4", smooth_clip(5, 24, 16, seed=2))
    (videos / "broken.mp4").write_bytes(b"not a video")
    (videos / "notes.txt").write_text("ignored")
    module = load("batch_encode")
    args = [str(videos), "--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert module.main(args) == 1  # one file failed; the others are done
    summary = json.loads((out / "summary.json").read_text())
    status = {row["input"]: row["status"] for row in summary["files"]}
    assert status == {"a.y4m": "encoded", "b.mp4": "encoded", "broken.mp4": "failed"}
    assert sorted(p.name for p in out.iterdir()) == ["a.pvc", "b.pvc", "summary.json"]
    codec = Codec.from_file(weights, device="cpu")
    clip = read_video(videos / "a.y4m")
    assert (out / "a.pvc").read_bytes() == codec.encode(clip.frames, fps=clip.fps)
    (videos / "broken.mp4").unlink()
    assert module.main([*args, "--bpp", "2.0"]) == 0  # a rerun skips what exists
    assert {row["status"] for row in json.loads((out / "summary.json").read_text())["files"]} == {"skipped (exists)"}
    assert module.main([*args, "--bpp", "1.5", "--force", "--frames", "2"]) == 0
    facts = progvc.info((out / "b.pvc").read_bytes())
    assert facts.n_frames == 2 and facts.bpp <= 1.5
    assert "wrote" in capsys.readouterr().out


def test_quickstart_with_a_shipped_tiny_model(tmp_path, monkeypatch, capsys):
    """quickstart.py only loads shipped weights: point PROGVC_WEIGHTS_DIR at a tiny one."""
    ship_tiny_model(tmp_path, monkeypatch, name="tiny-quick", file="q.safetensors")
    write_video(tmp_path / "clip.y4m", smooth_clip(3, 24, 32))
    module = load("quickstart")
    out = tmp_path / "out"
    assert module.main([str(tmp_path / "clip.y4m"), "--frames", "2", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert module.cuts(4, full=False) == [1, 2, 4] and module.cuts(4, full=True) == [1, 2, 3, 4]
    names = ["clip.pvc", "original.mp4", "scales_1.mp4", "scales_2.mp4", "scales_4.mp4"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert "PSNR" in text and str(out / "scales_2.mp4") in text and "quickstart.py --full" in text
    assert progvc.info((out / "clip.pvc").read_bytes()).n_frames == 2
    assert read_video(out / "scales_4.mp4").frames.shape == (2, 24, 32, 3)
    full = [str(tmp_path / "clip.y4m"), "--full", "--frames", "1", "--device", "cpu", "--out", str(tmp_path / "full")]
    assert module.main(full) == 0
    assert len(list((tmp_path / "full").glob("scales_*.mp4"))) == 4
