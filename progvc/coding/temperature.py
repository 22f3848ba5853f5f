"""Chunk temperatures: each chunk's tokens are coded under ``softmax(logits / tau)``, with the tau
of :data:`TEMPERATURES` that makes that chunk smallest; the GOP index carries its index (stream
format 7), so the decoder builds the same tables.

Why it pays: the context model is told each GOP's lambda, but the encoder chooses the tokens of a
GOP's later frames and of its coarse scales at multiples of that lambda (``inter_lambda_scale``,
``coarse_lambda_scale``), and a rate-distortion choice favours the model's likeliest codes the
more, the higher lambda is. The tokens it sends are then more predictable than the model's
distribution says, and a sharper one (tau < 1) codes them in fewer bits. On three dev clips (8
frames, GOP 8) coding each chunk at its best tau saved 20-34% of the token bits at quality 30, 2-8%
at quality 45 and at most 2% from quality 60 on; a whole quality-30 stream shrank by 29% on
average over the dev clips (benchmarks/README.md, "Chunk temperatures and a shorter header").

The encoder knows the best tau only once it has chosen the chunk's tokens, but the range coder
needs it for the first symbol, so :class:`TemperedChunkEncoder` keeps the chunk's symbols and the
logits of its tokens until the chunk ends, summing meanwhile each candidate's cost, then codes
them all at the cheapest. Past :data:`BUFFER_ROWS` rows of logits it decides on the rows it has
seen and codes the rest as they come, so its memory is bounded at any frame size
(:data:`progvc.runtime.memory.TEMPERATURE_BUFFER_ROWS`, counted in the encoder's memory estimate).

Only the coded tokens use the chunk's tau: skip and mode flags keep their adaptive tables, and the
fill modes draw and average at the model's own distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..runtime.memory import TEMPERATURE_BUFFER_ROWS as BUFFER_ROWS
from ..stream.format import NEUTRAL_TEMPERATURE as NEUTRAL
from ..stream.format import TEMPERATURES
from .entropy import ChunkEncoder, cross_entropy_bits, probability_table

CANDIDATES = tuple(range(3, 12))
"""The indices the encoder tries (0.4 .. 1.2): on dev clips every chunk's best lay in this range."""


TableMaker = Callable[[torch.Tensor, int], np.ndarray]
"""(logits (n, V), temperature index) -> the range coder's table (n, V): a portable model's own
(``PortableContextModel.table``); None stands for the float path, :func:`coding_table`'s default."""


def coding_table(logits: torch.Tensor, index: int, table: TableMaker | None = None) -> np.ndarray:
    """The table of logits (n, V) at temperature index ``index``: ``table``'s, or the float path's."""
    return probability_table(logits, TEMPERATURES[index]) if table is None else table(logits, index)


class TemperedChunkEncoder:
    """Writes one chunk: :meth:`add` for symbols with a fixed table (flags), :meth:`add_logits` for
    tokens under the context model's logits; :meth:`finish` -> (payload, temperature index).

    Until the temperature is decided, symbols are kept in order with their tables or logits and
    each candidate's exact cost (-sum log2 softmax(logits / tau)[token], float64) is summed."""

    def __init__(self, candidates: tuple[int, ...] | None = None, buffer_rows: int = BUFFER_ROWS,
                 table: TableMaker | None = None) -> None:
        self._coder = ChunkEncoder()
        self._table = table
        self._candidates = CANDIDATES if candidates is None else candidates
        self._taus = [TEMPERATURES[i] for i in self._candidates]
        self._buffer_rows = buffer_rows
        self._pending: list[tuple[np.ndarray, np.ndarray | torch.Tensor]] | None = []
        self._rows = 0
        self._bits = np.zeros(len(self._candidates))
        self.index: int | None = None

    def add(self, symbols: np.ndarray, table: np.ndarray) -> None:
        """Symbols (n,) under a fixed quantised table (n, 2 or V), as :meth:`ChunkEncoder.add`."""
        if self._pending is None:
            self._coder.add(symbols, table)
        else:
            self._pending.append((symbols, table))

    def add_logits(self, tokens: np.ndarray, logits: torch.Tensor) -> None:
        """Tokens (n,) under the model's logits (n, V), to be coded at the chunk's temperature."""
        if self._pending is None:
            self._coder.add(tokens, coding_table(logits, self.index, self._table))  # type: ignore[arg-type]
            return
        self._bits += cross_entropy_bits(logits, tokens, self._taus)
        self._pending.append((tokens, logits.detach()))
        self._rows += len(tokens)
        if self._rows > self._buffer_rows:
            self._decide()

    def _decide(self) -> None:
        """Pick the cheapest candidate (ties: the one nearest tau 1) and code what was kept."""
        bits = np.round(self._bits, 3)
        best = min(range(len(self._candidates)), key=lambda i: (bits[i], abs(self._candidates[i] - NEUTRAL)))
        self.index = self._candidates[best] if self._rows else NEUTRAL
        pending, self._pending = self._pending, None
        for symbols, table in pending or []:
            if isinstance(table, torch.Tensor):
                self.add_logits(symbols, table)
            else:
                self._coder.add(symbols, table)

    def finish(self) -> tuple[bytes, int]:
        """The chunk's payload and the index of the temperature its tokens were coded at."""
        if self._pending is not None:
            self._decide()
        return self._coder.finish(), self.index  # type: ignore[return-value]

