"""Context modes: each block (t, k) of a frame after a GOP's first is coded with temporal context
or intra, whichever the encoder's rate-distortion score prefers, and a flag says which.

::

    temporal:  p(r_{t,k} | frame t's coarser scales, earlier frames)     (the copy gate, the memory)
    intra:     p(r_{t,k} | frame t's coarser scales)                     (as a GOP's first frame)

Why: the context model reads earlier frames through co-located memory and a copy gate that
raise the odds of "what this place had before". Where content moves by a token or more between
frames (fast motion, a pan, a scene cut), that prior points at the wrong codes and costs more
than it saves (on fast-motion clips an inter frame cost more than the same frame coded alone,
nearly all of it at the finest scales). Intra mode is what the model already does for a GOP's first
frame, so no training is needed; the encoder runs both and keeps the cheaper (``progvc.coding.rd_choice``).
It pays on fast motion and cuts and costs next to nothing elsewhere (benchmarks/README.md, "Quality,
presets and inter frames").

The flag of (t, k) opens that block's symbols in chunk k (before its skip flags), coded with
an adaptive binary model (:class:`ModeModel`) whose context is the previous frame's mode at the
same scale. Nothing depends on a finer scale, so truncation stays exact. The stream says it
carries mode flags in header flag bit 3 (format version 4); streams without it code every such
block with temporal context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .adaptive import AdaptiveBit

if TYPE_CHECKING:
    from .entropy import ChunkDecoder


class ModeModel(AdaptiveBit):
    """Adaptive probabilities of one chunk's mode flags (1 = intra). Context: whether the previous
    frame's block at this scale was intra-coded by choice (frame 0, intra by nature, counts as not)."""

    def __init__(self) -> None:
        super().__init__(2)

    @staticmethod
    def context(t: int, intra: list[bool]) -> int:
        """Context of frame t's flag, ``intra[t']`` the modes of frames t' < t at this scale."""
        return int(t >= 2 and intra[t - 1])

    def decide(self, j_temporal: tuple[float, float], j_intra: tuple[float, float] | None, lam: float, ctx: int
               ) -> tuple[bool, np.ndarray, float]:
        """The encoder's flag: the cheaper of the two modes' ``(J, bits)`` (None: intra not tried),
        each plus lambda times its flag's bits, ties broken by bits, then to temporal. Returns the
        flag, the (1, 2) table it is coded with and its bits; updates the model as the decoder will."""
        table, cost = self.table(ctx), self.cost(ctx)
        keep = (j_temporal[0] + lam * cost[0], j_temporal[1] + cost[0])
        intra = j_intra is not None and (j_intra[0] + lam * cost[1], j_intra[1] + cost[1]) < keep
        self.update(ctx, intra)
        return intra, table, float(cost[int(intra)])

    def read(self, decoder: ChunkDecoder, ctx: int) -> bool:
        """The decoder's side of :meth:`decide`."""
        return self.read_bit(decoder, ctx)
