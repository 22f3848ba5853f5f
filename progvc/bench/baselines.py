"""Conventional anchors through PyAV's bundled FFmpeg: x264, x265, SVT-AV1 (and VP9) over CRF sweeps.

Every anchor is run the way a fair comparison with progvc needs:

- **The same GOP as progvc**: a keyframe exactly every ``gop`` frames and never elsewhere (x264
  ``keyint=G:min-keyint=G:scenecut=0``; x265 the same plus ``open-gop=0`` so every GOP decodes on
  its own, as progvc's do; SVT-AV1 ``keyint=G:scd=0``, closed key frames by default; VP9
  ``g = keyint_min = G``). B-frames and each encoder's own reordering inside a GOP stay on.
- **Constant quality (CRF)**, swept over :attr:`Baseline.default_crfs`; presets default to what two
  CPU cores finish in reasonable time (x264 and x265 ``medium``, SVT-AV1 ``8``, VP9 ``cpu-used 4``)
  and are configurable.
- **yuv420p**, converted from RGB by FFmpeg's swscale (BT.601, limited range) and back the same
  way on decode, so the colour round trip is the one every FFmpeg user gets.
- **Bits from the real packets**: the sum of ``packet.size`` plus any global header (extradata);
  no container overhead, as progvc's count has none beyond its own header. The encoders' text
  banners are left out because no decoder needs them: x265 runs with ``info=0`` and x264's SEI NAL
  units (its ~670-byte options string, 16% of a low-rate CIF clip) are cut from the packets, and the
  decoder then decodes the stripped packets, so the bytes counted are bytes that decode.
- **In memory**: ``av.CodecContext`` encoders and decoders, no files.

Frame sizes: yuv420p needs even sizes and x265 corrupts its heap on frames under 64 pixels (seen
with PyAV 18: a later encoder crashed after an x265 encode of 48x32). Frames are therefore padded
at the bottom and right by edge replication to even sizes of at least 64x64, and cropped back after
decoding; the padding's bits are counted (``BaselineResult.padded`` says when this happened, and
the benchmark notes it), so tiny clips slightly favour progvc.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..runtime.errors import ConfigError, ProgvcError

MIN_SIDE = 64


@dataclass(frozen=True)
class Baseline:
    """One conventional codec: FFmpeg encoder and decoder names, CRF range, defaults."""

    name: str
    encoder: str
    decoder: str
    default_crfs: tuple[int, ...]
    crf_max: int
    default_preset: str

    def options(self, crf: int, gop: int, preset: str | None = None) -> dict[str, str]:
        """FFmpeg encoder options for one CRF point with a fixed GOP of ``gop`` frames."""
        if not 0 <= crf <= self.crf_max:
            raise ConfigError(f"{self.name} CRF must be in 0..{self.crf_max}, got {crf}")
        p = preset or self.default_preset
        g = str(gop)
        if self.name == "x264":
            return {"preset": p, "crf": str(crf), "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0"}
        if self.name == "x265":
            params = f"keyint={g}:min-keyint={g}:scenecut=0:open-gop=0:log-level=error:info=0"
            return {"preset": p, "crf": str(crf), "x265-params": params}
        if self.name == "svtav1":
            return {"preset": p, "crf": str(crf), "svtav1-params": f"keyint={g}:scd=0"}
        return {"cpu-used": p, "crf": str(crf), "b": "0", "deadline": "good", "keyint_min": g}

    def settings(self, gop: int, preset: str | None = None) -> dict[str, object]:
        """The run settings recorded in the results file (everything but the CRF)."""
        opts = self.options(0, gop, preset)
        opts.pop("crf")
        return {"encoder": self.encoder, "decoder": self.decoder, "gop": gop, "pix_fmt": "yuv420p",
                "options": opts}


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("x264", "libx264", "h264", (22, 27, 32, 37, 42, 47), 51, "medium"),
        Baseline("x265", "libx265", "hevc", (22, 27, 32, 37, 42, 47), 51, "medium"),
        Baseline("svtav1", "libsvtav1", "libdav1d", (27, 35, 43, 51, 59, 63), 63, "8"),
        Baseline("vp9", "libvpx-vp9", "vp9", (20, 30, 40, 50, 57, 63), 63, "4"),
    )
}


def get_baseline(name: str) -> Baseline:
    """The :class:`Baseline` called ``name``; :class:`ConfigError` naming the choices otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ConfigError(f"unknown codec {name!r}; choose from progvc, {', '.join(BASELINES)}") from None


def missing_codecs(name: str) -> list[str]:
    """FFmpeg encoder/decoder names of ``name`` that this PyAV build lacks (empty: usable)."""
    import av

    b = get_baseline(name)
    return [c for c in (b.encoder, b.decoder) if c not in av.codecs_available]


