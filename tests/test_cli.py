"""The ``progvc`` command through ``main(argv)``: every verb, every exit code, atomic outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import progvc
from progvc import cli
from progvc.cli import commands
from progvc.codec.codec import Codec
from progvc.models.config import tiny_config
from progvc.runtime.atomic import file_mode
from progvc.video.io import read_video, write_video
from progvc.weights import save_weights

from .helpers import random_weights, run_cli, smooth_clip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny weights file, a 6-frame clip (2 GOPs) and its stream, in a fresh folder."""
    root = tmp_path_factory.mktemp("cli")
    cfg = tiny_config()
    save_weights(root / "tiny.safetensors", random_weights(cfg), cfg)
    clip = smooth_clip(6, 20, 28, seed=3)
    write_video(root / "clip.y4m", clip, fps=12)
    assert cli.main(["encode", str(root / "clip.y4m"), str(root / "clip.pvc"), "--gop", "4", *_w(root)]) == 0
    return root


def _w(root):
    return ["--weights", str(root / "tiny.safetensors"), "--device", "cpu"]


@pytest.fixture(scope="module")
def codec(files):
    return Codec.from_file(files / "tiny.safetensors", device="cpu")


def test_encode_matches_the_library_and_decode_writes_exact_frames(files, codec, tmp_path, capsys):
    clip = read_video(files / "clip.y4m")
    data = (files / "clip.pvc").read_bytes()
    assert data == codec.encode(clip.frames, fps=clip.fps, gop_size=4)
    out, _ = run_cli(["decode", files / "clip.pvc", tmp_path / "out.y4m", *_w(files), "--seed", 4, "--exact"], capsys)
    assert "6 frames of 28x20" in out and "exact RGB 4:4:4" in out
    back = read_video(tmp_path / "out.y4m")
    assert np.array_equal(back.frames, codec.decode(data, seed=4)) and back.fps == 12
    run_cli(["decode", files / "clip.pvc", tmp_path / "f_%03d.png", *_w(files), "--scales", 2, "--fill", "none"],
            capsys)
    pngs = read_video(tmp_path / "f_%03d.png").frames
    assert np.array_equal(pngs, codec.decode(data, 2, fill="none"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_001.png", "f_002.png", "f_003.png", "f_004.png",
                                                          "f_005.png", "f_006.png", "out.y4m"]


def test_encode_options_frames_scales_and_bpp(files, codec, tmp_path, capsys):
    run_cli(["encode", files / "clip.y4m", tmp_path / "a.pvc", "--frames", 3, "--scales", 2, "--gop", 2, *_w(files)],
        capsys)
    facts = progvc.info((tmp_path / "a.pvc").read_bytes())
    assert (facts.n_frames, facts.coded_scales, facts.gop_size) == (3, 2, 2)
    out, _ = run_cli(["encode", files / "clip.y4m", tmp_path / "b.pvc", "--bpp", 1.0, *_w(files)], capsys)
    assert progvc.info((tmp_path / "b.pvc").read_bytes()).bpp <= 1.0 and "bpp" in out
    run_cli(["encode", files / "clip.y4m", tmp_path / "c.pvc", "--inter-lambda-scale", 1, "--quality", 90, *_w(files)],
        capsys)
    clip = read_video(files / "clip.y4m")
    same = codec.encode(clip.frames, fps=clip.fps, quality=90, inter_lambda_scale=1)
    assert (tmp_path / "c.pvc").read_bytes() == same != codec.encode(clip.frames, fps=clip.fps, quality=90)
    run_cli(["encode", files / "clip.y4m", tmp_path / "e.pvc", "--coarse-lambda-scale", "1,4", *_w(files)], capsys)
    coarse = codec.encode(clip.frames, fps=clip.fps, coarse_lambda_scale=(1, 4))
    assert (tmp_path / "e.pvc").read_bytes() == coarse != codec.encode(clip.frames, fps=clip.fps)
    out, _ = run_cli(["encode", files / "clip.y4m", tmp_path / "d.pvc", "--resize", 2, *_w(files)], capsys)
    assert (tmp_path / "d.pvc").read_bytes() == codec.encode(clip.frames, fps=clip.fps, resize=2)
    assert f"of {clip.frames.shape[2]}x{clip.frames.shape[1]}" in out  # the size shown, not the coded one


def test_truncate_verbs_equal_the_library(files, tmp_path, capsys):
    data = (files / "clip.pvc").read_bytes()
    bpp, smallest = round(0.8 * progvc.info(data).bpp, 3), len(progvc.truncate(data, n_scales=1))
    for option, value in (("--scales", 2), ("--max-bytes", (smallest + len(data)) // 2), ("--bpp", bpp)):
        out = tmp_path / f"t{option}.pvc"
        run_cli(["truncate", files / "clip.pvc", out, option, value], capsys)
        key = option.lstrip("-").replace("-", "_").replace("scales", "n_scales")
        assert out.read_bytes() == progvc.truncate(data, **{key: value})
        assert out.stat().st_mode & 0o777 == file_mode()  # not mkstemp's 0600


def test_info_text_and_json(files, capsys):
    data = (files / "clip.pvc").read_bytes()
    out, _ = run_cli(["info", files / "clip.pvc"], capsys)
    assert out == str(progvc.info(data)) + "\n"
    out, _ = run_cli(["info", files / "clip.pvc", "--json"], capsys)
    assert json.loads(out) == json.loads(json.dumps(progvc.info(data).to_dict()))
    cut = files / "cut.pvc"
    cut.write_bytes(data[:-3])
    run_cli(["info", cut], capsys, code=cli.EXIT_STREAM)
    out, _ = run_cli(["info", cut, "--json", "--partial"], capsys)
    assert json.loads(out)["complete"] is False


def test_existing_output_is_kept_without_force(files, tmp_path, capsys):
    out = tmp_path / "x.pvc"
    out.write_bytes(b"keep me")
    _, err = run_cli(["truncate", files / "clip.pvc", out, "--scales", 1], capsys, code=cli.EXIT_EXISTS)
    assert "-f" in err and out.read_bytes() == b"keep me"
    run_cli(["encode", files / "clip.y4m", out, *_w(files)], capsys, code=cli.EXIT_EXISTS)
    (tmp_path / "y_2.png").write_bytes(b"keep")
    run_cli(["decode", files / "clip.pvc", tmp_path / "y_%d.png", *_w(files)], capsys, code=cli.EXIT_EXISTS)
    run_cli(["truncate", files / "clip.pvc", out, "--scales", 1, "-f"], capsys)
    assert out.read_bytes() == progvc.truncate((files / "clip.pvc").read_bytes(), n_scales=1)


@pytest.mark.parametrize("verb", ["encode", "decode", "truncate", "info"])
def test_missing_input(files, tmp_path, capsys, verb):
    extra = {"encode": [tmp_path / "o.pvc", *_w(files)], "decode": [tmp_path / "o.y4m", *_w(files)],
             "truncate": [tmp_path / "o.pvc", "--scales", 1], "info": []}[verb]
    _, err = run_cli([verb, tmp_path / "nope.mp4", *extra], capsys, code=cli.EXIT_INPUT)
    assert "nope.mp4" in err and not list(tmp_path.glob("o*"))


def test_not_a_video_and_missing_output_folder(files, tmp_path, capsys):
    run_cli(["encode", files / "tiny.safetensors", tmp_path / "o.pvc", *_w(files)], capsys, code=cli.EXIT_INPUT)
    run_cli(["truncate", files / "clip.pvc", tmp_path / "no" / "o.pvc", "--scales", 1], capsys, code=cli.EXIT_INPUT)


def test_corrupt_stream(files, tmp_path, capsys):
    bad = bytearray((files / "clip.pvc").read_bytes())
    bad[len(bad) // 2] ^= 0x10
    (tmp_path / "bad.pvc").write_bytes(bytes(bad))
    (tmp_path / "junk.pvc").write_bytes(b"definitely not a stream")
    for name in ("bad.pvc", "junk.pvc"):
        run_cli(["decode", tmp_path / name, tmp_path / "o.mkv", *_w(files)], capsys, code=cli.EXIT_STREAM)
        run_cli(["truncate", tmp_path / name, tmp_path / "o.pvc", "--scales", 1], capsys, code=cli.EXIT_STREAM)
        run_cli(["info", tmp_path / name], capsys, code=cli.EXIT_STREAM)
    assert not list(tmp_path.glob("o*"))


def test_stream_of_other_weights_is_refused(files, tmp_path, capsys):
    cfg = tiny_config(name="other")
    save_weights(tmp_path / "other.safetensors", random_weights(cfg), cfg)
    _, err = run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--weights", tmp_path / "other.safetensors",
                  "--device", "cpu"], capsys, code=cli.EXIT_STREAM)
    assert "progvc-tiny" in err


@pytest.mark.parametrize("argv", [
    ["truncate", "{d}/clip.pvc", "{t}/o.pvc", "--scales", "0"],
    ["encode", "{d}/clip.y4m", "{t}/o.pvc", "--scales", "99", "--weights", "{d}/tiny.safetensors"],
    ["decode", "{d}/clip.pvc", "{t}/o.y4m", "--scales", "9", "--weights", "{d}/tiny.safetensors"],
    ["decode", "{d}/clip.pvc", "{t}/o.y4m", "--top-p", "2", "--weights", "{d}/tiny.safetensors"],
    ["decode", "{d}/clip.pvc", "{t}/o.avi", "--weights", "{d}/tiny.safetensors"],
    ["decode", "{d}/clip.pvc", "{t}/o_%.png"],
    ["encode", "{d}/clip.y4m", "{t}/o.pvc", "--scales", "2", "--bpp", "1"],
    ["encode", "{d}/clip.y4m", "{t}/o.pvc", "--model", "x", "--weights", "{d}/tiny.safetensors"],
    ["encode", "{d}/clip.y4m", "{t}/o.pvc", "--size", "20by28"],
    ["truncate", "{d}/clip.pvc", "{t}/o.pvc", "--scales", "1", "--max-bytes", "100"],
    ["truncate", "{d}/clip.pvc", "{t}/o.pvc"],
    ["truncate", "{d}/clip.pvc", "{t}/o.pvc", "--max-bytes", "60"],
    ["frobnicate"],
    [],
])
def test_usage_errors(files, tmp_path, capsys, argv):
    run_cli([a.format(d=files, t=tmp_path) for a in argv], capsys, code=cli.EXIT_USAGE)
    assert not list(tmp_path.iterdir())


def test_weights_errors(files, tmp_path, capsys):
    run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--weights", tmp_path / "none.safetensors"], capsys,
        code=cli.EXIT_WEIGHTS)
    (tmp_path / "junk.safetensors").write_bytes(b"\0" * 64)
    run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--weights", tmp_path / "junk.safetensors"], capsys,
        code=cli.EXIT_WEIGHTS)


