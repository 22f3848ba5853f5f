"""Progressive decoding of a stream that arrives piece by piece.

::

    bytes ─► feed() ─► header? ─► GOP index? ─► chunk k of GOP g complete?
                                                   │  GopDecoder.add(chunk k)        (kept between chunks)
                                                   ├─► preview (the last chunk this feed completes):
                                                   │   fill scales k+1..K on a fork, synthesise
                                                   │                        ─► GopUpdate(g, k+1, final=False)
                                                   └─► last chunk: fill in place ─► GopUpdate(g, n, final=True)

A player shows a coarse GOP as soon as its first chunk (scale 1, a few bytes) is in and sharpens
it as the finer chunks arrive. The coded scales of a GOP are range-decoded once, incrementally,
with the same :class:`~progvc.coding.gop.GopDecoder` that ``Codec.decode`` uses; each preview fills
the missing scales on a *fork* of its state (a sample with a fresh ``gop_generator(seed, g)``), so

- the update with ``scales = n`` equals ``codec.decode(data, n_scales=n, fill, seed)`` on that
  GOP, bit for bit (the stream truncated to n scales decodes to the same frames; previews use
  ``preview_fill`` when given), and
- the ``final`` update equals ``codec.decode(data, n_scales, fill, seed)`` on that GOP.

Framing is parsed here incrementally with :mod:`progvc.stream.format`'s own functions
(``header_length``, ``gop_index``, ``chunk_ends``, ``read_gop``), which validate every byte
before it is used, so a corrupt stream raises the same :class:`~progvc.runtime.errors.BitstreamError` as ``decode``.

API: push style (``feed`` / ``close`` return lists of updates) or pull style
(``Decoder.run(pieces)`` yields them).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..coding.gop import GopDecoder
from ..coding.options import FILL_MODES
from ..runtime.determinism import coding_mode
from ..runtime.errors import BitstreamError
from ..stream import format as bs
from .codec import Codec
from .options import DecodeOptions, OneOf


@dataclass(frozen=True)
class GopUpdate:
    """Frames of one GOP after ``scales`` of its chunks were decoded from the bytes received.

    ``frames`` (T,H,W,3) uint8 covers stream frames ``first_frame .. first_frame + T - 1``; the
    scales not received are filled as the decoder's ``fill`` says. ``final`` marks the last update of
    the GOP (every chunk it will use has arrived): it replaces every earlier update of that GOP.
    """

    gop: int
    first_frame: int
    scales: int
    final: bool
    frames: np.ndarray


class Decoder:
    """Decode a progvc stream from pieces of bytes of any size, emitting :class:`GopUpdate` s.

    ``n_scales`` caps the chunks used per GOP (like ``Codec.decode``); ``fill`` makes the scales
    not used ("sample", the default, with ``seed`` (default: the stream's) and the stream's
    temperature / top-k / top-p unless overridden; "mean"; "none"; see :mod:`progvc.coding.fill`), so
    that every update with ``scales=n`` equals ``decode`` at n bit for bit.

    Previews are the updates before a GOP's last chunk. :meth:`feed` emits, per GOP, the update
    of the most scales its bytes complete, never one that a later chunk of the same call already
    supersedes: each preview costs a synthesis, and with a fill a pass of the context model over
    every scale still to come. ``preview_fill`` fills the previews in another mode:
    ``preview_fill="none"`` makes them cheap (the final updates keep ``fill``), and
    ``previews=False`` emits only each GOP's final update.

    ``partial=True`` lets :meth:`close` accept a stream cut short: the GOP in progress then ends
    with a final update made with ``fill`` (equal to ``decode(prefix, partial=True)``).
    ``limits`` (default :class:`~progvc.codec.limits.Limits`) are checked once the header is in: a
    stream that asks for more raises LimitError before any GOP is set up.
    """

    def __init__(self, codec: Codec, *, options: DecodeOptions | None = None, previews: bool = True,
                 preview_fill: str | None = None, **kwargs: Any) -> None:
        self.codec = codec
        self.options = DecodeOptions.build(options, **kwargs)  # bad options fail here, not at the first byte
        if self.options.n_scales is not None:
            codec.check_scales(self.options.n_scales)
        self.options.fill_options(None)
        if preview_fill is not None:
            OneOf(FILL_MODES)("preview_fill", preview_fill)
        self.previews, self.preview_fill, self.partial = previews, preview_fill, self.options.partial
        self.header: bs.StreamHeader | None = None
        self.bytes_received = 0
        self._buf = bytearray()  # bytes received and not dropped yet
        self._pos = 0  # where the current GOP unit starts in _buf (dropped once per feed, not per GOP)
        self._gop = 0  # index of the GOP being received
        self._ends: list[int] | None = None  # where its chunks end from its start, once its index is in
        self._chunks: list[bs.Chunk] = []  # its chunks validated so far
        self._gop_decoder: GopDecoder | None = None
        self._rd_lambda = 0.0
        self._coded = 0  # its scales range-decoded so far
        self._last: GopUpdate | None = None  # latest update of the GOP in progress
        self._closed = False

    # -- public --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once every GOP of the stream has had its final update."""
        return self.header is not None and self._gop == self.header.n_gops

    def feed(self, data: bytes | bytearray | memoryview) -> list[GopUpdate]:
        """Take the next bytes of the stream; return the updates they complete (maybe none)."""
        if self._closed:
            raise BitstreamError("feed() after close(); make a new Decoder for another stream")
        self._buf += data
        self.bytes_received += len(data)
        updates: list[GopUpdate] = []
        if self.header is None and not self._read_header():
            return updates
        while not self.done and self._advance(updates):
            pass
        del self._buf[:self._pos]
        self._pos = 0
        if self.done and self._buf:
            raise BitstreamError(f"corrupt progvc stream: {len(self._buf)} unexpected bytes after the last GOP; "
                                 "re-download or re-encode the file")
        return updates

    def close(self) -> list[GopUpdate]:
        """End of input. Raises BitstreamError if bytes are missing (unless ``partial``)."""
        self._closed = True
        if self.done:
            return []
        where = "its header" if self.header is None else f"GOP {self._gop + 1} of {self.header.n_gops}"
        if not self.partial or self.header is None:
            raise BitstreamError(f"stream ended after {self.bytes_received} bytes, inside {where}; wait for "
                                 "the rest, or decode with partial=True to keep what arrived")
        scales = self._coded
        if scales == 0 or (self._last is not None and self._last.final):
            return []  # nothing of this GOP arrived, or it was final before its unused chunks ended
        last = self._last if self._last is not None and self._last.scales == scales else None
        same = last is not None and self._preview == self._fill  # that preview is the final picture
        frames = last.frames if same else self._frames(final=True)
        return [GopUpdate(self._gop, self._gop * self.header.gop_size, scales, True, frames)]

    def run(self, pieces: Iterable[bytes]) -> Iterator[GopUpdate]:
        """Pull style: feed every piece of ``pieces`` in turn, yielding updates, then close."""
        for piece in pieces:
            yield from self.feed(piece)
        yield from self.close()

    # -- framing -------------------------------------------------------------------------------
    def _read_header(self) -> bool:
        """Parse the header once its bytes are in; False while it is incomplete."""
        size = bs.header_length(self._buf)
        if size is None or len(self._buf) < size:
            return False
        previews = (self.preview_fill,) if self.previews else ()  # None: previews in the fill mode
        let_in = self.codec.admit(bytes(self._buf[:size]), self.options, previews=previews)
        h, self._fill = let_in.header, let_in.fill
        self._preview = replace(self._fill, mode=self.preview_fill or self._fill.mode)
        self.header = h
        del self._buf[:size]
        return True

    def _advance(self, updates: list[GopUpdate]) -> bool:
        """Consume what the buffer completes of the current GOP; True if it finished the GOP."""
        h, start = self.header, self._pos
        assert h is not None
        if self._ends is None:
            index = bs.gop_index(self._buf, h, start)  # validated as soon as its bytes are in
            if index is None:
                return False
            self._rd_lambda, self._ends = index.rd_lambda, bs.chunk_ends(index)
        ends = self._ends
        have = bisect.bisect_right(ends, len(self._buf) - start)  # chunks whose bytes are all in
        if have > len(self._chunks):
            unit = bytes(self._buf[start:start + ends[have - 1]])  # a copy: a view would pin the bytearray
            self._chunks = list(bs.read_gop(unit, h, partial=True)[0])
        n_use = len(ends) if self.options.n_scales is None else min(len(ends), self.options.n_scales)
        reach = min(have, n_use)
        while self._coded < reach:  # only the last scale this call reaches is shown: the others are superseded
            self._decode_next(updates, final=self._coded + 1 == n_use, show=self._coded + 1 == reach)
        if have < len(ends):
            return False
        self._pos += ends[-1]
        self._gop += 1
        self._ends, self._chunks, self._gop_decoder, self._coded, self._last = None, [], None, 0, None
        return True

    # -- decoding ------------------------------------------------------------------------------
    def _decode_next(self, updates: list[GopUpdate], final: bool, show: bool) -> None:
        """Range-decode the next coded scale into the GOP's decoder; emit its update if it is the
        GOP's final one, or a preview (``previews``) that no later chunk of this call supersedes."""
        h = self.header
        assert h is not None
        with coding_mode():
            if self._gop_decoder is None:
                self._gop_decoder = self.codec.gop_decoder(h, self._gop, self._rd_lambda, self._fill,
                                                           deblock=self.options.deblock)
            self._gop_decoder.add(self._chunks[self._coded])
            self._coded += 1
        if final or (self.previews and show):
            update = GopUpdate(self._gop, self._gop * h.gop_size, self._coded, final, self._frames(final))
            self._last = update
            updates.append(update)

    def _frames(self, final: bool) -> np.ndarray:
        """(T,H,W,3) uint8 of the GOP so far, exactly as ``Codec.decode`` makes them in the final
        or the preview fill mode (the missing scales are filled on a fork of the state unless no
        chunk will follow)."""
        assert self._gop_decoder is not None
        with coding_mode():
            return self._gop_decoder.frames(final=final, fill=self._fill if final else self._preview)
