"""``Codec``: a loaded model that turns videos into progressive streams and back.

::

    video ─► read_video ─► GOPs of T frames ─► Tokenizer.tokenize ─► K token maps (T,h_k,w_k)
      ─► GopState.run (known tokens) ─► quantised tables ─► ChunkEncoder per scale ─► pack

    bytes ─► unpack ─► per GOP: GopState.run (range-decode scales < n, sample the rest)
      ─► f_hat ─► Tokenizer.synthesise ─► frames (T,H,W,3) uint8
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import bitstream as bs
from .coding import GopState
from .config import MAX_REFINE_STEPS, REFINE_STEPS, CodecConfig
from .determinism import coding_mode
from .devices import resolve_device
from .entropy import ChunkDecoder, ChunkEncoder, cross_entropy_bits, probability_table
from .errors import BitstreamError, ConfigError, WeightsError
from .models.context import ContextModel
from .models.tokenizer import Tokenizer
from .progress import NO_PROGRESS, Progress
from .sampling import SamplingOptions, gop_generator, sample_tokens
from .weights import load_named, parse_weights, serialize, sha256_hex


class CodecModel(nn.Module):
    """The trainable parts under one state dict: ``tokenizer.*`` and ``context.*``."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(config.tokenizer)
        self.context = ContextModel(config.context, config.tokenizer)


@dataclass(frozen=True)
class EncodeResult:
    """A stream and what it cost: ``estimated_bits[k]`` is the model's -sum log2 p for scale k."""

    bitstream: bytes
    estimated_bits: tuple[float, ...]
    n_frames: int
    width: int
    height: int
    seconds: float

    @property
    def bpp(self) -> float:
        return 8 * len(self.bitstream) / (self.n_frames * self.width * self.height)


def tokens_crc(maps: list[torch.Tensor]) -> int:
    """CRC32 of a chunk's tokens (frame after frame, row-major) as little-endian uint16."""
    crc = 0
    for r in maps:
        crc = zlib.crc32(r.to("cpu").numpy().astype("<u2").tobytes(), crc)
    return crc


