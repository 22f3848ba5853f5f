"""``Codec``: a loaded model that turns videos into progressive streams and back.

::

    video ─► open_video (read GOP by GOP) ─► GOPs of T frames ─► GopEncoder: latent (g_a + refinement of the preset)
      ─► rate-distortion token choice at the quality's lambda ─► one range-coded chunk per scale ─► pack

    bytes ─► limits ─► unpack ─► iter_decode, per GOP: GopDecoder: range-decode scales 1..n,
      fill the rest (mean/sample/none) ─► f_hat ─► Tokenizer.synthesise ─► frames (T,H,W,3) uint8
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..coding.fill import DEFAULT_SAMPLING, FillOptions
from ..coding.footprint import estimate
from ..coding.gop import EncodedGop, GopDecoder, GopEncoder
from ..coding.options import (
    AUTO_RESIZE,
    DEFAULT_QUALITY,
    default_gop_size,
    get_preset,
    quality_of,
    rd_lambda,
    scales_run,
)
from ..models.config import CodecConfig
from ..models.context import ContextModel
from ..models.portable import PortableContextModel
from ..models.tokenizer import Tokenizer
from ..runtime.determinism import coding_mode
from ..runtime.devices import resolve_device
from ..runtime.errors import BitstreamError, VideoError, WeightsError
from ..runtime.progress import NO_PROGRESS, Progress
from ..stream import format as bs
from ..stream.truncation import truncate
from ..video.resize import downsample
from ..weights import load_named, parse_weights, serialize, sha256_hex
from .admission import Admission, admit
from .decoded_gops import DecodedGops
from .limits import Limits
from .options import DecodeOptions, EncodeOptions, Whole
from .rate_control import budget_bytes, search_quality


class CodecModel(nn.Module):
    """The trainable parts under one state dict: ``tokenizer.*`` and ``context.*``."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(config.tokenizer)
        model = PortableContextModel if config.context.portable else ContextModel
        self.context = model(config.context, config.tokenizer)


