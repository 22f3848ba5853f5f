"""Hostile videos through the public API (issue 6): ``Codec.encode`` on bad files, arrays and options
ends in a clear ProgvcError or in a stream that decodes back to the right shape, never in a
traceback from inside torch or PyAV.

``tests/test_video_io.py`` covers ``read_video`` on most layouts; this file takes them through the
encoder, and adds what it lacks (variable frame rate, zero-frame containers, strided arrays).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import progvc
from progvc.runtime.errors import ConfigError, DeviceError, VideoError
from progvc.stream import format as bs
from progvc.video import io as video_io
from tests.helpers import moving, smooth_clip, write_av


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny clips: torch's thread pool only adds scheduling time on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def encode_and_decode(codec, video, expect_shape: tuple[int, ...] | None = None, **options) -> bytes:
    """``codec.encode(video)``: a stream whose decode is (T,H,W,3) uint8 of ``expect_shape``."""
    data = codec.encode(video, **options)
    frames = codec.decode(data, fill="none")
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
    if expect_shape is not None:
        assert frames.shape == expect_shape
    return data


def write_vfr(path: Path, frames: np.ndarray, pts_ms: list[int]) -> Path:
    """A lossless file whose frames sit at irregular times (milliseconds), as phones record."""
    mkv = path.suffix == ".mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1" if mkv else "libx264rgb", rate=25, options={} if mkv else {"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0" if mkv else "rgb24"
        stream.codec_context.time_base = Fraction(1, 1000)
        for x, t in zip(frames, pts_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format=stream.pix_fmt)
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# -- files --------------------------------------------------------------------------------------

def test_missing_files_and_non_videos_are_refused(tiny_codec, tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mkv").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    for name, words in [("nope.mp4", "not found"), ("notes.mp4", "cannot open"), ("empty.mp4", "cannot open"),
                        ("random.mkv", None), ("frames_%05d.png", None), (".", "not found")]:
        with pytest.raises(VideoError, match=words):
            tiny_codec.encode(tmp_path / name)


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), [("z.mp4", "libx264", "yuv420p"), ("z.mkv", "ffv1", "yuv420p")])
def test_containers_with_zero_frames_are_refused(tiny_codec, tmp_path, name, codec, pix_fmt):
    path = tmp_path / name
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, pix_fmt
        container.start_encoding()  # a header and no packet
    assert path.stat().st_size > 0
    with pytest.raises(VideoError):
        tiny_codec.encode(path)
    header_only = tmp_path / "empty.y4m"
    header_only.write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\n")
    with pytest.raises(VideoError, match="no decodable frames"):
        tiny_codec.encode(header_only)


@pytest.mark.parametrize(("shape", "pix_fmt", "in_format"), [
    ((3, 1, 1), "bgr0", "rgb24"),  # 1x1
    ((3, 33, 17), "bgr0", "rgb24"),  # odd sizes
    ((2, 16, 24), "gray", "rgb24"),  # grayscale
    ((2, 16, 24), "gray10le", "rgb24"),  # 10-bit grayscale
    ((2, 16, 24), "yuv420p10le", "rgb24"),  # 10-bit colour
    ((2, 16, 24), "bgra", "rgba"),  # alpha
])
def test_unusual_files_encode_and_decode_to_their_shape(tiny_codec, tmp_path, shape, pix_fmt, in_format):
    t, h, w = shape
    src = moving(t, h, w) if in_format == "rgb24" else np.random.default_rng(1).integers(0, 256, (t, h, w, 4), np.uint8)
    path = write_av(tmp_path / "clip.mkv", "ffv1", pix_fmt, src, in_format=in_format)
    encode_and_decode(tiny_codec, path, (t, h, w, 3))


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_variable_frame_rate_keeps_every_frame_in_order(tiny_codec, tmp_path, name):
    src = np.random.default_rng(2).integers(0, 256, (6, 16, 24, 3), np.uint8)
    path = write_vfr(tmp_path / name, src, [0, 40, 50, 200, 210, 700])
    video = video_io.read_video(path)
    assert np.array_equal(video.frames, src)  # lossless, nothing dropped or repeated
    assert 0 < video.fps <= 1000
    data = encode_and_decode(tiny_codec, path, (6, 16, 24, 3))
    assert progvc.info(data).fps == video.fps.limit_denominator(1 << 20)


@pytest.mark.parametrize("mode", ["overwrite", "insert", "cut"])
def test_corrupt_packets_in_the_middle(tiny_codec, tmp_path, mode):
    """Junk written over packets of an MP4 costs the frames it hits: the others are coded. Junk
    inserted, or the file cut, breaks the MP4's index: the file is refused as a video."""
    path = write_av(tmp_path / "g.mp4", "libx264", "yuv420p", moving(12, 32, 48), g="4", preset="ultrafast")
    data = bytearray(path.read_bytes())
    junk = np.random.default_rng(3).integers(0, 256, 600, dtype=np.uint8).tobytes()
    mid = len(data) // 2
    if mode == "cut":
        del data[mid:]
    else:
        data[mid:mid + (len(junk) if mode == "overwrite" else 0)] = junk
    path.write_bytes(bytes(data))
    if mode != "overwrite":
        with pytest.raises(VideoError, match="cannot open"):
            tiny_codec.encode(path)
        return
    info = progvc.info(encode_and_decode(tiny_codec, path))
    assert 1 <= info.n_frames < 12 and (info.width, info.height) == (48, 32)