class Codec:
    """Tokenizer + context transformer on one device, ready to encode and decode."""

    def __init__(self, config: CodecConfig, state: dict[str, torch.Tensor] | None = None, *,
                 device: str | torch.device | None = None, weights_sha256: bytes | None = None,
                 seed: int = 0) -> None:
        self.config = config
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = CodecModel(config)
        if state is not None:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise WeightsError(f"weights do not match config {config.name!r}: missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]}")
        self.weights_sha256 = weights_sha256 or bytes.fromhex(sha256_hex(serialize(self.model.state_dict(),
                                                                                   config)))
        self.model.eval().to(self.device)

    @classmethod
    def from_config(cls, config: CodecConfig, *, seed: int = 0, device: str | torch.device | None = None
                    ) -> Codec:
        """A randomly initialised codec (tests, training start)."""
        return cls(config, device=device, seed=seed)

    @classmethod
    def from_pretrained(cls, name: str | None = None, device: str | torch.device | None = None) -> Codec:
        """Load a shipped model from ``progvc/weights/`` or ``$PROGVC_WEIGHTS_DIR`` (the manifest's
        default when ``name`` is None), hash-checked."""
        config, state, digest = load_named(name)
        return cls(config, _checked_shapes(config, state, name or "default"), device=device,
                   weights_sha256=digest)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device | None = None) -> Codec:
        """Load a weights file outside the manifest (a training run's output)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise WeightsError(f"cannot read weights file {path} ({exc.strerror or exc}); check the path") from exc
        config, state = parse_weights(data, str(path))
        return cls(config, _checked_shapes(config, state, str(path)), device=device,
                   weights_sha256=bytes.fromhex(sha256_hex(data)))

    @property
    def tokenizer(self) -> Tokenizer:
        return self.model.tokenizer

    @property
    def context(self) -> ContextModel:
        return self.model.context

    @property
    def n_scales(self) -> int:
        return self.config.tokenizer.n_scales

    @property
    def gop_size(self) -> int:
        return self.config.gop_size

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, video: Any, n_scales: int | None = None, *, bpp: float | None = None,
               **options: Any) -> bytes:
        """Encode ``video`` (path or (T,H,W,3) uint8 array) to a stream of ``n_scales`` scales.

        ``bpp`` instead of ``n_scales``: encode every scale, then ``truncate(..., bpp=bpp)``, so
        each GOP keeps as many scales as its share of the budget allows (ConfigError if both).
        Options: gop_size, fps, size (W,H) for raw .yuv, seed / temperature / top_k / top_p
        (the decoder's sampling defaults, stored in the stream), temporal (False codes every frame
        without temporal context), refine (encoder-side latent refinement steps per frame, default
        ``REFINE_STEPS``; 0 is the fast greedy tokenizer, same stream format), progress.
        Reading options (passed to :func:`progvc.video_io.read_video`): ``max_frames`` (code only the
        first N frames; a long file is not read whole), ``max_side`` (shrink by a whole factor until
        the long side fits), ``downscale`` (a whole factor), ``pix_fmt_in`` (raw .yuv layout).
        """
        return self.encode_with_stats(video, n_scales, bpp=bpp, **options).bitstream

    def encode_with_stats(self, video: Any, n_scales: int | None = None, *, gop_size: int | None = None,
                          fps: float | Fraction | None = None, size: tuple[int, int] | None = None,
                          seed: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                          temporal: bool = True, progress: bool = False, bpp: float | None = None,
                          refine: int = REFINE_STEPS, max_frames: int | None = None, max_side: int | None = None,
                          downscale: int = 1, pix_fmt_in: str = "yuv420p") -> EncodeResult:
        """``encode`` that also reports the model's estimated bits per scale and the time taken.

        With ``bpp``, ``estimated_bits`` counts only the chunks the budget kept.
        """
        from .video_io import read_video

        if bpp is not None and n_scales is not None:
            raise ConfigError("give n_scales or bpp, not both")
        start = time.perf_counter()
        clip = read_video(video, size=size, fps=fps, max_frames=max_frames, max_side=max_side, downscale=downscale,
                          pix_fmt_in=pix_fmt_in)
        frames = clip.frames
        n = self._check_scales(n_scales)
        gop = self._check_gop(gop_size)
        _check_int("top_k", top_k, 0, (1 << 32) - 1)
        SamplingOptions(temperature, top_k, top_p)
        seed = _check_seed(seed)
        refine = self._check_refine(refine)
        n_frames, height, width = frames.shape[:3]
        grids = self.tokenizer.grids(height, width)
        header = bs.StreamHeader(self.config.name, self.weights_sha256, width, height, n_frames,
                                 Fraction(clip.fps).limit_denominator(1 << 20), gop, tuple(grids), n, seed,
                                 temperature, top_k, top_p, temporal)
        gop_bits, gops = [], []
        with coding_mode(), Progress(progress, "encode", n_frames * n, header.n_gops) as bar:
            for g, gop_frames in enumerate(self._gops(frames, gop)):
                bar.gop(g, "tokenizing")
                chunks, bits = self._encode_gop(gop_frames, grids, n, temporal, refine, bar)
                gops.append(chunks)
                gop_bits.append(bits)
        data = bs.pack(bs.Stream(header, tuple(gops)))
        kept = [n] * len(gops)
        if bpp is not None:
            data = bs.truncate(data, bpp=bpp)
            kept = [len(chunks) for chunks in bs.unpack(data).gops]
        est = np.zeros(max(kept))
        for bits, k in zip(gop_bits, kept, strict=True):
            est[:k] += bits[:k]
        return EncodeResult(data, tuple(est.tolist()), n_frames, width, height, time.perf_counter() - start)

    def _encode_gop(self, frames: torch.Tensor, grids: list, n: int, temporal: bool, refine: int,
                    bar: Progress = NO_PROGRESS) -> tuple[tuple[bs.Chunk, ...], np.ndarray]:
        maps = self.tokenizer.tokenize(frames, refine)  # K x (T, h_k, w_k)
        coders = [ChunkEncoder() for _ in range(n)]
        bits = np.zeros(n)

        def pick(t: int, k: int, logits: torch.Tensor) -> np.ndarray:
            tokens = maps[k][t].flatten().cpu().numpy()
            coders[k].add(tokens, probability_table(logits))
            bits[k] += cross_entropy_bits(logits, tokens)
            return tokens

        state = GopState(self.context, self.tokenizer.vq, grids, frames.shape[0], temporal=temporal)
        state.run(range(n), bar.counting(pick))
        chunks = tuple(bs.Chunk(tokens_crc(list(maps[k])), coders[k].finish()) for k in range(n))
        return chunks, bits

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, bitstream: bytes, n_scales: int | None = None, sample: bool = True,
               seed: int | None = None, *, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, partial: bool = False,
               progress: bool = False) -> np.ndarray:
        """Decode to frames (T,H,W,3) uint8.

        Scales 1..n are range-decoded (n = ``n_scales`` or every coded scale); with ``sample``
        the remaining scales are drawn from the context model with ``seed`` (default: the
        stream's seed) and the stream's temperature / top-k / top-p unless overridden.
        ``partial=True`` accepts a stream cut short and decodes the GOPs it holds.
        """
        stream = bs.unpack(bitstream, partial=partial)
        h = stream.header
        self._check_stream(h)
        n_req = h.coded_scales if n_scales is None else self._check_scales(n_scales)
        opts = SamplingOptions(h.temperature if temperature is None else temperature,
                               h.top_k if top_k is None else top_k, h.top_p if top_p is None else top_p)
        seed = h.seed if seed is None else _check_seed(seed)
        if not stream.gops:
            raise BitstreamError("the stream holds no complete chunk to decode; wait for more bytes")
        out = _frames_buffer(h, len(stream.gops))
        steps = sum(h.gop_frames(g) * (h.n_scales if sample else len(c[:n_req])) for g, c in enumerate(stream.gops))
        with coding_mode(), Progress(progress, "decode", steps, len(stream.gops)) as bar:
            for g in range(len(stream.gops)):
                bar.gop(g)
                chunks = stream.gops[g][:n_req]
                rng = gop_generator(seed, g) if sample else None
                out[g * h.gop_size:g * h.gop_size + h.gop_frames(g)] = self._decode_gop(chunks, h, h.gop_frames(g),
                                                                                        rng, opts, bar)
        return out

    def _decode_gop(self, chunks: tuple[bs.Chunk, ...], h: bs.StreamHeader, n_frames: int,
                    rng: np.random.Generator | None, opts: SamplingOptions, bar: Progress = NO_PROGRESS
                    ) -> np.ndarray:
        with _allocation_errors(h, n_frames):
            state = self._decode_gop_tokens(chunks, h, n_frames, rng, opts, bar)
            return self.tokenizer.synthesise(state.f_hat, h.height, h.width).cpu().numpy()

    def _decode_gop_tokens(self, chunks: tuple[bs.Chunk, ...], h: bs.StreamHeader, n_frames: int,
                           rng: np.random.Generator | None, opts: SamplingOptions, bar: Progress = NO_PROGRESS
                           ) -> GopState:
        grids = list(h.grids)
        decoders = [ChunkDecoder(c.payload) for c in chunks]

        def pick(t: int, k: int, logits: torch.Tensor) -> np.ndarray:
            if k < len(decoders):
                return decoders[k].take(probability_table(logits))
            return sample_tokens(logits, opts, rng)  # type: ignore[arg-type]

        pick = bar.counting(pick)
        state = GopState(self.context, self.tokenizer.vq, grids, n_frames, temporal=h.temporal)
        for k, chunk in enumerate(chunks):
            state.run(range(k, k + 1), pick)
            if tokens_crc(state.tokens[k]) != chunk.crc_tokens:
                raise BitstreamError(f"scale {k + 1} decoded to tokens that fail their checksum: the stream "
                                     "is corrupt, or was encoded on another kind of device or dtype whose "
                                     "probabilities differ; decode it where it was encoded")
        if rng is not None:
            state.run(range(len(chunks), len(grids)), pick)
        return state

    # -- token level ---------------------------------------------------------------------------
    def tokenize(self, video: Any, *, gop_size: int | None = None, refine: int = REFINE_STEPS,
                 **read_options: Any) -> list[list[torch.Tensor]]:
        """Token pyramids of a video as ``encode`` makes them, per GOP: ``[gop][k]`` is
        (T_gop, h_k, w_k) int64 on the CPU."""
        from .video_io import read_video

        frames = read_video(video, **read_options).frames
        gop = self._check_gop(gop_size)
        refine = self._check_refine(refine)
        with coding_mode():
            return [[r.cpu() for r in self.tokenizer.tokenize(x, refine)] for x in self._gops(frames, gop)]

    def _gops(self, frames: np.ndarray, gop: int) -> Iterator[torch.Tensor]:
        """(T,H,W,3) uint8 -> one (T_gop,H,W,3) uint8 tensor on the codec's device per GOP."""
        for i in range(0, len(frames), gop):
            yield torch.from_numpy(np.ascontiguousarray(frames[i:i + gop])).to(self.device)

    def decode_tokens(self, bitstream: bytes, n_scales: int | None = None) -> list[list[torch.Tensor]]:
        """The coded tokens of a stream, per GOP: ``[gop][k]`` is (T_gop, h_k, w_k) int64 on the CPU."""
        stream = bs.unpack(bitstream)
        self._check_stream(stream.header)
        n = stream.header.coded_scales if n_scales is None else self._check_scales(n_scales)
        h, out = stream.header, []
        with coding_mode():
            for g, chunks in enumerate(stream.gops):
                with _allocation_errors(h, h.gop_frames(g)):
                    state = self._decode_gop_tokens(chunks[:n], h, h.gop_frames(g), None, SamplingOptions())
                out.append([r.cpu() for r in state.token_maps()])
        return out

    # -- checks --------------------------------------------------------------------------------
    def _check_scales(self, n_scales: int | None) -> int:
        return _check_int("n_scales", self.n_scales if n_scales is None else n_scales, 1, self.n_scales)

    def _check_gop(self, gop_size: int | None) -> int:
        return _check_int("gop_size", self.gop_size if gop_size is None else gop_size, 1, bs.MAX_GOP)

    @staticmethod
    def _check_refine(refine: int) -> int:
        return _check_int("refine", refine, 0, MAX_REFINE_STEPS)

    def _check_stream(self, h: bs.StreamHeader) -> None:
        if h.model_name != self.config.name or h.weights_sha256 != self.weights_sha256:
            raise BitstreamError(f"stream was made by model {h.model_name!r} (weights "
                                 f"{h.weights_sha256.hex()[:12]}), but this codec is {self.config.name!r} "
                                 f"(weights {self.weights_sha256.hex()[:12]}); decode it with "
                                 "Codec.from_pretrained of that model")
        if list(h.grids) != self.tokenizer.grids(h.height, h.width) or h.n_scales != self.n_scales:
            raise BitstreamError("the stream's scale schedule does not match this model's; the header is corrupt")


def _checked_shapes(config: CodecConfig, state: dict[str, torch.Tensor], origin: str) -> dict:
    """Refuse tensors whose shapes differ from what ``config`` builds, naming the file."""
    with torch.device("meta"):
        expected = CodecModel(config).state_dict()
    bad = [k for k, v in expected.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    extra = sorted(set(state) - set(expected))
    if bad or extra:
        raise WeightsError(f"{origin}: tensors do not match its config (first mismatches: "
                           f"{(bad + extra)[:3]}); the file is damaged or was saved with another config")
    return state


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer option in lo..hi (bools and floats refused), else ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int:
    """A sampling seed: the stream's u64 range."""
    return _check_int("seed", seed, 0, bs.MAX_SEED)


def _frames_buffer(h: bs.StreamHeader, n_gops: int) -> np.ndarray:
    """The (T,H,W,3) uint8 output of ``decode`` for its first ``n_gops`` GOPs, allocated before any
    GOP is decoded: a stream that claims more frames than memory can hold fails at once (and the
    result is not copied once more by a final concatenation)."""
    n_frames = min(h.n_frames, n_gops * h.gop_size)
    try:
        return np.empty((n_frames, h.height, h.width, 3), np.uint8)
    except MemoryError as exc:
        gib = n_frames * h.height * h.width * 3 / 2**30
        raise BitstreamError(f"the stream decodes to {n_frames} frames of {h.width}x{h.height} ({gib:.1f} GiB), "
                             "more memory than this machine can give; decode it GOP by GOP with "
                             "progvc.Decoder") from exc


@contextmanager
def _allocation_errors(h: bs.StreamHeader, n_frames: int) -> Iterator[None]:
    """Report a failed allocation while decoding a GOP as BitstreamError naming the frame size (a
    stream may legally claim GOPs of 256 frames of 8192x8192, more than a machine can hold)."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:  # torch's CPU allocator raises a plain RuntimeError
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc) and "out of memory" not in str(exc):
            raise
        raise BitstreamError(f"decoding a GOP of {n_frames} frames of {h.width}x{h.height} needs more memory than "
                             "this machine has; decode the stream on a larger machine") from exc
