"""Adaptive binary models: the probabilities of the stream's flags, learnt as a chunk is coded.

Block-skip flags (:mod:`progvc.coding.skip`) and context-mode flags (:mod:`progvc.coding.context_modes`) are binary
symbols whose statistics depend on the clip (a static scene skips nearly every block; a moving
one nearly none). Each is coded with counts per context that start at one half each
(Krichevsky-Trofimov) and grow as symbols are coded, so a chunk whose flags are all alike pays
hundredths of a bit per flag. Encoder and decoder update them alike; the probabilities are
integer counts out of ``FLAG_TOTAL``, so both sides compute the same tables on any machine.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .entropy import ChunkDecoder

FLAG_TOTAL = 1 << 16
"""Probabilities are integer counts out of 2^16 (what both sides compute alike)."""
_MAX_COUNT = 1 << 10
"""Counts are halved past this, so the model follows a chunk whose statistics drift."""


class AdaptiveBit:
    """Counts of 0s and 1s per context (``contexts`` of them), in units of 1/2."""

    def __init__(self, contexts: int) -> None:
        self.counts = np.ones((contexts, 2), dtype=np.int64)

    def fork(self) -> AdaptiveBit:
        """A copy that learns on its own (an encoder trying a choice it may not keep)."""
        new = copy.copy(self)
        new.counts = self.counts.copy()
        return new

    def table(self, ctx: int) -> np.ndarray:
        """(1, 2) int64 counts out of ``FLAG_TOTAL`` for 0 and 1 (each at least 1)."""
        c0, c1 = (int(x) for x in self.counts[ctx])
        one = min(max((FLAG_TOTAL * c1 + (c0 + c1) // 2) // (c0 + c1), 1), FLAG_TOTAL - 1)
        return np.array([[FLAG_TOTAL - one, one]], dtype=np.int64)

    def cost(self, ctx: int) -> np.ndarray:
        """(2,) float: the bits a 0 and a 1 would cost in context ``ctx`` now."""
        return -np.log2(self.table(ctx)[0] / FLAG_TOTAL)

    def update(self, ctx: int, bit: bool) -> None:
        self.counts[ctx, int(bit)] += 2
        if self.counts[ctx].sum() > _MAX_COUNT:
            self.counts[ctx] = (self.counts[ctx] + 1) // 2

    def read_bit(self, decoder: ChunkDecoder, ctx: int) -> bool:
        """The decoder's next symbol in context ``ctx`` (the model updated with it)."""
        bit = bool(decoder.take(self.table(ctx))[0])
        self.update(ctx, bit)
        return bit