@dataclass(frozen=True)
class BaselineResult:
    """One decoded operating point: ``frames`` (T,H,W,3) uint8 RGB, real bytes, wall-clock seconds,
    whether the frames were padded, and the display indexes of the decoded keyframes (to check the
    GOP structure)."""

    frames: np.ndarray
    nbytes: int
    encode_s: float
    decode_s: float
    padded: bool
    keyframes: tuple[int, ...]


def _strip_h264_sei(data: bytes) -> bytes:
    """Drop the SEI NAL units (nal_unit_type 6) from an Annex B H.264 access unit."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return data
    kept = [data[: starts[0]]]
    for j, s in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(data)
        if s + 3 < len(data) and data[s + 3] & 0x1F != 6:
            kept.append(data[s:end])
        elif kept[-1].endswith(b"\x00"):  # a 4-byte start code's leading zero belongs to the SEI
            kept[-1] = kept[-1][:-1]
    return b"".join(kept)


def _stripped(packets: list, name: str) -> list:
    """x264's packets without SEI NAL units (new ``av.Packet`` objects, timestamps kept)."""
    import av

    if name != "x264":
        return packets
    out = []
    for p in packets:
        q = av.Packet(_strip_h264_sei(bytes(p)))
        q.pts, q.dts, q.time_base = p.pts, p.dts, p.time_base
        q.is_keyframe = p.is_keyframe
        out.append(q)
    return out


@contextlib.contextmanager
def _quiet_svt() -> Iterator[None]:
    """SVT-AV1 prints a banner on stderr at info level unless SVT_LOG says otherwise (1 = errors)."""
    had = "SVT_LOG" in os.environ
    if not had:
        os.environ["SVT_LOG"] = "1"
    try:
        yield
    finally:
        if not had:
            os.environ.pop("SVT_LOG", None)


def _pad(frames: np.ndarray) -> np.ndarray:
    """Edge-pad (T,H,W,3) to even sizes of at least MIN_SIDE (see the module docstring)."""
    _, h, w, _ = frames.shape
    ph, pw = max(MIN_SIDE, h + h % 2), max(MIN_SIDE, w + w % 2)
    if (ph, pw) == (h, w):
        return frames
    return np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def encode_decode(
    frames: np.ndarray,
    name: str,
    crf: int,
    *,
    gop: int,
    preset: str | None = None,
    fps: Fraction = Fraction(25),
) -> BaselineResult:
    """Encode ``frames`` ((T,H,W,3) uint8 RGB) with baseline ``name`` at ``crf`` and decode it back.

    Raises :class:`ConfigError` for an unknown codec, a CRF out of range or an encoder missing from
    PyAV, and :class:`ProgvcError` if the decoder returns a different number of frames.
    """
    import av

    from ..video.io import SWS_THREADS

    b = get_baseline(name)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be (T,H,W,3) uint8, got {frames.shape} {frames.dtype}")
    if gop < 1:
        raise ConfigError(f"GOP length must be at least 1, got {gop}")
    if missing := missing_codecs(name):
        raise ConfigError(f"PyAV's FFmpeg lacks {', '.join(missing)}; drop {name} from --codecs")
    t, h, w, _ = frames.shape
    src = _pad(frames)
    fps = Fraction(fps) if fps and fps > 0 else Fraction(25)

    start = time.perf_counter()
    with _quiet_svt():
        enc = av.CodecContext.create(b.encoder, "w")
        enc.width, enc.height, enc.pix_fmt = src.shape[2], src.shape[1], "yuv420p"
        enc.time_base, enc.framerate = 1 / fps, fps
        enc.gop_size = gop
        enc.options = b.options(crf, gop, preset)
        packets = []
        for i, rgb in enumerate(src):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", threads=SWS_THREADS)
            frame.pts = i
            packets += enc.encode(frame)
        packets += enc.encode(None)
        packets = _stripped(packets, name)
    encode_s = time.perf_counter() - start
    extradata = bytes(enc.extradata or b"")
    nbytes = sum(p.size for p in packets) + len(extradata)

    start = time.perf_counter()
    dec = av.CodecContext.create(b.decoder, "r")
    if extradata:
        dec.extradata = extradata
    out, keyframes = [], []
    for p in [*packets, None]:
        for f in dec.decode(p):
            if f.key_frame:
                keyframes.append(len(out))
            out.append(f.to_ndarray(format="rgb24", threads=SWS_THREADS)[:h, :w])
    decode_s = time.perf_counter() - start
    if len(out) != t:
        raise ProgvcError(f"{name} at CRF {crf} decoded {len(out)} frames of {t}; report this PyAV/FFmpeg build")
    return BaselineResult(np.stack(out), nbytes, encode_s, decode_s, src.shape != frames.shape, tuple(keyframes))
