"""``Codec``: a loaded model that turns videos into progressive streams and back.

::

    video ─► read_video ─► GOPs of T frames ─► Tokenizer.tokenize ─► K token maps (T,h_k,w_k)
      ─► GopState.run (known tokens) ─► quantised tables ─► ChunkEncoder per scale ─► pack

    bytes ─► unpack ─► per GOP: GopState.run (range-decode scales < n, sample the rest)
      ─► f_hat ─► Tokenizer.synthesise ─► frames (T,H,W,3) uint8
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Iterable, Iterator
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
from .errors import BitstreamError, ConfigError, VideoError, WeightsError
from .gops import DecodedGops
from .limits import Limits, as_limits
from .memory import ENTROPY_ENTRIES, MemoryEstimate, decode_estimate, estimate
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


def _row_slices(logits: torch.Tensor) -> list[slice]:
    step = max(1, ENTROPY_ENTRIES // logits.shape[-1])
    return [slice(i, i + step) for i in range(0, logits.shape[0], step)]


def range_encode(coder: ChunkEncoder, tokens: np.ndarray, logits: torch.Tensor) -> float:
    """Code tokens (n,) under logits (n, V), a slice of rows at a time; returns the model's bits."""
    bits = 0.0
    for rows in _row_slices(logits):
        coder.add(tokens[rows], probability_table(logits[rows]))
        bits += cross_entropy_bits(logits[rows], tokens[rows])
    return bits


def range_decode(decoder: ChunkDecoder, logits: torch.Tensor) -> np.ndarray:
    """Tokens (n,) int64 decoded under logits (n, V), a slice of rows at a time (ENTROPY_ENTRIES)."""
    return np.concatenate([decoder.take(probability_table(logits[rows])) for rows in _row_slices(logits)])