def test_shipped_model_missing_is_a_weights_error(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(tmp_path))
    _, err = run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--device", "cpu"], capsys,
                 code=cli.EXIT_WEIGHTS)
    assert "manifest" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_error(files, tmp_path, capsys):
    _, err = run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--weights", files / "tiny.safetensors",
                  "--device", "cuda"], capsys, code=cli.EXIT_DEVICE)
    assert "CUDA" in err
    run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--device", "tpu"], capsys, code=cli.EXIT_DEVICE)


def test_failed_or_interrupted_writes_leave_no_output(files, tmp_path, capsys, monkeypatch):
    import progvc.video.io as video_io

    def broken(path, *args, **kw):
        with open(path, "wb") as f:
            f.write(b"half a video")
        raise OSError(28, "disk on fire")

    monkeypatch.setattr(video_io, "_write_container", broken)
    monkeypatch.setattr(video_io, "_write_png", broken)
    for out in ("o.mp4", "o_%02d.png"):
        _, err = run_cli(["decode", files / "clip.pvc", tmp_path / out, *_w(files)], capsys, code=cli.EXIT_INPUT)
        assert "disk on fire" in err and str(tmp_path / out) in err  # the target, not a temporary name
        assert ".part" not in err and "progvc-" not in err
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Codec, "encode_with_stats", interrupted)
    run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", *_w(files)], capsys, code=cli.EXIT_INTERRUPTED)
    monkeypatch.setattr(commands, "truncate", lambda *a, **k: 1 / 0)
    _, err = run_cli(["truncate", files / "clip.pvc", tmp_path / "o.pvc", "--scales", 1], capsys,
                 code=cli.EXIT_INTERNAL)
    assert "internal error (ZeroDivisionError" in err
    assert not list(tmp_path.iterdir())


