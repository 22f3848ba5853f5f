"""The command line fails fast and clearly: every check runs before a model is loaded or a frame read,
and every message names the flag the user typed and what to do. One test per friction of issue 16,
through ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import progvc
from progvc import cli
from progvc.codec.codec import Codec
from progvc.models.config import tiny_config
from progvc.video import io as video_io
from progvc.weights import save_weights

from .helpers import random_weights, run_cli, smooth_clip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny weights, a 6-frame clip as .y4m and raw .yuv, its stream (2 GOPs of 4 scales), a cut copy."""
    root = tmp_path_factory.mktemp("checks")
    cfg = tiny_config()
    save_weights(root / "tiny.safetensors", random_weights(cfg), cfg)
    clip = smooth_clip(6, 20, 28, seed=5)
    video_io.write_video(root / "clip.y4m", clip, fps=12)
    (root / "raw.yuv").write_bytes(bytes(28 * 20 * 3 // 2 * 2))  # two 28x20 yuv420p frames
    codec = Codec.from_file(root / "tiny.safetensors", device="cpu")
    data = codec.encode(clip, fps=12, gop_size=4)
    (root / "clip.pvc").write_bytes(data)
    (root / "two.pvc").write_bytes(progvc.truncate(data, n_scales=2))
    (root / "cut.pvc").write_bytes(data[: len(data) - 7])
    return root


def w(root: Path) -> list:
    return ["--weights", root / "tiny.safetensors"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a model is loaded, a video read or anything coded."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the command line was checked")

    for name in ("from_pretrained", "from_file", "encode_with_stats", "decode", "iter_decode"):
        monkeypatch.setattr(Codec, name, refuse)
    for name in ("read_video", "open_video"):
        monkeypatch.setattr(video_io, name, refuse)


def fails(argv, capsys, code, *words):
    """main(argv) fails with ``code`` and a one-line message holding every word."""
    _, err = run_cli(argv, capsys, code=code)
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize(("flag", "value"), [("--bpp", "0"), ("--frames", "0"), ("--gop", "0"), ("--scales", "1000"),
                                             ("--max-side", "0"), ("--fps", "-1"), ("--refine", "-1"),
                                             ("--inter-lambda-scale", "0.5"), ("--coarse-lambda-scale", "0.5"),
                                             ("--coarse-lambda-scale", "1,2,3"), ("--size", "20by28")])
def test_encode_option_values_fail_before_work_naming_the_flag(files, tmp_path, capsys, no_work, flag, value):
    fails(["encode", files / "clip.y4m", tmp_path / "o.pvc", flag, value, *w(files)], capsys, cli.EXIT_USAGE,
          f"argument {flag}:", repr(value))
    assert not list(tmp_path.iterdir())


def test_scales_beyond_the_model_fail_before_loading_it(files, tmp_path, capsys, no_work):
    fails(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--scales", "5", *w(files)], capsys, cli.EXIT_USAGE,
          "--scales 5", "has 4 scales", "--scales 1..4")


@pytest.mark.parametrize(("flag", "value"), [("--seed", "-1"), ("--temperature", "-1"), ("--temperature", "200"),
                                             ("--top-k", "-1"), ("--top-p", "-1"), ("--top-p", "2"), ("--scales", "0")])
def test_decode_option_values_fail_before_work_naming_the_flag(files, tmp_path, capsys, no_work, flag, value):
    fails(["decode", files / "clip.pvc", tmp_path / "o.mp4", flag, value, *w(files)], capsys, cli.EXIT_USAGE,
          f"argument {flag}:")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_that_takes_no_files_fails_before_work_naming_the_target(files, capsys, no_work):
    err = fails(["decode", files / "clip.pvc", "/proc/out.mp4", *w(files)], capsys, cli.EXIT_INPUT,
                "'/proc/out.mp4'", "choose another output folder")
    assert ".part" not in err
    fails(["encode", files / "clip.y4m", "/proc/o.pvc", *w(files)], capsys, cli.EXIT_INPUT, "'/proc/o.pvc'")


def test_raw_video_messages_name_size_and_pix_fmt_flags(files, tmp_path, capsys, no_work):
    err = fails(["encode", files / "raw.yuv", tmp_path / "o.pvc", *w(files)], capsys, cli.EXIT_USAGE,
                "--size WxH", "raw.yuv")
    assert "size=(" not in err
    err = fails(["encode", files / "raw.yuv", tmp_path / "o.pvc", "--size", "27x20", *w(files)], capsys,
                cli.EXIT_USAGE, "--size", "--pix-fmt", "27x20 yuv420p")
    assert "pix_fmt_in" not in err
    fails(["encode", files / "raw.yuv", tmp_path / "o.pvc", "--size", "28x20", "--pix-fmt", "yuv9", *w(files)],
          capsys, cli.EXIT_USAGE, "argument --pix-fmt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_messages_name_the_flag(files, tmp_path, capsys, no_work):
    err = fails(["encode", files / "clip.y4m", tmp_path / "o.pvc", "--device", "cuda", *w(files)], capsys,
                cli.EXIT_DEVICE, "--device cuda", "use --device cpu")
    assert "device=" not in err
    fails(["decode", files / "clip.pvc", tmp_path / "o.mp4", "--device", "tpu", *w(files)], capsys,
          cli.EXIT_DEVICE, "--device tpu")


def test_a_stream_given_to_encode_says_to_decode_it(files, tmp_path, capsys, no_work):
    fails(["encode", files / "clip.pvc", tmp_path / "o.pvc", *w(files)], capsys, cli.EXIT_USAGE,
          "progvc stream", "progvc decode")


def test_a_bpp_below_the_smallest_stream_answers_in_bpp(files, tmp_path, capsys):
    err = fails(["truncate", files / "clip.pvc", tmp_path / "o.pvc", "--bpp", "0.0001"], capsys, cli.EXIT_USAGE,
                "--bpp 0.0001", "bpp", "or more")
    assert "bytes" not in err
    least = float(err.split("give --bpp ")[1].split()[0])
    run_cli(["truncate", files / "clip.pvc", tmp_path / "o.pvc", "--bpp", least], capsys)  # the suggestion works
    fails(["encode", files / "clip.y4m", tmp_path / "e.pvc", "--bpp", "0.0001", *w(files), "--refine", "0"], capsys,
          cli.EXIT_USAGE, "--bpp 0.0001", "bpp (the header and the first scale of every GOP", "or more")
    assert not (tmp_path / "e.pvc").exists()


def test_a_cut_stream_points_to_partial(files, tmp_path, capsys, no_work):
    for argv in (["decode", files / "cut.pvc", tmp_path / "o.mp4", *w(files)], ["info", files / "cut.pvc"],
                 ["truncate", files / "cut.pvc", tmp_path / "o.pvc", "--scales", "1"]):
        err = fails(argv, capsys, cli.EXIT_STREAM, "cut short", "--partial")
        assert "partial=True" not in err
    run_cli(["info", files / "cut.pvc", "--partial"], capsys)


def test_decode_scales_beyond_the_stream_fail_before_work(files, tmp_path, capsys, no_work):
    fails(["decode", files / "two.pvc", tmp_path / "o.mp4", "--scales", "3", *w(files)], capsys, cli.EXIT_USAGE,
          "--scales 3", "holds only 2", "--scales 1..2")
    assert not list(tmp_path.iterdir())


def test_decode_scales_beyond_some_gops_warn_and_decode(files, tmp_path, capsys):
    data = (files / "clip.pvc").read_bytes()
    budgets = range(len(progvc.truncate(data, n_scales=2)), len(data), 7)
    uneven = next(u for u in (progvc.truncate(data, max_bytes=b) for b in budgets)
                  if len({len(g) for g in progvc.stream.format.unpack(u).gops}) == 2)
    counts = [len(g) for g in progvc.stream.format.unpack(uneven).gops]
    assert len(set(counts)) == 2, counts
    (tmp_path / "uneven.pvc").write_bytes(uneven)
    _, err = run_cli(["decode", tmp_path / "uneven.pvc", tmp_path / "o.mp4", "--scales", max(counts), *w(files)],
                     capsys)
    assert err.startswith("progvc: warning: --scales") and "hold fewer scales" in err
    assert (tmp_path / "o.mp4").exists()


def test_decode_writes_player_friendly_video_unless_exact(files, tmp_path, capsys):
    import av

    codec = Codec.from_file(files / "tiny.safetensors", device="cpu")
    frames = codec.decode((files / "clip.pvc").read_bytes(), seed=0)
    for name, exact, pix_fmt in (("p.mp4", False, "yuv420p"), ("p.y4m", False, "yuv420p"),
                                 ("x.mkv", True, "gbrp"), ("x.y4m", True, "yuv444p16le")):
        out, _ = run_cli(["decode", files / "clip.pvc", tmp_path / name, "--seed", 0, *w(files),
                      *(["--exact"] if exact else [])], capsys)
        assert ("exact RGB" if exact else "8-bit 4:2:0") in out
        with av.open(str(tmp_path / name)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == pix_fmt, name
        assert exact == np.array_equal(video_io.read_video(tmp_path / name).frames, frames), name


def test_encode_frame_limit_downscale_progress_and_quiet(files, tmp_path, capsys):
    out, err = run_cli(["encode", files / "clip.y4m", tmp_path / "a.pvc", "--frames", 3, "--max-side", 14, "--progress",
                    "--refine", 0, *w(files)], capsys)
    facts = progvc.info((tmp_path / "a.pvc").read_bytes())
    assert (facts.n_frames, facts.width, facts.height) == (3, 14, 10) and "3 frames of 14x10" in out
    assert "encode:" in err and "/12 " in err  # the bar on stderr, counting 3 frames x 4 scales
    out, err = run_cli(["decode", tmp_path / "a.pvc", tmp_path / "a.mp4", "--quiet", *w(files)], capsys)
    assert out == err == ""
    assert video_io.read_video(tmp_path / "a.mp4").frames.shape == (3, 10, 14, 3)


def test_existing_outputs_still_need_force(files, tmp_path, capsys, no_work):
    (tmp_path / "o.mp4").write_bytes(b"keep")
    fails(["decode", files / "clip.pvc", tmp_path / "o.mp4", *w(files)], capsys, cli.EXIT_EXISTS, "-f")
    assert (tmp_path / "o.mp4").read_bytes() == b"keep"


def test_bench_help_shows_defaults_and_examples(capsys):
    out, _ = run_cli(["bench", "--help"], capsys)
    assert "(default: 16)" in out and "(default: bench-results)" in out and "examples:" in out
    assert "progvc bench ../shared/clips/dev" in out