def sample_rows(logits: torch.Tensor, opts: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """``sample_tokens`` a slice of rows at a time: rows are drawn independently, in order, from one
    generator, so the tokens are the same, with about 50 bytes per logit entry held per slice."""
    return np.concatenate([sample_tokens(logits[rows], opts, rng) for rows in _row_slices(logits)])


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
        ``REFINE_STEPS``; 0 is the fast greedy tokenizer, same stream format), progress,
        limits (a :class:`~progvc.limits.Limits`).
        Reading options (passed to :func:`progvc.video_io.open_video`; a path is read one GOP at a
        time): ``max_frames`` (code only the first N frames), ``max_side`` (shrink by a whole factor
        until the long side fits), ``downscale`` (a whole factor), ``pix_fmt_in`` (raw .yuv layout).
        """
        return self.encode_with_stats(video, n_scales, bpp=bpp, **options).bitstream

    def encode_with_stats(self, video: Any, n_scales: int | None = None, *, gop_size: int | None = None,
                          fps: float | Fraction | None = None, size: tuple[int, int] | None = None,
                          seed: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                          temporal: bool = True, progress: bool = False, bpp: float | None = None,
                          refine: int = REFINE_STEPS, max_frames: int | None = None, max_side: int | None = None,
                          downscale: int = 1, pix_fmt_in: str = "yuv420p", limits: Limits | None = None
                          ) -> EncodeResult:
        """``encode`` that also reports the model's estimated bits per scale and the time taken.

        With ``bpp``, ``estimated_bits`` counts only the chunks the budget kept. A path is read
        one GOP at a time (``max_frames``: only its first frames), so memory does not grow with
        the video's length; frames above ``limits.max_frame_pixels`` raise LimitError before any
        model work.
        """
        from .video_io import count_frames, open_video

        if bpp is not None and n_scales is not None:
            raise ConfigError("give n_scales or bpp, not both")
        start = time.perf_counter()
        n = self._check_scales(n_scales)
        gop = self._check_gop(gop_size)
        _check_int("top_k", top_k, 0, (1 << 32) - 1)
        SamplingOptions(temperature, top_k, top_p)
        seed = _check_seed(seed)
        refine = self._check_refine(refine)
        limits = as_limits(limits)
        clip = open_video(video, size=size, fps=fps, max_frames=max_frames, max_side=max_side, downscale=downscale,
                          pix_fmt_in=pix_fmt_in)
        batches = self._gops(clip.frames, gop)
        first = next(batches, None)
        if first is None:
            raise VideoError("the video contains no decodable frames; check that it plays")
        height, width = first.shape[1:3]
        limits.check_frame(width, height, "the video")
        limits.check_memory(estimate(self.config, width, height, gop, n, temporal=temporal, encode=True,
                                     refine=refine > 0), "encoding")
        grids = self.tokenizer.grids(height, width)
        gop_bits, gops, n_frames = [], [], 0
        known = len(clip.frames) if isinstance(clip.frames, np.ndarray) else None  # a file: read as it goes
        if known is None and progress:  # the bar's total: count the file's frames (decoding is cheap beside coding)
            known = count_frames(video, size=size, max_frames=max_frames, pix_fmt_in=pix_fmt_in)
        steps, n_gops = (None, None) if known is None else (known * n, -(-known // gop))
        with coding_mode(), Progress(progress, "encode", steps, n_gops) as bar:
            for g, gop_frames in enumerate(itertools.chain([first], batches)):
                bar.gop(g, "tokenizing")
                chunks, bits = self._encode_gop(gop_frames, grids, n, temporal, refine, bar)
                gops.append(chunks)
                gop_bits.append(bits)
                n_frames += len(gop_frames)
        header = bs.StreamHeader(self.config.name, self.weights_sha256, width, height, n_frames,
                                 Fraction(clip.fps).limit_denominator(1 << 20), gop, tuple(grids), n, seed,
                                 temperature, top_k, top_p, temporal)
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
            bits[k] += range_encode(coders[k], tokens, logits)
            return tokens

        state = GopState(self.context, self.tokenizer.vq, grids, frames.shape[0], temporal=temporal)
        state.run(range(n), bar.counting(pick))
        chunks = tuple(bs.Chunk(tokens_crc(list(maps[k])), coders[k].finish()) for k in range(n))
        return chunks, bits

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, bitstream: bytes, n_scales: int | None = None, sample: bool = True,
               seed: int | None = None, **options: Any) -> np.ndarray:
        """Decode to frames (T,H,W,3) uint8: :meth:`iter_decode` gathered into one array.

        Same arguments as :meth:`iter_decode` (``limits`` among them). The array is allocated
        once, before the first GOP is decoded; for videos too long to hold, use ``iter_decode``.
        """
        gops = self.iter_decode(bitstream, n_scales, sample, seed, **options)
        need = self._gop_memory(gops.header, gops.scales, output_frames=gops.n_frames)  # + the array below
        as_limits(options.get("limits")).check_memory(need, "decoding into one array")
        out = _frames_buffer(gops.header, gops.n_frames)
        done = 0
        for frames in gops:
            out[done:done + len(frames)] = frames
            done += len(frames)
        return out

    def iter_decode(self, bitstream: bytes, n_scales: int | None = None, sample: bool = True,
                    seed: int | None = None, *, temperature: float | None = None, top_k: int | None = None,
                    top_p: float | None = None, partial: bool = False, progress: bool = False,
                    limits: Limits | None = None) -> DecodedGops:
        """Decode GOP by GOP: an iterator of (T_g,H,W,3) uint8 arrays, one per GOP, in order.

        Scales 1..n are range-decoded (n = ``n_scales`` or every coded scale); with ``sample``
        the remaining scales are drawn from the context model with ``seed`` (default: the
        stream's seed) and the stream's temperature / top-k / top-p unless overridden.
        ``partial=True`` accepts a stream cut short and decodes the GOPs it holds.

        Everything is checked here, before the first GOP is decoded: the header against
        ``limits`` (default :class:`~progvc.limits.Limits`: LimitError), the model, the options and
        every byte of the container. A GOP is decoded only when the iterator is asked for it,
        so memory holds one GOP whatever the video's length.
        """
        h = bs.parse_header(bitstream)
        self._check_stream(h)
        limits = as_limits(limits)
        limits.check_stream(h)
        n_req = h.coded_scales if n_scales is None else self._check_scales(n_scales)
        scales = h.n_scales if sample else min(n_req, h.coded_scales)  # sampling runs every scale
        limits.check_memory(self._gop_memory(h, scales), "decoding")
        stream = bs.unpack(bitstream, partial=partial)
        opts = SamplingOptions(h.temperature if temperature is None else temperature,
                               h.top_k if top_k is None else top_k, h.top_p if top_p is None else top_p)
        seed = h.seed if seed is None else _check_seed(seed)
        if not stream.gops:
            raise BitstreamError("the stream holds no complete chunk to decode; wait for more bytes")
        n_frames = sum(h.gop_frames(g) for g in range(len(stream.gops)))
        return DecodedGops(h, n_frames, self._decoded_gops(stream, n_req, sample, seed, opts, progress), scales)

    def _decoded_gops(self, stream: bs.Stream, n_req: int, sample: bool, seed: int, opts: SamplingOptions,
                      progress: bool) -> Iterator[np.ndarray]:
        """The frames of each GOP, decoded when asked for. Coding mode is entered per GOP and left
        before each ``yield``: the caller's code between GOPs runs under its own torch settings. The
        progress bar counts (frame, scale) steps across GOPs and closes when the iterator does."""
        h = stream.header
        steps = sum(h.gop_frames(g) * (h.n_scales if sample else len(c[:n_req])) for g, c in enumerate(stream.gops))
        with Progress(progress, "decode", steps, len(stream.gops)) as bar:
            for g in range(len(stream.gops)):
                bar.gop(g)
                rng = gop_generator(seed, g) if sample else None
                with coding_mode():
                    frames = self._decode_gop(stream.gops[g][:n_req], h, h.gop_frames(g), rng, opts, bar)
                yield frames

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
                return range_decode(decoders[k], logits)
            return sample_rows(logits, opts, rng)  # type: ignore[arg-type]

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
        from .video_io import open_video

        frames = open_video(video, **read_options).frames
        gop = self._check_gop(gop_size)
        refine = self._check_refine(refine)
        with coding_mode():
            return [[r.cpu() for r in self.tokenizer.tokenize(x, refine)] for x in self._gops(frames, gop)]

    def _gops(self, frames: np.ndarray | Iterable[np.ndarray], gop: int) -> Iterator[torch.Tensor]:
        """One (T_gop,H,W,3) uint8 tensor on the codec's device per GOP, from a (T,H,W,3) array or
        an iterable of (H,W,3) frames (read one GOP at a time; see ``video_io.batches``)."""
        from .video_io import batches

        for x in batches(frames, gop):
            yield torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def decode_tokens(self, bitstream: bytes, n_scales: int | None = None, *, limits: Limits | None = None
                      ) -> list[list[torch.Tensor]]:
        """The coded tokens of a stream, per GOP: ``[gop][k]`` is (T_gop, h_k, w_k) int64 on the CPU.
        ``limits`` as in :meth:`iter_decode`."""
        h = bs.parse_header(bitstream)
        self._check_stream(h)
        as_limits(limits).check_stream(h)
        stream = bs.unpack(bitstream)
        n = stream.header.coded_scales if n_scales is None else self._check_scales(n_scales)
        h, out = stream.header, []
        with coding_mode():
            for g, chunks in enumerate(stream.gops):
                with _allocation_errors(h, h.gop_frames(g)):
                    state = self._decode_gop_tokens(chunks[:n], h, h.gop_frames(g), None, SamplingOptions())
                out.append([r.cpu() for r in state.token_maps()])
        return out

    # -- checks --------------------------------------------------------------------------------
    def _gop_memory(self, h: bs.StreamHeader, scales: int, output_frames: int = 0) -> MemoryEstimate:
        """Estimated peak bytes to decode one GOP of ``h`` through ``scales`` scales (progvc.memory)."""
        return decode_estimate(self.config, h, scales, output_frames)

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


def _frames_buffer(h: bs.StreamHeader, n_frames: int) -> np.ndarray:
    """The (T,H,W,3) uint8 output of ``decode``, allocated before any GOP is decoded: a stream that
    claims more frames than memory can hold fails at once, even with raised limits (and the result
    is not copied once more by a final concatenation)."""
    try:
        return np.empty((n_frames, h.height, h.width, 3), np.uint8)
    except MemoryError as exc:
        gib = n_frames * h.height * h.width * 3 / 2**30
        raise BitstreamError(f"the stream decodes to {n_frames} frames of {h.width}x{h.height} ({gib:.1f} GiB), "
                             "more memory than this machine can give; decode it GOP by GOP with "
                             "Codec.iter_decode or progvc.Decoder") from exc


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