def test_sizes_beyond_the_limit_are_refused_before_decoding(tiny_codec, tmp_path, monkeypatch):
    path = write_av(tmp_path / "odd.mkv", "ffv1", "bgr0", moving(2, 33, 17))
    monkeypatch.setattr(video_io, "MAX_SIDE", 32)
    for video in (path, np.zeros((1, 33, 17, 3), np.uint8), np.zeros((1, 8, 33, 3), np.uint8)):
        with pytest.raises(VideoError, match="MAX_SIDE"):
            tiny_codec.encode(video)
    monkeypatch.setattr(video_io, "MAX_SIDE", 8192)
    monkeypatch.setattr(video_io, "MAX_FRAMES", 1)
    with pytest.raises(VideoError, match="MAX_FRAMES"):
        tiny_codec.encode(path)


def test_every_readable_video_fits_the_stream_format():
    """The reader's limits sit inside the container's, so no readable video fails at pack time."""
    assert video_io.MAX_SIDE <= bs.MAX_SIDE and video_io.MAX_FRAMES <= bs.MAX_FRAMES


# -- arrays -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("array", "words"), [
    (np.zeros((0, 8, 8, 3), np.uint8), "no frames"),
    (np.zeros((2, 0, 8, 3), np.uint8), "no frames"),
    (np.zeros((2, 8, 8, 3), np.float32), "floating point"),
    (np.full((2, 8, 8, 3), 0.5), "floating point"),
    (np.zeros((2, 8, 8, 3), bool), "uint8"),
    (np.full((2, 8, 8, 3), 1000, np.uint16), "0..255"),
    (np.full((2, 8, 8, 3), -1, np.int16), "0..255"),
    (np.zeros((2, 3, 8, 8), np.uint8), "channel-first"),
    (np.zeros((1, 2, 8, 8, 3), np.uint8), "shape"),
    (np.zeros((2, 8, 8, 3), object), "uint8"),
    (torch.zeros(2, 8, 8, 3), "floating point"),
    (None, "uint8"),
    (b"\x00" * 192, "uint8"),
    (7, "shape"),
])
def test_bad_arrays_are_refused(tiny_codec, array, words):
    with pytest.raises(VideoError, match=words):
        tiny_codec.encode(array)


def strided(x: np.ndarray) -> list:
    """Views of ``x`` (T,H,W,3) that are not C-contiguous, each paired with its contiguous copy."""
    wide = np.repeat(x, 2, axis=2)
    fortran = np.asfortranarray(x)
    return [wide[:, :, ::2], x[:, ::-1], x[::-1, :, ::-1], fortran, torch.from_numpy(x).flip(1),
            torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3))).transpose(1, 2)]


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")  # encode only reads it
def test_strided_and_reversed_arrays_encode_like_their_copies(tiny_codec):
    x = smooth_clip(2, 12, 20, seed=4)
    for view in strided(x):
        same = np.ascontiguousarray(view.numpy() if isinstance(view, torch.Tensor) else view)
        assert tiny_codec.encode(view) == tiny_codec.encode(same)
    readonly = x.copy()
    readonly.flags.writeable = False
    assert tiny_codec.encode(readonly) == tiny_codec.encode(x)


@pytest.mark.parametrize("layout", ["gray", "gray1", "rgba", "one-frame", "int64", "uint16", "list"])
def test_other_array_layouts_encode_to_their_shape(tiny_codec, layout):
    x = smooth_clip(2, 9, 14, seed=5)
    video = {"gray": x[..., 0], "gray1": x[..., :1], "rgba": np.concatenate([x, x[..., :1]], -1), "one-frame": x[0],
             "int64": x.astype(np.int64), "uint16": x.astype(np.uint16), "list": x.tolist()}[layout]
    n = 1 if layout == "one-frame" else 2
    encode_and_decode(tiny_codec, video, (n, 9, 14, 3))


# -- options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"n_scales": 0}, {"n_scales": 5}, {"n_scales": 2.5}, {"n_scales": "2"}, {"gop_size": 0}, {"gop_size": 257},
    {"gop_size": 2.0}, {"seed": -1}, {"seed": 1 << 64}, {"temperature": 0}, {"temperature": -1.0},
    {"temperature": float("nan")}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1}, {"fps": 0}, {"fps": float("inf")},
    {"size": (8, 8)},
])
def test_bad_options_are_refused(tiny_codec, options):
    with pytest.raises((ConfigError, VideoError)):
        tiny_codec.encode(smooth_clip(2, 16, 16), **options)


@pytest.mark.parametrize("options", [
    pytest.param({"seed": 2.5}, id="seed-float"),
    pytest.param({"top_k": 1 << 32}, id="top_k-past-u32"),
    pytest.param({"top_k": 2.5}, id="top_k-float"),
    pytest.param({"n_scales": True}, id="n_scales-bool"),
])
def test_badly_typed_options_are_refused_naming_the_option(tiny_codec, options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        tiny_codec.encode(smooth_clip(2, 16, 16), **options)


def test_unknown_devices_are_refused(tiny_codec):
    from progvc.codec.codec import Codec
    from progvc.models.config import tiny_config

    for device in ("tpu", "nope", "cuda:99" if torch.cuda.is_available() else "cuda"):
        with pytest.raises(DeviceError):
            progvc.encode(smooth_clip(1, 8, 8), device=device)
        with pytest.raises(DeviceError):
            Codec.from_config(tiny_config(), device=device)
