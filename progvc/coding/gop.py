"""One GOP to chunks and back: the encoder and decoder that ``Codec`` and ``Decoder`` share.

::

    GopEncoder:  frames ─► latent (g_a, optional refinement) ─► GopState.run(TokenChooser(lambda))
                            ─► one range-coded chunk per scale (+ CRC of its tokens): per frame,
                               the block-skip flags (frames after the first, progvc.coding.skip), then
                               the tokens of the blocks not skipped
    GopDecoder:  chunk k ─► GopState.run(scale k, range-decode) ─► CRC check      (chunks arrive one by one)
                 frames() ─► fill the scales not sent (progvc.coding.fill) ─► g_s ─► deblock ─► (T,H,W,3) uint8
                            (deblock: header flag, every scale decoded; progvc.video.deblock)

``Codec.decode`` feeds a GOP's chunks at once; the streaming ``Decoder`` feeds them as their bytes
arrive and asks for frames in between (``final=False`` fills a fork of the state, so later chunks
continue from the coded scales only). Both therefore decode every fill mode identically.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..models.context import ContextModel
from ..models.quantizer import Grid
from ..models.tokenizer import Tokenizer
from ..runtime.errors import BitstreamError
from ..runtime.progress import NO_PROGRESS, Progress
from ..stream import format as bs
from ..stream.scales import missing_octaves, prefix_terms
from ..video.deblock import deblock
from ..video.resize import upsample
from .context_modes import ModeModel
from .entropy import ChunkDecoder, probability_table
from .fill import FillOptions, add_detail, fill_pick
from .options import default_coarse_lambda_scale
from .rd_choice import Choice, TokenChooser
from .skip import FlagModel, layout
from .state import GopState, Pick, RowLogits, logit_rows
from .temperature import TableMaker, TemperedChunkEncoder


def _coded_rows(logits: torch.Tensor | RowLogits, coded: np.ndarray | None
                ) -> Iterator[tuple[slice | np.ndarray, torch.Tensor]]:
    """(token indices, their logits) slice by slice; only the rows ``coded`` (sorted) if given."""
    for rows, part in logit_rows(logits):
        if coded is None:
            yield rows, part
            continue
        picked = coded[(coded >= rows.start) & (coded < rows.stop)]
        if len(picked):
            yield picked, part[torch.as_tensor(picked - rows.start)]


def range_encode(coder: TemperedChunkEncoder, tokens: np.ndarray, logits: torch.Tensor | RowLogits,
                 coded: np.ndarray | None = None) -> None:
    """Code tokens (n,) under logits (n, V), only the rows ``coded`` (sorted indices; None: all),
    a slice of rows at a time (the same bytes as all at once), at the chunk's temperature."""
    for rows, part in _coded_rows(logits, coded):
        coder.add_logits(tokens[rows], part)