@dataclass(frozen=True)
class EncodeResult:
    """A stream and what it cost, by the model's own estimate (-sum log2 p of the tokens sent):
    ``estimated_bits[k]`` for scale k over all frames, ``frame_bits[t]`` for frame t over the
    scales it sent. ``qualities[g]`` is the quality GOP g was coded at."""

    bitstream: bytes
    estimated_bits: tuple[float, ...]
    n_frames: int
    width: int
    height: int
    seconds: float
    frame_bits: tuple[float, ...] = ()
    qualities: tuple[float, ...] = ()

    @property
    def bpp(self) -> float:
        return 8 * len(self.bitstream) / (self.n_frames * self.width * self.height)

    @classmethod
    def of(cls, data: bytes, coded: list[EncodedGop], header: bs.StreamHeader, seconds: float) -> EncodeResult:
        per_scale = np.zeros(header.coded_scales)
        for c in coded:
            per_scale[:c.bits.shape[1]] += c.bits.sum(0)
        frame_bits = np.concatenate([c.bits.sum(1) for c in coded])
        return cls(data, tuple(per_scale.tolist()), header.n_frames, header.width, header.height, seconds,
                   tuple(frame_bits.tolist()), tuple(quality_of(c.rd_lambda) for c in coded))


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
        """A randomly initialised codec (tests, training start). The same ``seed`` gives the same weights
        on the same kind of CPU and PyTorch build, not across kinds: PyTorch's samplers round the last
        bit differently under its AVX2 and AVX-512 kernels (a weights file is the portable form)."""
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
        """Frames per GOP of the sequences the model was trained on (``config.gop_size``). ``encode``
        without ``gop_size`` codes longer GOPs: :func:`progvc.coding.options.default_gop_size`."""
        return self.config.gop_size

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, video: Any, n_scales: int | None = None, *, options: EncodeOptions | None = None,
               **kwargs: Any) -> bytes:
        """Encode ``video`` (path or (T,H,W,3) uint8 array) to a stream of ``n_scales`` scales.

        Every option is a field of :class:`~progvc.codec.options.EncodeOptions` (its default, range
        and meaning are written there), given as ``options=`` or as keyword arguments (on top of
        ``options``): ``quality`` (0..100) sets the rate-distortion trade-off of the token choice,
        ``preset`` ("fast", "medium", "slow") the encoder's effort, ``bpp`` instead of
        ``n_scales``/``quality`` searches one quality for the whole stream that fills the budget
        without exceeding it; ``gop_size``, ``resize``, ``limits``, reading options (``max_frames``,
        ``max_side``, ``downscale``, raw ``size``/``pix_fmt_in``) and more. A path is read one GOP
        at a time.
        """
        return self.encode_with_stats(video, n_scales, options=options, **kwargs).bitstream

    def encode_with_stats(self, video: Any, n_scales: int | None = None, *, options: EncodeOptions | None = None,
                          **kwargs: Any) -> EncodeResult:
        """``encode`` that also reports the model's estimated bits and the time taken.

        A path is read one GOP at a time, so memory does not grow with the video's length (with
        ``bpp`` the GOPs' latents are kept for the quality search: one (C,h,w) float32 latent per
        frame); frames above ``limits.max_frame_pixels`` raise LimitError before any model work.
        ``resize=None`` is 1, except with ``bpp``: then the video is coded to the budget at each size
        of ``AUTO_RESIZE`` and the stream whose decode is closer to the source is kept
        (:meth:`_encode_at_best_size`).
        """
        opts = EncodeOptions.build(options, n_scales=n_scales, **kwargs)
        if opts.resize is None and opts.bpp is not None:
            return self._encode_at_best_size(video, opts)
        start = time.perf_counter()
        job = self._encode_job(video, replace(opts, resize=opts.resize or 1))
        coded, header = self._code_gops(job)
        header = replace(header, coded_scales=max(len(c.chunks) for c in coded))
        data = bs.pack(job.stream(coded, header))
        if opts.bpp is not None and len(data) > budget_bytes(opts.bpp, header):  # quality 0 is too dear
            data, coded = _drop_scales(data, coded, opts.bpp)
        return EncodeResult.of(data, coded, header, time.perf_counter() - start)

    def _encode_job(self, video: Any, opts: EncodeOptions) -> _EncodeJob:
        """Everything an encode decides before its first GOP: the options resolved against the preset
        and the model, the video opened, the frame size checked against the limits, the GOP length,
        the memory estimate checked, the GOP encoder set up."""
        from ..video.io import count_frames, open_video

        n = self.check_scales(opts.n_scales)
        effort = get_preset(opts.preset)
        refine = effort.refine if opts.refine is None else opts.refine
        prefix_refine = effort.prefix_refine if opts.prefix_refine is None else opts.prefix_refine
        clip = open_video(video, **opts.read_options)
        frames, (height, width) = _peek_size(clip.frames)
        opts.limits.check_frame(width, height, "the video")
        coded_w, coded_h = bs.coded_size(width, height, opts.resize)
        gop = default_gop_size(coded_w, coded_h) if opts.gop_size is None else opts.gop_size
        known = len(clip.frames) if isinstance(clip.frames, np.ndarray) else None  # a file: read as it goes
        largest = gop if known is None else min(gop, known)  # a short clip is one short GOP
        opts.limits.check_memory(estimate(self.config, coded_w, coded_h, largest, n, temporal=opts.temporal,
                                          encode=True, refine=refine > 0 or prefix_refine > 0, resize=opts.resize),
                                 "encoding")
        grids = self.tokenizer.grids(coded_h, coded_w)
        if known is None and opts.progress:  # the bar's total: count the file's frames (cheap beside coding)
            known = count_frames(video, size=opts.size, max_frames=opts.max_frames, pix_fmt_in=opts.pix_fmt_in)
        encoder = GopEncoder(self.tokenizer, self.context, grids, temporal=opts.temporal,
                             skip_block=opts.skip_block if opts.temporal else 0, modes=opts.temporal,
                             intra_trials=effort.intra_trials if opts.intra_trials is None else opts.intra_trials,
                             inter_lambda_scale=opts.inter_lambda_scale, coarse_lambda_scale=opts.coarse_lambda_scale)
        return _EncodeJob(opts, n, refine, prefix_refine, frames, Fraction(clip.fps).limit_denominator(1 << 20),
                          width, height, gop, tuple(grids), known, encoder)

    def _code_gops(self, job: _EncodeJob) -> tuple[list[EncodedGop], bs.StreamHeader]:
        """Tokenize and code every GOP at the options' quality, or, with ``bpp``, keep the latents and
        search the quality whose stream fills the budget (:func:`~progvc.codec.rate_control.search_quality`)."""
        opts, n, encoder = job.options, job.n_scales, job.encoder
        lam = rd_lambda(DEFAULT_QUALITY if opts.quality is None else opts.quality)
        steps, n_gops = (None, None) if job.known is None else (job.known * n, -(-job.known // job.gop))
        n_frames, coded, kept = 0, [], []
        with coding_mode(), Progress(opts.progress, "encode", steps, n_gops) as bar:
            for g, gop_frames in enumerate(self._gops(job.frames, job.gop)):
                bar.gop(g, "tokenizing")
                f = encoder.latent(downsample(gop_frames, opts.resize), job.refine, job.prefix_refine)
                n_frames += len(gop_frames)
                if opts.bpp is None:
                    coded.append(encoder.code(f, lam, n, bar))
                else:
                    kept.append(f)  # reused by every probe of the quality search
            header = job.header(self.config.name, self.weights_sha256, n_frames)
            if opts.bpp is not None:
                coded = search_quality(lambda lam: [encoder.code(f, lam, n) for f in kept], header,
                                       budget_bytes(opts.bpp, header))
        return coded, header

    def _encode_at_best_size(self, video: Any, opts: EncodeOptions) -> EncodeResult:
        """``encode_with_stats(video, options=opts)`` at each size of ``AUTO_RESIZE``, every one filling
        the bpp budget; the stream kept is the one whose decode has the least squared error against
        the source (the highest PSNR; the first size on a tie). The source is read once more and
        compared GOP by GOP with every candidate's decode of that GOP."""
        from ..video.io import batches, open_video

        start = time.perf_counter()
        results = [self.encode_with_stats(video, options=replace(opts, resize=factor)) for factor in AUTO_RESIZE]
        clip = open_video(video, **opts.read_options)
        decodes = [self.iter_decode(r.bitstream, limits=opts.limits) for r in results]
        errors = [0] * len(results)
        for source, *decoded in zip(batches(clip.frames, decodes[0].header.gop_size), *decodes, strict=True):
            for i, frames in enumerate(decoded):
                errors[i] += sum(int(np.square(src.astype(np.int32) - out).sum())
                                 for src, out in zip(source, frames, strict=True))
        best = results[errors.index(min(errors))]
        return replace(best, seconds=time.perf_counter() - start)

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, bitstream: bytes, n_scales: int | None = None, fill: str | None = None,
               seed: int | None = None, *, options: DecodeOptions | None = None, **kwargs: Any) -> np.ndarray:
        """Decode to frames (T,H,W,3) uint8: :meth:`iter_decode` gathered into one array.

        Same arguments as :meth:`iter_decode` (``limits`` among them). The array is allocated
        once, before the first GOP is decoded; for videos too long to hold, use ``iter_decode``.
        """
        opts = DecodeOptions.build(options, n_scales=n_scales, fill=fill, seed=seed, **kwargs)
        gops = self.iter_decode(bitstream, options=opts)
        self.admit(bitstream, opts, output_frames=gops.n_frames, job="decoding into one array")  # + the array
        out = _frames_buffer(gops.header, gops.n_frames)
        done = 0
        for frames in gops:
            out[done:done + len(frames)] = frames
            done += len(frames)
        return out

    def iter_decode(self, bitstream: bytes, n_scales: int | None = None, fill: str | None = None,
                    seed: int | None = None, *, options: DecodeOptions | None = None, **kwargs: Any
                    ) -> DecodedGops:
        """Decode GOP by GOP: an iterator of (T_g,H,W,3) uint8 arrays, one per GOP, in order.

        Options are the fields of :class:`~progvc.codec.options.DecodeOptions`, as ``options=`` or
        keyword arguments. Scales 1..n are range-decoded (n = ``n_scales`` or every coded scale);
        ``fill`` says how the remaining scales are made (:mod:`progvc.coding.fill`: "sample", the
        default, the sent scales' picture plus the finest band of a draw, with ``seed`` (default:
        the stream's) and the stream's temperature / top-k / top-p unless overridden; "none", the
        sent scales only, which skips the context model on the scales not sent; "mean", their
        expected embedding). ``partial=True`` accepts a stream cut short and decodes the GOPs it holds.

        Everything is checked here, before the first GOP is decoded (:meth:`admit`: the header
        against ``limits``, the model, the options, the memory) and every byte of the container. A
        GOP is decoded only when the iterator is asked for it, so memory holds one GOP whatever the
        video's length.
        """
        opts = DecodeOptions.build(options, n_scales=n_scales, fill=fill, seed=seed, **kwargs)
        let_in = self.admit(bitstream, opts)
        stream = bs.unpack(bitstream, partial=opts.partial)
        if not stream.gops:
            raise BitstreamError("the stream holds no complete chunk to decode; wait for more bytes")
        n_frames = sum(let_in.header.gop_frames(g) for g in range(len(stream.gops)))
        gops = self._decoded_gops(stream, let_in.n_req, let_in.fill, opts.progress, opts.deblock)
        return DecodedGops(let_in.header, n_frames, gops, let_in.scales, let_in.fill.mode)

    def admit(self, data: bytes, options: DecodeOptions, **kwargs: Any) -> Admission:
        """:func:`~progvc.codec.admission.admit` a stream (its header, at the start of ``data``) for this
        model: limits, model name and weights, scale schedule, options, memory."""
        if options.n_scales is not None:
            self.check_scales(options.n_scales)
        return admit(data, options, config=self.config, check_model=self.check_model, **kwargs)

    def _decoded_gops(self, stream: bs.Stream, n_req: int, opts: FillOptions, progress: bool,
                      deblock: bool = True) -> Iterator[np.ndarray]:
        """The frames of each GOP, decoded when asked for. Coding mode is entered per GOP and left
        before each ``yield``: the caller's code between GOPs runs under its own torch settings. The
        progress bar counts (frame, scale) steps across GOPs and closes when the iterator does."""
        h = stream.header
        steps = sum(h.gop_frames(g) * scales_run(opts.mode, len(c[:n_req]), h.n_scales)
                    for g, c in enumerate(stream.gops))
        with Progress(progress, "decode", steps, len(stream.gops)) as bar:
            for g, chunks in enumerate(stream.gops):
                bar.gop(g)
                with coding_mode(), _allocation_errors(h, h.gop_frames(g)):
                    decoder = self.gop_decoder(h, g, stream.rd_lambda(g), opts, bar, deblock)
                    for chunk in chunks[:n_req]:
                        decoder.add(chunk)
                    frames = decoder.frames()
                yield frames

    def gop_decoder(self, header: bs.StreamHeader, gop: int, rd_lambda: float, fill: FillOptions,
                    bar: Progress = NO_PROGRESS, deblock: bool = True) -> GopDecoder:
        """A :class:`~progvc.coding.gop.GopDecoder` for GOP ``gop`` of a stream with this header."""
        return GopDecoder(self.tokenizer, self.context, header, gop, rd_lambda, fill, bar, deblock)

    # -- token level ---------------------------------------------------------------------------
    def tokenize(self, video: Any, *, options: EncodeOptions | None = None, **kwargs: Any
                 ) -> list[list[torch.Tensor]]:
        """The tokens ``encode`` sends for a video (same options), per GOP: ``[gop][k]`` is
        (T_gop, h_k, w_k) int64 on the CPU."""
        return self.decode_tokens(self.encode(video, options=options, **kwargs))

    def _gops(self, frames: np.ndarray | Iterable[np.ndarray], gop: int) -> Iterator[torch.Tensor]:
        """One (T_gop,H,W,3) uint8 tensor on the codec's device per GOP, from a (T,H,W,3) array or
        an iterable of (H,W,3) frames (read one GOP at a time; see ``video_io.batches``)."""
        from ..video.io import batches

        for x in batches(frames, gop):
            yield torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def decode_tokens(self, bitstream: bytes, n_scales: int | None = None, *, limits: Limits | None = None
                      ) -> list[list[torch.Tensor]]:
        """The coded tokens of a stream, per GOP: ``[gop][k]`` is (T_gop, h_k, w_k) int64 on the CPU.
        ``limits`` as in :meth:`iter_decode`."""
        let_in = self.admit(bitstream, DecodeOptions(n_scales=n_scales, fill="none", limits=limits))
        h, stream = let_in.header, bs.unpack(bitstream)
        out = []
        with coding_mode():
            for g, chunks in enumerate(stream.gops):
                with _allocation_errors(h, h.gop_frames(g)):
                    decoder = self.gop_decoder(h, g, stream.rd_lambda(g), let_in.fill)
                    for chunk in chunks[:let_in.n_req]:
                        decoder.add(chunk)
                out.append([r.cpu() for r in decoder.token_maps()])
        return out

    # -- checks --------------------------------------------------------------------------------
    def check_scales(self, n_scales: int | None) -> int:
        """``n_scales`` (None: every scale) as a scale count of this model, else ConfigError."""
        return Whole(1, self.n_scales)("n_scales", self.n_scales if n_scales is None else n_scales)

    def check_model(self, h: bs.StreamHeader) -> None:
        """Refuse a stream made by another model (BitstreamError naming it) or whose scale schedule
        is not this model's."""
        if h.model_name != self.config.name or h.weights_sha256 != self.weights_sha256[:len(h.weights_sha256)]:
            raise BitstreamError(f"stream was made by model {h.model_name!r} (weights "
                                 f"{h.weights_sha256.hex()[:12]}), but this codec is {self.config.name!r} "
                                 f"(weights {self.weights_sha256.hex()[:12]}); decode it with "
                                 "Codec.from_pretrained of that model")
        if list(h.grids) != self.tokenizer.grids(*reversed(h.coded_size)) or h.n_scales != self.n_scales:
            raise BitstreamError("the stream's scale schedule does not match this model's; the header is corrupt")


@dataclass(frozen=True)
class _EncodeJob:
    """An encode's decisions, made before its first GOP (:meth:`Codec._encode_job`)."""

    options: EncodeOptions
    n_scales: int
    refine: int
    prefix_refine: int
    frames: Any  # (T,H,W,3) uint8 array, or an iterator of (H,W,3) frames read as it goes
    fps: Fraction
    width: int
    height: int
    gop: int
    grids: tuple
    known: int | None  # frames, where known before reading them
    encoder: GopEncoder

    def header(self, name: str, weights_sha256: bytes, n_frames: int) -> bs.StreamHeader:
        o = self.options
        return bs.StreamHeader(name, weights_sha256, self.width, self.height, n_frames, self.fps, self.gop,
                               self.grids, self.n_scales, o.seed,
                               DEFAULT_SAMPLING.temperature if o.temperature is None else o.temperature,
                               DEFAULT_SAMPLING.top_k if o.top_k is None else o.top_k,
                               DEFAULT_SAMPLING.top_p if o.top_p is None else o.top_p, o.temporal,
                               o.skip_block if o.temporal else 0, modes=o.temporal, resize=o.resize,
                               portable=self.encoder.ctx.portable, deblock=o.deblock)

    @staticmethod
    def stream(coded: list[EncodedGop], header: bs.StreamHeader) -> bs.Stream:
        return bs.Stream(header, tuple(c.chunks for c in coded), rd_lambdas=tuple(c.rd_lambda for c in coded))


def _drop_scales(data: bytes, coded: list[EncodedGop], bpp: float) -> tuple[bytes, list[EncodedGop]]:
    """``truncate(data, bpp=bpp)`` and the GOPs cut to the scales it keeps, with their bits
    (BelowSmallestStream where even one scale per GOP is too dear)."""
    data = truncate(data, bpp=bpp)
    kept = bs.unpack(data).gops
    return data, [EncodedGop(c.chunks[:len(k)], c.bits[:, :len(k)], c.rd_lambda)
                  for c, k in zip(coded, kept, strict=True)]


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


def _peek_size(frames: np.ndarray | Iterator[np.ndarray]) -> tuple[np.ndarray | Iterator[np.ndarray], tuple[int, int]]:
    """``frames`` (a (T,H,W,3) array or an iterator of (H,W,3) frames, read once) and the size
    (H, W) of its first frame, which the default GOP length depends on; VideoError if there is none."""
    if isinstance(frames, np.ndarray):
        if len(frames):
            return frames, frames.shape[1:3]
    else:
        first = next(frames, None)
        if first is not None:
            return itertools.chain([first], frames), first.shape[:2]
    raise VideoError("the video contains no decodable frames; check that it plays")


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
