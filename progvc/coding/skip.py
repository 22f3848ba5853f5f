"""Block skip: an inter frame copies blocks of the previous frame's tokens for the price of a flag.

::

    scale k of frame t >= 1, grid (h_k, w_k) cut into B x B blocks (edge blocks smaller):
        flag[b] = 1  ->  every token of block b is the token frame t-1 had there     (nothing else coded)
        flag[b] = 0  ->  the block's tokens are range-coded under the context model, as in frame 0

The flags of (t, k) precede its tokens in chunk k, each coded with an adaptive binary model
(:class:`FlagModel`: counts per context "how many of the left and upper blocks were skipped",
carried across the frames of the chunk), so a scale whose blocks all repeat costs a few
hundredths of a bit per block instead of a fraction of a bit per token. Why this beside the
context model's copy gate: the gate prices a repeated token at -log2 p(repeat) for every token,
and with the shipped model a frame repeated with camera noise still cost about 2.4 bits per
finest-scale token at quality 60; a flag prices a whole block once, from what the frame's other
blocks did (on dev, a repeated noisy frame fell from 0.21 to 0.002 of an intra frame's bits).

The encoder decides per block, in coding order, with the same costs as token choice
(:mod:`progvc.coding.rd_choice`)::

    J_skip = sum_i D_i(prev_i)                      + lambda * -log2 p(flag = 1 | ctx)
    J_code = sum_i min_v [D_i(v) + lambda R_i(v)]   + lambda * -log2 p(flag = 0 | ctx)

Truncation stays exact (DESIGN.md rule 2): scale k of frame t copies scale k of frame t-1,
which every decoder of k or more scales has. The block side is in the stream header
(:attr:`progvc.stream.format.StreamHeader.skip_block`, 0: no flags, version-2 streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from .adaptive import AdaptiveBit

if TYPE_CHECKING:
    from .entropy import ChunkDecoder


@dataclass(frozen=True)
class BlockLayout:
    """Blocks of one scale: ``block[i]`` the block of token i (row-major), ``left``/``up`` each
    block's neighbour (-1 at the border); ``n`` blocks in all."""

    block: np.ndarray
    left: np.ndarray
    up: np.ndarray

    @property
    def n(self) -> int:
        return len(self.left)


@cache
def layout(rows: int, cols: int, side: int) -> BlockLayout:
    """The B x B blocks (B = ``side``) of a rows x cols token grid, row-major."""
    by, bx = -(-rows // side), -(-cols // side)
    r, c = np.divmod(np.arange(rows * cols), cols)
    block = (r // side) * bx + c // side
    ids = np.arange(by * bx)
    left = np.where(ids % bx > 0, ids - 1, -1)
    up = np.where(ids >= bx, ids - bx, -1)
    for a in (block, left, up):
        a.flags.writeable = False
    return BlockLayout(block, left, up)


class FlagModel(AdaptiveBit):
    """Adaptive probabilities of one chunk's skip flags (:class:`~progvc.coding.adaptive.AdaptiveBit`);
    encoder and decoder update it alike. Context of a block: how many of its left and upper
    neighbours (in the same frame) were skipped, 0..2."""

    def __init__(self) -> None:
        super().__init__(3)

    @staticmethod
    def context(flags: np.ndarray, lay: BlockLayout, b: int) -> int:
        return int(lay.left[b] >= 0 and flags[lay.left[b]]) + int(lay.up[b] >= 0 and flags[lay.up[b]])

    def decide(self, j_skip: np.ndarray, j_code: np.ndarray, lam: float, lay: BlockLayout
               ) -> tuple[np.ndarray, np.ndarray, float]:
        """The encoder's flags (n,) bool, block by block in coding order, each the cheaper of
        ``j_skip[b]`` and ``j_code[b]`` (per-block costs, flag excluded) plus lambda times the flag's
        bits under the model as it stands. Returns the flags, the (n, 2) tables they are coded
        with, and their bits. Updates the model as the decoder will."""
        flags = np.zeros(lay.n, dtype=bool)
        tables = np.empty((lay.n, 2), dtype=np.int64)
        bits = 0.0
        for b in range(lay.n):
            ctx = self.context(flags, lay, b)
            tables[b] = self.table(ctx)[0]
            cost = self.cost(ctx)
            flags[b] = j_skip[b] + lam * cost[1] <= j_code[b] + lam * cost[0]  # a tie: the copy is as good
            bits += float(cost[int(flags[b])])
            self.update(ctx, bool(flags[b]))
        return flags, tables, bits

    def read(self, decoder: ChunkDecoder, lay: BlockLayout) -> np.ndarray:
        """The decoder's side of :meth:`decide`: the (n,) bool flags of one (t, k), in order."""
        flags = np.zeros(lay.n, dtype=bool)
        for b in range(lay.n):
            ctx = self.context(flags, lay, b)
            flags[b] = self.read_bit(decoder, ctx)
        return flags
