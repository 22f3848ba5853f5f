"""``DecodedGops``: what :meth:`progvc.Codec.iter_decode` returns, frames one GOP at a time.

::

    gops = codec.iter_decode(data)            # every check done here: header, limits, every CRC
    gops.header, gops.n_frames                # known before any GOP is decoded
    for frames in gops:                       # (T_g, H, W, 3) uint8, GOP after GOP, in order
        player.show(frames)                   # memory: one GOP, whatever the video's length

``np.concatenate(list(codec.iter_decode(data)))`` equals ``codec.decode(data)`` bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..stream.format import StreamHeader


class DecodedGops(Iterator[np.ndarray]):
    """An iterator of per-GOP frames, ``(T_g, H, W, 3)`` uint8 each, with what is known up front:
    the stream's ``header``, ``n_frames``, the frames it yields in all (fewer than
    ``header.n_frames`` for a stream cut short and decoded with ``partial=True``), and ``scales``,
    how many scales each GOP runs through (range-decoded, then filled), and ``fill``, the fill mode.

    One pass only, like any iterator. Each GOP is decoded when it is asked for, so a consumer that
    writes or shows frames as they come holds one GOP at a time.
    """

    def __init__(self, header: StreamHeader, n_frames: int, gops: Iterator[np.ndarray], scales: int,
                 fill: str = "none") -> None:
        self.header, self.n_frames, self.scales, self.fill, self._gops = header, n_frames, scales, fill, gops

    def __iter__(self) -> DecodedGops:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._gops)

    def __repr__(self) -> str:
        h = self.header
        return f"DecodedGops({self.n_frames} frames of {h.width}x{h.height} in GOPs of {h.gop_size})"