def range_decode(decoder: ChunkDecoder, logits: torch.Tensor | RowLogits, coded: np.ndarray | None = None,
                 temperature: int = bs.NEUTRAL_TEMPERATURE, table: TableMaker | None = None) -> np.ndarray:
    """Tokens decoded under ``logits`` (n, V) at the chunk's temperature index for the rows ``coded``
    (sorted indices; None: all n), a slice of rows at a time: int64 (len(coded),). ``table``: a
    portable model's tables (None: the float path's)."""
    parts = [decoder.take(probability_table(part, bs.TEMPERATURES[temperature]) if table is None
                          else table(part, temperature)) for _, part in _coded_rows(logits, coded)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def write_choice(coder: TemperedChunkEncoder, choice: Choice, logits: RowLogits) -> None:
    """Code one (t, k) into its chunk: the mode flag if any, the skip flags if any, then the tokens
    not copied (under ``logits``, those of the chosen mode)."""
    if choice.intra is not None:
        coder.add(np.array([int(choice.intra)]), choice.mode_table)
    if choice.flags is not None:
        coder.add(choice.flags.astype(np.int64), choice.flag_tables)
    range_encode(coder, choice.tokens, logits, choice.coded)


def read_choice(decoder: ChunkDecoder, logits: RowLogits, prev: torch.Tensor | None, flag_model: FlagModel,
                skip_block: int, grid: Grid, temperature: int = bs.NEUTRAL_TEMPERATURE,
                table: TableMaker | None = None) -> np.ndarray:
    """The inverse of :func:`write_choice`: the (n,) tokens of one (t, k), ``prev`` the previous
    frame's tokens at that scale (None for a GOP's first frame or a stream without block skip),
    ``temperature`` the chunk's index, ``table`` as for :func:`range_decode`."""
    if prev is None or not skip_block:
        return range_decode(decoder, logits, temperature=temperature, table=table)
    lay = layout(*grid, skip_block)
    copied = flag_model.read(decoder, lay)[lay.block]
    tokens = prev.reshape(-1).cpu().numpy().copy()
    coded = np.flatnonzero(~copied)
    tokens[coded] = range_decode(decoder, logits, coded, temperature, table)
    return tokens


def tokens_crc(maps: list[torch.Tensor]) -> int:
    """CRC32 of a chunk's tokens (frame after frame, row-major) as little-endian uint16."""
    crc = 0
    for r in maps:
        crc = zlib.crc32(r.to("cpu").numpy().astype("<u2").tobytes(), crc)
    return crc


@dataclass(frozen=True)
class EncodedGop:
    """A GOP's chunks (coarse first) and the model's estimate of their cost: ``bits[t, k]`` is
    -sum log2 p of the tokens of frame t at scale k."""

    chunks: tuple[bs.Chunk, ...]
    bits: np.ndarray
    rd_lambda: float


@dataclass(frozen=True)
class GopLatent:
    """What a GOP's tokens are chosen to code: ``fine`` (T,C,h,w) at every scale from ``split`` on,
    ``coarse`` (T,C,h,w, refined for truncated pictures) below it; no ``coarse``: ``fine`` everywhere."""

    fine: torch.Tensor
    coarse: torch.Tensor | None = None
    split: int = 0

    @property
    def frames(self) -> int:
        return self.fine.shape[0]


class GopEncoder:
    """Encodes the GOPs of one frame size: ``latent`` once, then ``code`` at any lambda.

    ``skip_block``: the block-skip side (:mod:`progvc.coding.skip`, 0: none); ``modes``: code context-mode
    flags (:mod:`progvc.coding.context_modes`), trying intra mode for every block if ``intra_trials`` (else every
    block keeps temporal context). ``coarse_lambda_scale`` None: each GOP's by its length
    (:func:`progvc.coding.options.default_coarse_lambda_scale`)."""

    def __init__(self, tokenizer: Tokenizer, context: ContextModel, grids: list[Grid], *, temporal: bool = True,
                 skip_block: int = 0, modes: bool = False, intra_trials: bool = True,
                 inter_lambda_scale: float = 1.0, coarse_lambda_scale: tuple[float, float] | None = (1.0, 1.0)
                 ) -> None:
        self.tok, self.ctx, self.grids, self.temporal = tokenizer, context, grids, temporal
        self.skip_block, self.modes = skip_block, modes and temporal
        self.intra_trials, self.inter_lambda_scale = intra_trials, inter_lambda_scale
        self.coarse_lambda_scale = coarse_lambda_scale

    def latent(self, frames: torch.Tensor, refine: int, prefix_refine: int = 0) -> GopLatent:
        """uint8 (T,H,W,3) -> what to quantise: the latent refined by ``refine`` steps, and if
        ``prefix_refine`` > 0, that latent refined that many more steps for the pictures of
        truncated streams too (:func:`progvc.stream.scales.prefix_terms`), which the coarse scales code."""
        f = self.tok.encode_latent(frames, refine)
        if prefix_refine <= 0:
            return GopLatent(f)
        prefixes, split = prefix_terms(len(self.grids))
        return GopLatent(f, self.tok.refined(frames, f, prefix_refine, prefixes), split)

    def choose_tokens(self, f: GopLatent, lam: float) -> list[torch.Tensor]:
        """The tokens ``code`` would send for latent f at every scale, without range coding
        (training the context model on what the encoder sends): K maps (T,h_k,w_k) int64."""
        state = GopState(self.ctx, self.tok.vq, self.grids, f.frames, temporal=self.temporal, lam=lam)
        state.run(range(len(self.grids)), self._pick(state, self._chooser(state, f, lam)))
        return state.token_maps()

    def code(self, f: GopLatent, lam: float, n_scales: int, bar: Progress = NO_PROGRESS) -> EncodedGop:
        """Choose the tokens of the first ``n_scales`` scales at multiplier ``lam`` and range-code them
        (``bar`` advances once per (frame, scale))."""
        state = GopState(self.ctx, self.tok.vq, self.grids, f.frames, temporal=self.temporal, lam=lam)
        chooser = self._chooser(state, f, lam)
        table = self.ctx.table if self.ctx.portable else None
        coders = [TemperedChunkEncoder(table=table) for _ in range(n_scales)]
        state.run(range(n_scales), bar.counting(self._pick(state, chooser, coders)))
        chunks = []
        for k, coder in enumerate(coders):
            payload, temperature = coder.finish()
            chunks.append(bs.Chunk(tokens_crc(state.tokens[k]), payload, temperature=temperature))
        return EncodedGop(tuple(chunks), chooser.bits[:, :n_scales], lam)

    def _chooser(self, state: GopState, f: GopLatent, lam: float) -> TokenChooser:
        return TokenChooser(self.tok.vq, self.grids, f.fine, lam, state.f_hat, state.tokens, self.skip_block,
                            state.intra if self.modes else None, self.inter_lambda_scale, f.coarse, f.split,
                            self.coarse_lambda_scale or default_coarse_lambda_scale(f.frames))

    def _pick(self, state: GopState, chooser: TokenChooser, coders: list[TemperedChunkEncoder] | None = None
              ) -> Pick:
        """The encoder's pick: each block's choice (its mode tried both ways where the stream codes
        one and ``intra_trials``), written to chunk k of ``coders`` if given."""
        trials = self.intra_trials

        def pick(t: int, k: int, logits: RowLogits) -> np.ndarray:
            intra = state.logits(t, k, intra=True) if trials and chooser.codes_mode(t) else None
            choice = chooser.choose(t, k, logits, intra)
            if choice.intra:
                state.use(intra)
                logits = intra
            if coders is not None:
                write_choice(coders[k], choice, logits)
            return choice.tokens
        return pick


class GopDecoder:
    """Decodes GOP ``gop`` of a stream: ``add`` its chunks in order, then ``frames`` (``bar``
    advances once per (frame, scale) decoded or filled)."""

    def __init__(self, tokenizer: Tokenizer, context: ContextModel, header: bs.StreamHeader, gop: int,
                 rd_lambda: float, fill: FillOptions, bar: Progress = NO_PROGRESS, deblock: bool = True) -> None:
        self.tok, self.header, self.gop, self.fill, self.bar = tokenizer, header, gop, fill, bar
        self.deblock = deblock
        self.state = GopState(context, tokenizer.vq, list(header.grids), header.gop_frames(gop),
                              temporal=header.temporal, lam=rd_lambda)
        self.coded = 0

    def add(self, chunk: bs.Chunk) -> None:
        """Range-decode the next scale from ``chunk``; BitstreamError if its tokens fail their CRC."""
        k, decoder, flag_model, mode_model = self.coded, ChunkDecoder(chunk.payload), FlagModel(), ModeModel()
        state, skip, grid, modes = self.state, self.header.skip_block, self.header.grids[k], self.header.modes
        tokens, temperature = state.tokens[k], chunk.temperature
        table = state.ctx.table if state.portable else None

        def pick(t: int, k: int, logits: RowLogits) -> np.ndarray:
            if modes and t > 0 and mode_model.read(decoder, ModeModel.context(t, state.intra[k])):
                logits = state.logits(t, k, intra=True)
                state.use(logits)
            return read_choice(decoder, logits, tokens[t - 1] if t > 0 else None, flag_model, skip, grid,
                               temperature, table)

        self.state.run(range(k, k + 1), self.bar.counting(pick))
        if tokens_crc(self.state.tokens[k]) != chunk.crc_tokens:
            where = ("the stream is corrupt" if self.header.portable else
                     "the stream is corrupt, or was encoded on another kind of device or dtype whose probabilities "
                     "differ (a float model's stream, format 7 or older); decode it where it was encoded, or "
                     "re-encode it with a portable model (format 8), whose streams decode on any machine")
            raise BitstreamError(f"scale {k + 1} of GOP {self.gop + 1} decoded to tokens that fail their checksum: "
                                 + where)
        self.coded += 1

    def frames(self, *, final: bool = True, fill: FillOptions | None = None) -> np.ndarray:
        """(T,H,W,3) uint8 from the scales decoded so far, the rest filled (by ``fill``, default
        the decoder's). ``final=False`` fills a fork of the state, so that more chunks can still
        be added."""
        if self.coded == 0:
            raise BitstreamError(f"GOP {self.gop + 1} has no decoded scale yet")
        h, grids, fill = self.header, list(self.header.grids), fill or self.fill
        state = self.state if final else self.state.fork()
        filled = fill.mode != "none" and self.coded < len(grids)
        sent = None  # "sample" also synthesises the sent scales alone (progvc.coding.fill.add_detail)
        if filled and fill.mode == "sample":
            sent = state.f_hat.clone() if final else self.state.f_hat  # a fork leaves them in self.state
        if filled:
            state.run(range(self.coded, len(grids)), self.bar.counting(fill_pick(state, fill, self.gop)))
        if final:
            state.release()  # the caches are not needed for synthesis (nor kept beside it)
        missing = missing_octaves(grids, self.coded)
        width, height = h.coded_size
        pictures = self.tok.synthesise(state.f_hat, height, width, missing)
        if sent is not None:  # the sent scales' picture plus the draw's finest band
            pictures = add_detail(self.tok.synthesise(sent, height, width, missing), pictures)
        if self.deblock and h.deblock and self.coded == len(grids):  # prefixes: see progvc.video.deblock
            pictures = deblock(pictures, self.tok.cfg.stride)
        return upsample(pictures, h.resize, h.height, h.width).cpu().numpy()

    def token_maps(self) -> list[torch.Tensor]:
        """The decoded tokens, one (T,h_k,w_k) int64 map per decoded scale."""
        return self.state.token_maps()[:self.coded]
