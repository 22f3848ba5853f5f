"""read_video / write_video / sample_clip: every layout and container the codec promises to read.

Synthetic clips are written into ``tmp_path`` with PyAV, so the tests need no data files; the one
test on real clips skips when ``../shared/clips`` is absent.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progvc.runtime.errors import ConfigError, ProgvcError, VideoError
from progvc.video import io as video_io
from progvc.video.io import Video, iter_frames, read_video, write_video
from progvc.video.samples import sample_clip

from .helpers import moving, write_av

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# -- arrays ---------------------------------------------------------------------------------------

def test_uint8_array_passes_through_with_default_fps() -> None:
    x = moving(3, 8, 12)
    v = read_video(x)
    assert isinstance(v, Video) and v.fps == Fraction(25)
    assert v.frames.dtype == np.uint8 and v.frames.shape == (3, 8, 12, 3) and np.array_equal(v.frames, x)
    assert read_video(x, fps=30000 / 1001).fps == Fraction(30000, 1001)
    assert read_video(x, fps=Fraction(24)).fps == 24


def test_a_video_passes_through_at_its_rate(tiny_codec) -> None:
    """read_video's and sample_clip's result is itself a source (it failed as "dtype object" before)."""
    clip = Video(moving(2, 8, 12), Fraction(30000, 1001))
    v = read_video(clip)
    assert v.fps == clip.fps and np.array_equal(v.frames, clip.frames)
    assert read_video(clip, fps=24).fps == 24
    assert tiny_codec.encode(clip) == tiny_codec.encode(clip.frames, fps=clip.fps)


@pytest.mark.parametrize(
    ("array", "shape"),
    [
        (np.zeros((5, 7, 3), np.uint8), (1, 5, 7, 3)),  # one frame
        (np.zeros((1, 1, 1, 3), np.uint8), (1, 1, 1, 3)),  # 1x1
        (np.zeros((2, 17, 33, 3), np.uint8), (2, 17, 33, 3)),  # odd sizes
        (np.zeros((4, 6, 5), np.uint8), (4, 6, 5, 3)),  # (T,H,W) gray
        (np.zeros((4, 6, 5, 1), np.uint8), (4, 6, 5, 3)),  # (T,H,W,1) gray
        (np.zeros((6, 5), np.uint8), (1, 6, 5, 3)),  # one gray frame
        (np.zeros((2, 6, 5, 4), np.uint8), (2, 6, 5, 3)),  # RGBA
        ([[[[1, 2, 3]]]], (1, 1, 1, 3)),  # nested lists of ints in 0..255
    ],
)
def test_array_layouts(array: object, shape: tuple[int, ...]) -> None:
    frames = read_video(array).frames
    assert frames.shape == shape and frames.dtype == np.uint8 and frames.flags.c_contiguous


def test_gray_replicates_and_rgba_drops_alpha() -> None:
    gray = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)  # last axis 3 or 4 would mean one colour frame
    rgb = read_video(gray).frames
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))
    rgba = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    assert np.array_equal(read_video(rgba).frames, rgba[..., :3])


def test_torch_tensor() -> None:
    x = torch.randint(0, 256, (2, 9, 11, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(read_video(x).frames, x.numpy())
    assert read_video(x[0]).frames.shape == (1, 9, 11, 3)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((2, 4, 4, 3), np.float32), "uint8"),
        (np.full((2, 4, 4, 3), 300, np.int32), "0..255"),
        (np.zeros((2, 4, 4, 3), bool), "uint8"),
        (np.zeros((0, 4, 4, 3), np.uint8), "no frames"),
        (np.zeros((2, 3, 8, 8), np.uint8), "channel-first"),
        (np.zeros((2, 2, 4, 4, 3), np.uint8), "shape"),
        (torch.zeros(2, 4, 4, 3), "uint8"),
    ],
)
def test_bad_arrays_raise_video_error(array: object, words: str) -> None:
    with pytest.raises(VideoError, match=words):
        read_video(array)


def test_bad_options_raise_config_error() -> None:
    x = np.zeros((2, 4, 4, 3), np.uint8)
    for kwargs in ({"fps": 0}, {"fps": -3}, {"fps": "fast"}, {"max_frames": 0}, {"size": (0, 4)}):
        with pytest.raises(ConfigError):
            read_video(x, **kwargs)


def test_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_av(tmp_path / "odd.mkv", "ffv1", "bgr0", moving(5, 33, 17))
    monkeypatch.setattr(video_io, "MAX_SIDE", 32)
    with pytest.raises(VideoError, match="MAX_SIDE"):
        read_video(path)
    with pytest.raises(VideoError, match="MAX_SIDE"):
        read_video(np.zeros((1, 33, 17, 3), np.uint8))
    monkeypatch.setattr(video_io, "MAX_SIDE", 8192)
    monkeypatch.setattr(video_io, "MAX_FRAMES", 3)
    with pytest.raises(VideoError, match="MAX_FRAMES"):
        read_video(path)
    with pytest.raises(VideoError, match="MAX_FRAMES"):
        read_video(np.zeros((4, 2, 2, 3), np.uint8))
    assert read_video(path, max_frames=3).frames.shape[0] == 3
    with pytest.raises(ConfigError):
        read_video(path, max_frames=4)


# -- containers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.h264"])
def test_h264_files(tmp_path: Path, name: str) -> None:
    src = moving(6, 48, 64)
    path = write_av(tmp_path / name, "libx264", "yuv420p", src, rate=Fraction(30000, 1001), crf="12")
    v = read_video(path)
    assert v.frames.shape == src.shape and v.frames.dtype == np.uint8
    assert psnr(v.frames, src) > 30
    if name != "clip.h264":  # a raw Annex-B stream carries no rate FFmpeg trusts
        assert v.fps == Fraction(30000, 1001)
    assert read_video(path, max_frames=2).frames.shape[0] == 2
    assert read_video(path, fps=12).fps == 12
    assert [f.shape for f in iter_frames(path, max_frames=3)] == [(48, 64, 3)] * 3


def test_odd_size_lossless_mkv_and_size_check(tmp_path: Path) -> None:
    src = moving(4, 33, 17)
    path = write_av(tmp_path / "odd.mkv", "ffv1", "bgr0", src)
    assert np.array_equal(read_video(path).frames, src)
    assert read_video(path, size=(17, 33)).frames.shape == (4, 33, 17, 3)
    with pytest.raises(VideoError, match="17x33"):
        read_video(path, size=(33, 17))


def test_y4m_8bit(tmp_path: Path) -> None:
    src = moving(3, 18, 22)
    v = read_video(write_av(tmp_path / "a.y4m", "rawvideo", "yuv420p", src, rate=Fraction(50)))
    assert v.frames.shape == src.shape and v.fps == 50 and psnr(v.frames, src) > 28


def test_10bit_sources(tmp_path: Path) -> None:
    # libx265 in PyAV's bundled FFmpeg corrupts the heap on frames narrower than 64 px: keep 64+.
    src = moving(3, 48, 64)
    v = read_video(write_av(tmp_path / "hevc10.mkv", "libx265", "yuv420p10le", src, preset="ultrafast",
                          **{"x265-params": "log-level=none"}))
    assert v.frames.dtype == np.uint8 and v.frames.shape == src.shape and psnr(v.frames, src) > 28
    gray = read_video(write_av(tmp_path / "gray10.mkv", "ffv1", "gray10le", src)).frames
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_alpha_source_drops_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (2, 20, 30, 4), dtype=np.uint8)
    v = read_video(write_av(tmp_path / "alpha.mkv", "ffv1", "bgra", rgba, in_format="rgba"))
    assert np.array_equal(v.frames, rgba[..., :3])


def test_size_change_mid_stream_rescales_to_first(tmp_path: Path) -> None:
    a = write_av(tmp_path / "a.h264", "libx264", "yuv420p", moving(3, 48, 64))
    b = write_av(tmp_path / "b.h264", "libx264", "yuv420p", moving(3, 24, 32))
    both = tmp_path / "both.h264"
    both.write_bytes(a.read_bytes() + b.read_bytes())
    assert read_video(both).frames.shape == (6, 48, 64, 3)


# -- raw .yuv -------------------------------------------------------------------------------------

def i420(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> bytes:
    return b"".join(p.astype(np.uint8).tobytes() for p in (y, u, v))


def test_raw_yuv_colours_and_sizes(tmp_path: Path) -> None:
    # BT.601 limited range: (Y,U,V) = (81,90,240) is red, (16,128,128) black, (235,128,128) white.
    w, h = 17, 33  # odd: chroma planes are 9 x 17
    frames = [(81, 90, 240), (16, 128, 128), (235, 128, 128)]
    data = b"".join(i420(np.full((h, w), y), np.full((17, 9), u), np.full((17, 9), v)) for y, u, v in frames)
    path = tmp_path / "colours__17x33_3f.i420.yuv"
    path.write_bytes(data)
    rgb = read_video(path).frames
    assert rgb.shape == (3, 33, 17, 3)
    assert np.abs(rgb[0].astype(int) - [255, 0, 0]).max() <= 1
    assert rgb[1].max() == 0 and rgb[2].min() == 255
    other = tmp_path / "nosize.yuv"
    other.write_bytes(data)
    with pytest.raises(VideoError, match="size"):
        read_video(other)
    assert read_video(other, size=(17, 33), fps=30, max_frames=2).frames.shape == (2, 33, 17, 3)
    with pytest.raises(VideoError, match="whole number"):
        read_video(other, size=(16, 33))
    with pytest.raises(ConfigError, match="pix_fmt_in"):
        read_video(other, size=(17, 33), pix_fmt_in="nv12")


def test_raw_yuv_matches_ffmpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y, u, v = rng.integers(16, 236, (24, 32)), rng.integers(16, 241, (12, 16)), rng.integers(16, 241, (12, 16))
    path = tmp_path / "noise_32x24_12fps.yuv"
    path.write_bytes(i420(y, u, v) * 2)
    ours = read_video(path)
    assert ours.fps == 12
    options = {"video_size": "32x24", "pixel_format": "yuv420p"}
    with av.open(str(path), format="rawvideo", options=options) as c:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    diff = np.abs(ours.frames.astype(int) - ref)
    assert diff.shape == (2, 24, 32, 3) and diff.mean() < 6  # chroma upsampling filters differ slightly


def test_raw_10bit_and_gray(tmp_path: Path) -> None:
    path = tmp_path / "g_4x2.yuv"
    path.write_bytes(np.full((2, 4), 940, "<u2").tobytes())  # 10-bit white
    assert read_video(path, pix_fmt_in="gray10le").frames.min() == 255
    path.write_bytes(np.full((2, 4), 16, np.uint8).tobytes() * 3)
    assert read_video(path, pix_fmt_in="gray").frames.shape == (3, 2, 4, 3)


# -- bad files ------------------------------------------------------------------------------------

def test_missing_and_non_video_files(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "nope.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError):
        read_video(text)
    empty = tmp_path / "empty.y4m"
    empty.write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\n")
    with pytest.raises(VideoError, match="no decodable frames"):
        read_video(empty)
    (tmp_path / "empty.yuv").write_bytes(b"")
    with pytest.raises(VideoError):
        read_video(tmp_path / "empty.yuv", size=(16, 16))


@pytest.mark.parametrize(("name", "mode"), [("g.h264", "overwrite"), ("g.mkv", "overwrite"),
                                            ("g.mp4", "overwrite"), ("g.mp4", "insert"), ("g.h264", "insert")])
def test_garbage_in_the_middle(tmp_path: Path, name: str, mode: str) -> None:
    path = write_av(tmp_path / name, "libx264", "yuv420p", moving(30, 64, 96), g="5", preset="ultrafast")
    data = bytearray(path.read_bytes())
    junk = np.random.default_rng(3).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    mid = len(data) // 2
    data[mid : mid + (len(junk) if mode == "overwrite" else 0)] = junk
    path.write_bytes(bytes(data))
    try:
        frames = read_video(path).frames
    except VideoError:
        return  # refusing is allowed; any other exception type is not
    assert 1 <= frames.shape[0] <= 31 and frames.shape[1:] == (64, 96, 3)


# -- writing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.y4m", "out.mp4", "out.mkv", "png/f_%05d.png", "png/f_%d.png"])
def test_write_read_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    src = np.random.default_rng(4).integers(0, 256, (3, 33, 17, 3), dtype=np.uint8)  # worst case: noise
    (tmp_path / "png").mkdir()
    target = tmp_path / name
    write_video(target, src, fps=Fraction(30000, 1001))
    v = read_video(target)
    assert np.array_equal(v.frames, src)  # .y4m too: 16-bit YUV 4:4:4 through single-threaded swscale
    if not name.endswith(".png"):
        assert v.fps == Fraction(30000, 1001)
    else:
        assert (tmp_path / "png" / (Path(name).name % 1)).is_file()
    assert not list(tmp_path.rglob("*.part"))  # temporary files are gone


def test_write_options_and_errors(tmp_path: Path) -> None:
    src = moving(2, 16, 24)
    write_video(tmp_path / "std.y4m", torch.from_numpy(src), 25, pix_fmt="yuv420p")
    assert (tmp_path / "std.y4m").read_bytes().startswith(b"YUV4MPEG2 W24 H16 F25:1")
    assert psnr(read_video(tmp_path / "std.y4m").frames, src) > 30
    with pytest.raises(VideoError, match="use .y4m"):
        write_video(tmp_path / "out.avi", src)
    with pytest.raises(VideoError, match="does not exist"):
        write_video(tmp_path / "missing" / "out.mp4", src)
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "out.mp4", src.astype(np.float32))
    with pytest.raises(VideoError):
        write_video(tmp_path / "odd.mp4", np.zeros((1, 3, 5, 3), np.uint8), pix_fmt="yuv420p")
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "odd.mp4").exists()


def test_overwrite_replaces_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "a.y4m"
    write_video(target, np.zeros((2, 4, 4, 3), np.uint8))
    write_video(target, np.full((1, 4, 4, 3), 7, np.uint8))
    assert np.array_equal(read_video(target).frames, np.full((1, 4, 4, 3), 7, np.uint8))


@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_y4m_round_trip_any_size(tmp_path_factory: pytest.TempPathFactory, t: int, h: int, w: int,
                                 seed: int) -> None:
    src = np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    target = tmp_path_factory.mktemp("y4m") / "x.y4m"
    write_video(target, src, 24)
    assert np.array_equal(read_video(target).frames, src)


# -- sample clip and real clips ---------------------------------------------------------------------

def test_sample_clip_is_deterministic_and_moves() -> None:
    a, b = sample_clip(6, 40, 56, seed=1), sample_clip(6, 40, 56, seed=1)
    assert a.frames.shape == (6, 40, 56, 3) and a.frames.dtype == np.uint8 and a.fps == 25
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames[0], a.frames[-1])  # the camera moves
    assert not np.array_equal(a.frames, sample_clip(6, 40, 56, seed=2).frames)
    assert a.frames.std() > 20  # a real picture, not a flat field
    with pytest.raises(ProgvcError):
        sample_clip(0)


@pytest.mark.shared
def test_dev_clips_decode() -> None:
    dev = SHARED_CLIPS / "dev"
    if not dev.is_dir():
        pytest.skip(f"{dev} not present")
    clips = sorted(p for p in dev.iterdir() if p.suffix != ".md")
    assert clips
    for clip in clips:
        v = read_video(clip, max_frames=2)
        assert v.frames.dtype == np.uint8 and v.frames.ndim == 4 and v.frames.shape[0] == 2, clip.name
        assert v.frames.shape[3] == 3 and 0 < v.fps <= 1000, clip.name


def test_colour_conversion_is_deterministic(tmp_path: Path) -> None:
    """swscale on PyAV's default threads gave 3 different yuv444p16 conversions of one small
    frame in 400 on a loaded machine, and 1 in 100 .y4m writes came out corrupted; one thread
    (``SWS_THREADS``) is exact every time. Writes repeat and must agree byte for byte."""
    rgb = np.random.default_rng(1).integers(0, 256, (33, 17, 3), dtype=np.uint8)
    src = np.stack([rgb, rgb[::-1], 255 - rgb])
    outputs = set()
    for i in range(30):
        write_video(tmp_path / f"{i}.y4m", src, fps=30)
        outputs.add((tmp_path / f"{i}.y4m").read_bytes())
    assert len(outputs) == 1
    reads = {read_video(tmp_path / "0.y4m").frames.tobytes() for _ in range(10)}
    assert len(reads) == 1
    assert np.abs(read_video(tmp_path / "0.y4m").frames.astype(int) - src).max() <= 1


def test_read_video_downscales_by_whole_factors_as_it_reads(tmp_path) -> None:
    from progvc.video.downscale import downscale_area

    x = np.random.default_rng(1).integers(0, 256, (4, 30, 50, 3), dtype=np.uint8)
    small = read_video(x, max_side=20).frames  # ceil(50 / 20) = 3
    assert np.array_equal(small, downscale_area(x, 3)) and small.shape == (4, 10, 16, 3)
    assert np.array_equal(read_video(x, downscale=2, max_side=40).frames, downscale_area(x, 2))
    assert np.shares_memory(read_video(x, max_side=50).frames, x)  # already fits: no copy
    write_video(tmp_path / "x.y4m", x)
    from_file = read_video(tmp_path / "x.y4m", max_frames=3, max_side=20).frames
    assert np.array_equal(from_file, downscale_area(x[:3], 3))
    for bad in ({"max_side": 0}, {"downscale": 0}, {"downscale": 2.5}, {"downscale": 31}):
        with pytest.raises(ConfigError):
            read_video(x, **bad)


def test_player_output_is_8_bit_420_that_players_open(tmp_path) -> None:
    import av

    from progvc.video.io import PLAYER_CRF

    x = np.random.default_rng(2).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    for name, codec, pix_fmt in (("p.mp4", "h264", "yuv420p"), ("p.mkv", "h264", "yuv420p"),
                                 ("p.y4m", "rawvideo", "yuv420p"), ("odd.mp4", "h264", "yuv444p")):
        frames = x[:, :23, :39] if name.startswith("odd") else x
        write_video(tmp_path / name, frames, 25, player=True)
        with av.open(str(tmp_path / name)) as c:
            ctx = c.streams.video[0].codec_context
            assert (ctx.name, ctx.pix_fmt) == (codec, pix_fmt), name
            assert codec != "h264" or ctx.profile == ("High" if pix_fmt == "yuv420p" else "High 4:4:4 Predictive")
        assert read_video(tmp_path / name).frames.shape == frames.shape
    assert b" C420" in (tmp_path / "p.y4m").read_bytes().split(b"\n")[0]  # 8-bit 4:2:0 in the y4m header
    assert PLAYER_CRF > 0  # lossy x264, unlike the exact default
    write_video(tmp_path / "exact.mp4", x, 25)
    assert np.array_equal(read_video(tmp_path / "exact.mp4").frames, x)
