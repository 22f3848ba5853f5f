"""Helpers shared by the tests: clips, random weights, streams and runners. Test files import them from
here (never from another test file or from conftest.py, which holds the fixtures). Importing this
module imports neither torch nor PyAV (a test checks that stream helpers run without them); the
helpers that need them import them when called."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from progvc import cli
from progvc.stream import format as bs
from progvc.stream.scales import scale_grids

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = SHARED / "clips"


# -- clips and models ------------------------------------------------------------------------------
def smooth_clip(n_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving smooth pattern plus noise: (T,H,W,3) uint8, cheap and compressible like video."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(n_frames):
        base = np.stack([np.sin((xx + 2 * t) / 7 + c) + np.cos((yy - t) / 5 - c) for c in range(3)], -1)
        frames.append(np.clip(127 + 60 * base + rng.normal(0, 8, base.shape), 0, 255))
    return np.asarray(frames, dtype=np.uint8)


def moving(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(t,h,w,3) uint8: a smooth random texture with mild colour, panning right by 1 px per frame.

    Colour varies slowly and luma carries the detail, like natural video, so 4:2:0 codecs keep it.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    size = (h, w + t)
    luma = F.interpolate(torch.rand(1, 1, h // 3 + 2, (w + t) // 3 + 2, generator=gen), size=size, mode="bicubic")
    tint = F.interpolate(torch.rand(1, 3, h // 8 + 2, (w + t) // 8 + 2, generator=gen), size=size, mode="bilinear")
    big = (0.75 * luma + 0.25 * tint).clamp(0, 1)[0].permute(1, 2, 0).numpy()  # (h, w+t, 3)
    big = (big * 235 + np.random.default_rng(seed).integers(0, 20, (h, w + t, 1))).astype(np.uint8)
    return np.stack([big[:, i : i + w] for i in range(t)])


def write_av(path: Path, codec: str, pix_fmt: str, frames: np.ndarray, *, in_format: str = "rgb24",
             rate: Fraction = Fraction(25), **options: str) -> Path:
    """Write ``frames`` with PyAV (the muxer follows the file name)."""
    import av

    fmt = {".h264": "h264", ".y4m": "yuv4mpegpipe"}.get(path.suffix)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for i, x in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(x), format=in_format).reformat(format=pix_fmt)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_cache(path):
    path.mkdir()
    for i in range(2):
        np.save(path / f"clip{i}.npy", smooth_clip(12, 40, 48, seed=i))
    return path


def shared_clip(name_part: str) -> Path:
    """A clip from ../shared/clips/dev whose name contains ``name_part``; skips when absent."""
    matches = sorted((CLIPS / "dev").glob(f"*{name_part}*")) if CLIPS.exists() else []
    if not matches:
        pytest.skip("../shared/clips is not present")
    return matches[0]


def random_weights(config, seed: int = 0) -> dict:
    """The state dict of a randomly initialised ``CodecModel(config)``, the same for the same seed."""
    import torch

    from progvc.codec.codec import CodecModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CodecModel(config).state_dict()


def portable_pair(seed: int = 0, **context: object):
    """A seeded tiny float codec (context options overridden by ``context``) and its portable
    conversion (:func:`progvc.train.portable.portable_state`, the shipping command's), which keeps
    its tokenizer."""
    import dataclasses

    from progvc.codec.codec import Codec
    from progvc.models.config import tiny_config
    from progvc.train.portable import portable_state

    float_codec = Codec.from_config(tiny_config(context=dataclasses.replace(tiny_config().context, **context)),
                                    seed=seed, device="cpu")
    state, config = portable_state(float_codec)
    return float_codec, Codec(config, state, device="cpu")


def ship_tiny_model(directory: Path, monkeypatch, name: str = "tiny-shipped",
                    file: str = "tiny.safetensors") -> Path:
    """Write a random tiny model and its manifest into ``directory`` and make it the shipped default."""
    import json

    from progvc.models.config import tiny_config
    from progvc.weights import save_weights

    cfg = tiny_config(name=name)
    digest = save_weights(directory / file, random_weights(cfg), cfg)
    (directory / "manifest.json").write_text(json.dumps(
        {"default": name, "models": {name: {"file": file, "sha256": digest}}}))
    monkeypatch.setenv("PROGVC_WEIGHTS_DIR", str(directory))
    return directory


# -- streams ---------------------------------------------------------------------------------------
def make_stream(n_frames=5, gop=2, scales=3, payload=lambda g, k: bytes(4 * (k + 1))):
    header = bs.StreamHeader("m", bytes(range(bs.WEIGHTS_ID_BYTES)), 33, 17, n_frames, Fraction(30000, 1001), gop,
                             tuple(scale_grids(scales, scales + 1, scales)), scales, seed=7)
    gops = tuple(tuple(bs.Chunk(g * 10 + k, payload(g, k)) for k in range(scales)) for g in range(header.n_gops))
    return bs.Stream(header, gops)


def legacy_header(h, version: int) -> bytes:
    """``h`` laid out as format versions 2-5 do (fixed-width fields, docs/FORMAT.md "Versions"),
    labelled ``version``, with a correct CRC: how a test makes an older stream's header. These
    versions hold the whole sha256: a shorter weights id is padded with zero bytes."""
    import struct
    import zlib

    from progvc.stream import format as bs

    flags = ((0 if h.temporal else 1) | bs.SKIP_BLOCKS.index(h.skip_block) << 1 | (8 if h.modes else 0)
             | bs.RESIZE_FACTORS.index(h.resize) << 4)
    name = h.model_name.encode()
    body = (bytes([len(name)]) + name + h.weights_sha256.ljust(32, b"\0")
            + struct.pack("<IIIIIHBBQfIfB", h.width, h.height, h.n_frames, h.fps.numerator, h.fps.denominator,
                          h.gop_size, h.n_scales, h.coded_scales, h.seed, h.temperature, h.top_k, h.top_p, flags)
            + b"".join(struct.pack("<HH", r, c) for r, c in h.grids))
    head = struct.pack("<4sBH", bs.MAGIC, version, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def pieces(data: bytes, seed: int, most: int):
    """``data`` cut into random pieces of 1..most bytes (seeded); empty pieces included now and then."""
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < len(data):
        n = int(rng.integers(0, most + 1))
        yield data[pos:pos + n]
        pos += n


def check_updates(codec, data, updates, n_scales=None, fill=None, seed=None, preview_fill=None, every=False):
    """Updates come GOP by GOP, coarse to fine, the last of each GOP final at its last used scale,
    each equal to decode with that many scales (in ``fill`` for a GOP's final update, in
    ``preview_fill`` (default: ``fill``) for the others). ``every``: one update per chunk (pieces
    that never complete two chunks at once)."""
    from progvc.codec.streaming import GopUpdate

    h, stream = bs.parse_header(data), bs.unpack(data)
    used = [min(len(chunks), n_scales or 99) for chunks in stream.gops]
    got = [(u.gop, u.scales) for u in updates]
    if every:
        assert got == [(g, k + 1) for g, n in enumerate(used) for k in range(n)]
    assert got == sorted(set(got)) and {g for g, _ in got} == set(range(len(used)))
    assert [u.final for u in updates] == [i + 1 == len(got) or got[i + 1][0] != g for i, (g, _) in enumerate(got)]
    assert all(u.scales == used[u.gop] for u in updates if u.final)
    refs = {(n, final): codec.decode(data, n, fill=fill if final or preview_fill is None else preview_fill, seed=seed)
            for n, final in {(u.scales, u.final) for u in updates}}
    for u in updates:
        assert isinstance(u, GopUpdate) and u.frames.dtype == np.uint8
        assert u.first_frame == u.gop * h.gop_size and len(u.frames) == h.gop_frames(u.gop)
        ref = refs[u.scales, u.final][u.first_frame:u.first_frame + len(u.frames)]
        assert np.array_equal(u.frames, ref), (u.gop, u.scales)
    final = np.concatenate([u.frames for u in updates if u.final])
    assert np.array_equal(final, codec.decode(data, n_scales, fill=fill, seed=seed))


# -- the command line ------------------------------------------------------------------------------
def run_cli(argv, capsys, code=0):
    """Run main(argv), check its exit code and that any error is exactly one line."""
    got = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert got == code, (got, err)
    if code:
        assert err.startswith("progvc: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return out, err
