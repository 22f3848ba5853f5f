"""``Codec``: a loaded model that turns videos into progressive streams and back.

::

    video ─► open_video (read GOP by GOP) ─► GOPs of T frames ─► GopEncoder: latent (g_a + refinement of the preset)
      ─► rate-distortion token choice at the quality's lambda ─► one range-coded chunk per scale ─► pack

    bytes ─► limits ─► unpack ─► iter_decode, per GOP: GopDecoder: range-decode scales 1..n,
      fill the rest (mean/sample/none) ─► f_hat ─► Tokenizer.synthesise ─► frames (T,H,W,3) uint8
"""

from __future__ import annotations

import itertools
import math
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

from . import bitstream as bs
from .config import MAX_REFINE_STEPS, CodecConfig
from .determinism import coding_mode
from .devices import resolve_device
from .errors import BitstreamError, ConfigError, VideoError, WeightsError
from .fill import DEFAULT_SAMPLING, FillOptions, SamplingOptions, check_seed
from .gop_coding import EncodedGop, GopDecoder, GopEncoder
from .gops import DecodedGops
from .limits import Limits, as_limits
from .memory import MemoryEstimate, decode_estimate, estimate
from .models.context import ContextModel
from .models.portable import PortableContextModel
from .models.tokenizer import Tokenizer
from .options import (
    AUTO_RESIZE,
    DEFAULT_INTER_LAMBDA_SCALE,
    DEFAULT_PRESET,
    DEFAULT_QUALITY,
    DEFAULT_SKIP_BLOCK,
    check_coarse_lambda_scale,
    check_lambda_scale,
    default_gop_size,
    get_preset,
    quality_of,
    rd_lambda,
    scales_run,
)
from .progress import NO_PROGRESS, Progress
from .rate_control import budget_bytes, search_quality
from .resize import downsample
from .weights import load_named, parse_weights, serialize, sha256_hex


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
        """Frames per GOP of the sequences the model was trained on (``config.gop_size``). ``encode``
        without ``gop_size`` codes longer GOPs: :func:`progvc.options.default_gop_size`."""
        return self.config.gop_size

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, video: Any, n_scales: int | None = None, *, bpp: float | None = None,
               **options: Any) -> bytes:
        """Encode ``video`` (path or (T,H,W,3) uint8 array) to a stream of ``n_scales`` scales.

        ``quality`` (0..100, default ``DEFAULT_QUALITY``) sets the rate-distortion trade-off of the
        token choice; ``preset`` ("fast", "medium", "slow") the encoder's effort. ``bpp`` instead of
        ``n_scales``/``quality``: one quality for the whole stream is searched so that the stream
        fills the budget without exceeding it, and scales are dropped only when quality 0 is still
        too dear. Other options: gop_size (frames per GOP; default
        :func:`progvc.options.default_gop_size`: 32 up to 854x480, 16 at 720p, 8 at 1080p), fps, size
        (W,H) for raw .yuv, seed / temperature / top_k / top_p (the decoder's sampling defaults, stored
        in the stream), temporal (False codes every frame without temporal context), skip_block (the
        side of the blocks an inter frame may copy from the previous frame, :mod:`progvc.skip`; 0 turns
        block skip off), refine (overrides the preset's refinement steps), prefix_refine (overrides the
        preset's steps of prefix-aware refinement: the coarse scales are chosen for the pictures of
        truncated streams too, :func:`progvc.scales.prefix_terms`), intra_trials (overrides the preset's
        choice of scoring every block of a later frame in intra mode too, :mod:`progvc.modes`),
        inter_lambda_scale (the lambda of a GOP's later frames over its first frame's,
        ``DEFAULT_INTER_LAMBDA_SCALE``; 1 codes every frame at one lambda), coarse_lambda_scale (the
        further multiple of lambda for every scale but the finest: a pair, for a GOP's first frame
        and its later frames, or one number for both; default, per GOP:
        :func:`progvc.options.default_coarse_lambda_scale`, 1.5 and 3 in GOPs of up to 8 frames, 1
        in longer ones; 1 codes every scale of a frame at one lambda), resize
        (1, 2, 3 or 4: code the frames at that fraction of their width and height, and let the decoder
        scale them back up, :mod:`progvc.resize`; pays at low rates; None, the default, is 1, but with
        ``bpp`` the size of ``AUTO_RESIZE`` whose stream decodes closer to the video), progress, limits
        (a :class:`~progvc.limits.Limits`).
        Reading options (passed to :func:`progvc.video_io.open_video`; a path is read one GOP at a
        time): ``max_frames`` (code only the first N frames), ``max_side`` (shrink by a whole factor
        until the long side fits), ``downscale`` (a whole factor), ``pix_fmt_in`` (raw .yuv layout).
        """
        return self.encode_with_stats(video, n_scales, bpp=bpp, **options).bitstream

    def encode_with_stats(self, video: Any, n_scales: int | None = None, *, quality: float | None = None,
                          preset: str = DEFAULT_PRESET, refine: int | None = None,
                          prefix_refine: int | None = None, bpp: float | None = None,
                          gop_size: int | None = None, fps: float | Fraction | None = None,
                          size: tuple[int, int] | None = None, seed: int = 0,
                          temperature: float = DEFAULT_SAMPLING.temperature, top_k: int = DEFAULT_SAMPLING.top_k,
                          top_p: float = DEFAULT_SAMPLING.top_p, temporal: bool = True,
                          skip_block: int = DEFAULT_SKIP_BLOCK, intra_trials: bool | None = None,
                          inter_lambda_scale: float = DEFAULT_INTER_LAMBDA_SCALE,
                          coarse_lambda_scale: float | tuple[float, float] | None = None,
                          resize: int | None = None,
                          progress: bool = False,
                          max_frames: int | None = None, max_side: int | None = None,
                          downscale: int = 1, pix_fmt_in: str = "yuv420p", limits: Limits | None = None
                          ) -> EncodeResult:
        """``encode`` that also reports the model's estimated bits and the time taken.

        A path is read one GOP at a time, so memory does not grow with the video's length (with
        ``bpp`` the GOPs' latents are kept for the quality search: one (C,h,w) float32 latent per
        frame); frames above ``limits.max_frame_pixels`` raise LimitError before any model work.
        ``resize=None`` is 1, except with ``bpp``: then the video is coded to the budget at each size
        of ``AUTO_RESIZE`` and the stream whose decode is closer to the source is kept
        (:meth:`_encode_at_best_size`).
        """
        from .video_io import count_frames, open_video

        if resize is None and bpp is not None:
            options = {name: value for name, value in locals().items()
                       if name not in ("self", "video", "resize", "count_frames", "open_video")}
            return self._encode_at_best_size(video, options)
        resize = 1 if resize is None else resize

        if bpp is not None and (n_scales is not None or quality is not None):
            raise ConfigError("give bpp, or n_scales and/or quality, not both: bpp searches the quality itself")
        start = time.perf_counter()
        n = self._check_scales(n_scales)
        lam = rd_lambda(DEFAULT_QUALITY if quality is None else quality)
        effort = get_preset(preset)
        refine = self._check_refine(effort.refine if refine is None else refine)
        prefix_refine = self._check_refine(effort.prefix_refine if prefix_refine is None else prefix_refine,
                                           "prefix_refine")
        if intra_trials is None:
            intra_trials = effort.intra_trials
        elif not isinstance(intra_trials, bool):
            raise ConfigError(f"intra_trials must be True, False or None (the preset's), got {intra_trials!r}")
        inter_lambda_scale = check_lambda_scale("inter_lambda_scale", inter_lambda_scale)
        if coarse_lambda_scale is not None:
            coarse_lambda_scale = check_coarse_lambda_scale(coarse_lambda_scale)
        if gop_size is not None:
            _check_int("gop_size", gop_size, 1, bs.MAX_GOP)
        _check_int("top_k", top_k, 0, (1 << 32) - 1)
        SamplingOptions(temperature, top_k, top_p)
        seed = check_seed(seed)
        _check_one_of("skip_block", skip_block, bs.SKIP_BLOCKS, "0: no block skip")
        skip_block = skip_block if temporal else 0
        _check_one_of("resize", resize, bs.RESIZE_FACTORS, "1: code the frames at their own size")
        if bpp is not None and (isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not 0 < bpp < 1e6):
            raise ConfigError(f"bpp must be a positive number of bits per pixel, got {bpp!r}")
        limits = as_limits(limits)
        clip = open_video(video, size=size, fps=fps, max_frames=max_frames, max_side=max_side, downscale=downscale,
                          pix_fmt_in=pix_fmt_in)
        frames, (height, width) = _peek_size(clip.frames)
        limits.check_frame(width, height, "the video")
        coded_w, coded_h = bs.coded_size(width, height, resize)
        gop = default_gop_size(coded_w, coded_h) if gop_size is None else gop_size
        known = len(clip.frames) if isinstance(clip.frames, np.ndarray) else None  # a file: read as it goes
        largest = gop if known is None else min(gop, known)  # a short clip is one short GOP
        limits.check_memory(estimate(self.config, coded_w, coded_h, largest, n, temporal=temporal, encode=True,
                                     refine=refine > 0 or prefix_refine > 0, resize=resize), "encoding")
        grids = self.tokenizer.grids(coded_h, coded_w)
        if known is None and progress:  # the bar's total: count the file's frames (decoding is cheap beside coding)
            known = count_frames(video, size=size, max_frames=max_frames, pix_fmt_in=pix_fmt_in)
        steps, n_gops = (None, None) if known is None else (known * n, -(-known // gop))
        encoder = GopEncoder(self.tokenizer, self.context, grids, temporal=temporal, skip_block=skip_block,
                             modes=temporal, intra_trials=intra_trials, inter_lambda_scale=inter_lambda_scale,
                             coarse_lambda_scale=coarse_lambda_scale)
        n_frames, coded, kept = 0, [], []
        with coding_mode(), Progress(progress, "encode", steps, n_gops) as bar:
            for g, gop_frames in enumerate(self._gops(frames, gop)):
                bar.gop(g, "tokenizing")
                f = encoder.latent(downsample(gop_frames, resize), refine, prefix_refine)
                n_frames += len(gop_frames)
                if bpp is None:
                    coded.append(encoder.code(f, lam, n, bar))
                else:
                    kept.append(f)  # reused by every probe of the quality search
            header = bs.StreamHeader(self.config.name, self.weights_sha256, width, height, n_frames,
                                     Fraction(clip.fps).limit_denominator(1 << 20), gop, tuple(grids), n, seed,
                                     temperature, top_k, top_p, temporal, skip_block, modes=temporal,
                                     resize=resize, portable=self.context.portable)
            if bpp is not None:
                coded = search_quality(lambda lam: [encoder.code(f, lam, n) for f in kept], header,
                                       budget_bytes(bpp, header))
        header = replace(header, coded_scales=max(len(c.chunks) for c in coded))
        data = bs.pack(bs.Stream(header, tuple(c.chunks for c in coded), rd_lambdas=tuple(c.rd_lambda for c in coded)))
        if bpp is not None and len(data) > budget_bytes(bpp, header):  # quality 0 is too dear: drop scales
            try:
                data = bs.truncate(data, bpp=bpp)
            except ConfigError:
                least = 8 * len(bs.truncate(data, n_scales=1)) / (n_frames * width * height)
                raise ConfigError(f"bpp={bpp:g} is below the smallest stream this video makes, {least:.3g} bpp "
                                  "(the header and the first scale of every GOP, at quality 0); give "
                                  f"bpp={math.ceil(least * 1000) / 1000:g} or more") from None
            coded = [EncodedGop(c.chunks[:len(k)], c.bits[:, :len(k)], c.rd_lambda)
                     for c, k in zip(coded, bs.unpack(data).gops, strict=True)]
        return EncodeResult.of(data, coded, header, time.perf_counter() - start)

    def _encode_at_best_size(self, video: Any, options: dict[str, Any]) -> EncodeResult:
        """``encode_with_stats(video, **options)`` at each size of ``AUTO_RESIZE``, every one filling
        the bpp budget; the stream kept is the one whose decode has the least squared error against
        the source (the highest PSNR; the first size on a tie). The source is read once more and
        compared GOP by GOP with every candidate's decode of that GOP."""
        from .video_io import batches, open_video

        start = time.perf_counter()
        results = [self.encode_with_stats(video, resize=factor, **options) for factor in AUTO_RESIZE]
        clip = open_video(video, size=options["size"], fps=options["fps"], max_frames=options["max_frames"],
                          max_side=options["max_side"], downscale=options["downscale"],
                          pix_fmt_in=options["pix_fmt_in"])
        decodes = [self.iter_decode(r.bitstream, limits=options["limits"]) for r in results]
        errors = [0] * len(results)
        for source, *decoded in zip(batches(clip.frames, decodes[0].header.gop_size), *decodes, strict=True):
            for i, frames in enumerate(decoded):
                errors[i] += sum(int(np.square(src.astype(np.int32) - out).sum())
                                 for src, out in zip(source, frames, strict=True))
        best = results[errors.index(min(errors))]
        return replace(best, seconds=time.perf_counter() - start)

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, bitstream: bytes, n_scales: int | None = None, fill: str | None = None,
               seed: int | None = None, **options: Any) -> np.ndarray:
        """Decode to frames (T,H,W,3) uint8: :meth:`iter_decode` gathered into one array.

        Same arguments as :meth:`iter_decode` (``limits`` among them). The array is allocated
        once, before the first GOP is decoded; for videos too long to hold, use ``iter_decode``.
        """
        gops = self.iter_decode(bitstream, n_scales, fill, seed, **options)
        need = self._gop_memory(gops.header, gops.scales, gops.fill, output_frames=gops.n_frames)  # + the array below
        as_limits(options.get("limits")).check_memory(need, "decoding into one array")
        out = _frames_buffer(gops.header, gops.n_frames)
        done = 0
        for frames in gops:
            out[done:done + len(frames)] = frames
            done += len(frames)
        return out

    def iter_decode(self, bitstream: bytes, n_scales: int | None = None, fill: str | None = None,
                    seed: int | None = None, *, temperature: float | None = None, top_k: int | None = None,
                    top_p: float | None = None, partial: bool = False, progress: bool = False,
                    limits: Limits | None = None) -> DecodedGops:
        """Decode GOP by GOP: an iterator of (T_g,H,W,3) uint8 arrays, one per GOP, in order.

        Scales 1..n are range-decoded (n = ``n_scales`` or every coded scale); ``fill`` says how
        the remaining scales are made (:mod:`progvc.fill`: "sample", the default, the sent scales'
        picture plus the finest band of a draw, with ``seed`` (default: the stream's) and the
        stream's temperature / top-k / top-p unless overridden; "none", the sent scales only, which
        skips the context model on the scales not sent; "mean", their expected embedding).
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
        opts = FillOptions.resolve(h, fill, seed, temperature, top_k, top_p)
        scales = scales_run(opts.mode, min(n_req, h.coded_scales), h.n_scales)
        limits.check_memory(self._gop_memory(h, scales, opts.mode), "decoding")
        stream = bs.unpack(bitstream, partial=partial)
        if not stream.gops:
            raise BitstreamError("the stream holds no complete chunk to decode; wait for more bytes")
        n_frames = sum(h.gop_frames(g) for g in range(len(stream.gops)))
        return DecodedGops(h, n_frames, self._decoded_gops(stream, n_req, opts, progress), scales, opts.mode)

    def _decoded_gops(self, stream: bs.Stream, n_req: int, opts: FillOptions, progress: bool
                      ) -> Iterator[np.ndarray]:
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
                    decoder = self.gop_decoder(h, g, stream.rd_lambda(g), opts, bar)
                    for chunk in chunks[:n_req]:
                        decoder.add(chunk)
                    frames = decoder.frames()
                yield frames

    def gop_decoder(self, header: bs.StreamHeader, gop: int, rd_lambda: float, fill: FillOptions,
                    bar: Progress = NO_PROGRESS) -> GopDecoder:
        """A :class:`~progvc.gop_coding.GopDecoder` for GOP ``gop`` of a stream with this header."""
        return GopDecoder(self.tokenizer, self.context, header, gop, rd_lambda, fill, bar)

    # -- token level ---------------------------------------------------------------------------
    def tokenize(self, video: Any, *, gop_size: int | None = None, quality: float | None = None,
                 preset: str = DEFAULT_PRESET, refine: int | None = None, temporal: bool = True,
                 **read_options: Any) -> list[list[torch.Tensor]]:
        """The tokens ``encode`` sends for a video (same options), per GOP: ``[gop][k]`` is
        (T_gop, h_k, w_k) int64 on the CPU."""
        data = self.encode(video, gop_size=gop_size, quality=quality, preset=preset, refine=refine,
                           temporal=temporal, **read_options)
        return self.decode_tokens(data)

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
        n = h.coded_scales if n_scales is None else self._check_scales(n_scales)
        out = []
        with coding_mode():
            for g, chunks in enumerate(stream.gops):
                with _allocation_errors(h, h.gop_frames(g)):
                    decoder = self.gop_decoder(h, g, stream.rd_lambda(g), FillOptions("none"))
                    for chunk in chunks[:n]:
                        decoder.add(chunk)
                out.append([r.cpu() for r in decoder.token_maps()])
        return out

    # -- checks --------------------------------------------------------------------------------
    def _gop_memory(self, h: bs.StreamHeader, scales: int, fill: str, output_frames: int = 0,
                    previews: bool = False) -> MemoryEstimate:
        """Estimated peak bytes to decode one GOP of ``h`` through ``scales`` scales in fill mode
        ``fill`` (progvc.memory); ``previews``: frames are also made before the GOP's last chunk (the
        streaming ``Decoder``)."""
        return decode_estimate(self.config, h, scales, output_frames, previews, fill)

    def _check_scales(self, n_scales: int | None) -> int:
        return _check_int("n_scales", self.n_scales if n_scales is None else n_scales, 1, self.n_scales)

    @staticmethod
    def _check_refine(refine: int, name: str = "refine") -> int:
        return _check_int(name, refine, 0, MAX_REFINE_STEPS)

    def _check_stream(self, h: bs.StreamHeader) -> None:
        if h.model_name != self.config.name or h.weights_sha256 != self.weights_sha256[:len(h.weights_sha256)]:
            raise BitstreamError(f"stream was made by model {h.model_name!r} (weights "
                                 f"{h.weights_sha256.hex()[:12]}), but this codec is {self.config.name!r} "
                                 f"(weights {self.weights_sha256.hex()[:12]}); decode it with "
                                 "Codec.from_pretrained of that model")
        if list(h.grids) != self.tokenizer.grids(*reversed(h.coded_size)) or h.n_scales != self.n_scales:
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


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer option in lo..hi (bools and floats refused), else ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_one_of(name: str, value: Any, choices: tuple[int, ...], hint: str) -> None:
    """An option that must be one of ``choices`` (bools refused), else ConfigError naming it."""
    if isinstance(value, bool) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))} ({hint}), got {value!r}")


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