def test_a_gop_that_fails_after_others_were_written_leaves_no_output(files, tmp_path, capsys):
    """Frames are written GOP by GOP as they are decoded; a later GOP's failure is reported as
    what it is (a corrupt stream, not a writing error) and removes what was written."""
    from dataclasses import replace

    from progvc.stream import format as bs

    stream = bs.unpack((files / "clip.pvc").read_bytes())
    first, second = stream.gops
    bad = (second[0], replace(second[1], crc_tokens=second[1].crc_tokens ^ 1), *second[2:])
    (tmp_path / "bad.pvc").write_bytes(bs.pack(replace(stream, gops=(first, bad))))
    for out in ("o.mkv", "o_%02d.png"):
        _, err = run_cli(["decode", tmp_path / "bad.pvc", tmp_path / out, *_w(files)], capsys, code=cli.EXIT_STREAM)
        assert "scale 2 of GOP 2" in err or "scale 2 decoded" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pvc"]


def test_limits_are_checked_before_work_and_can_be_raised(files, tmp_path, capsys, monkeypatch):
    _, err = run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-frame-pixels", 559, *_w(files)], capsys,
                 code=cli.EXIT_LIMIT)
    assert "max_frame_pixels=559" in err and "--max-frame-pixels 28x20" in err
    _, err = run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-pixels", "3e3", *_w(files)], capsys,
                 code=cli.EXIT_LIMIT)
    assert "--max-pixels 3360" in err
    _, err = run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--max-frame-pixels", "27x20", *_w(files)],
                 capsys, code=cli.EXIT_LIMIT)
    assert "the video has frames of 28x20" in err and not list(tmp_path.iterdir())
    for bad in ("0", "-5", "1.5", "axb", "inf", "nan"):
        run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-pixels", bad, *_w(files)], capsys,
            code=cli.EXIT_USAGE)
    for bad in ("0", "1.5X", "G", "nanM"):
        run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-memory", bad, *_w(files)], capsys,
            code=cli.EXIT_USAGE)
    _, err = run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-memory", "1K", *_w(files)], capsys,
                 code=cli.EXIT_LIMIT)
    assert "needs about" in err and "--max-memory 1G" in err
    run_cli(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--max-memory", "0.001M", *_w(files)], capsys,
        code=cli.EXIT_LIMIT)
    monkeypatch.setattr(Codec, "from_file", None)  # a refused stream loads no model
    run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-pixels", 3359, *_w(files)], capsys,
        code=cli.EXIT_LIMIT)
    monkeypatch.undo()
    run_cli(["decode", files / "clip.pvc", tmp_path / "o.y4m", "--max-frame-pixels", "28x20", "--max-pixels", 3360,
         *_w(files)], capsys)


def test_help_version_and_bench_delegation(capsys, monkeypatch):
    for verb in ([], ["encode"], ["decode"], ["truncate"], ["info"]):
        out, _ = run_cli([*verb, "--help"], capsys)
        assert "examples:" in out and "exit codes:" in out
    out, _ = run_cli(["--version"], capsys)
    assert progvc.__version__ in out
    from progvc.bench import rd

    seen = []
    monkeypatch.setattr(rd, "main", lambda argv: seen.append(argv) or 0)
    run_cli(["bench", "clips", "--out", "r", "--frames", "4"], capsys)
    assert seen == [["clips", "--out", "r", "--frames", "4"]]


def test_info_and_truncate_do_not_import_torch(files, tmp_path):
    code = ("import sys; from progvc.cli import main; "
            f"assert main(['info', {str(files / 'clip.pvc')!r}]) == 0; "
            f"assert main(['truncate', {str(files / 'clip.pvc')!r}, {str(tmp_path / 'o.pvc')!r}, '--scales', '1']) "
            "== 0; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
