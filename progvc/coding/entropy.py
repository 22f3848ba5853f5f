"""Entropy coding with constriction's range coder: the only module that imports constriction.

Probabilities reach the coder through a deterministic quantisation (:func:`probability_table`):
float32 logits -> float64, divided by the chunk's temperature (:mod:`progvc.coding.temperature`) ->
softmax -> integer counts ``floor(p * (2**24 - V)) + 1``. The counts are
what encoder and decoder must agree on bit for bit; every symbol keeps a non-zero count, so any
token can be coded, at a cost of at most ``V / 2**24`` of the probability mass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..runtime.errors import BitstreamError

PROB_BITS = 24


def _softmax64(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """(n,V) float tensor -> (n,V) float64 probabilities of ``logits / temperature``, on the host."""
    z = logits.detach().to(device="cpu", dtype=torch.float32).numpy().astype(np.float64)
    if temperature != 1.0:
        z /= temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def probability_table(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Quantised probability table: logits (n,V) -> int64 counts (n,V), each >= 1, rows sum <= 2**24,
    of the softmax of ``logits / temperature``."""
    p = _softmax64(logits, temperature)
    return np.floor(p * float((1 << PROB_BITS) - p.shape[1])).astype(np.int64) + 1


def cross_entropy_bits(logits: torch.Tensor, tokens: np.ndarray, temperatures: Sequence[float] = (1.0,)
                       ) -> np.ndarray:
    """The cost of ``tokens`` (n,) in bits, -sum log2 softmax(logits / tau)[token], for each tau of
    ``temperatures``: float64 (len(temperatures),), unquantised (what the chunk temperature is
    chosen by, :mod:`progvc.coding.temperature`)."""
    z = logits.detach().to(device="cpu", dtype=torch.float64)
    picked = z[torch.arange(len(tokens)), torch.as_tensor(tokens, dtype=torch.long)]
    return np.array([float((torch.logsumexp(z / tau, dim=1) - picked / tau).sum()) / math.log(2)
                     for tau in temperatures])


def _model_and_probs(table: np.ndarray):
    import constriction

    probs = table / table.sum(axis=1, keepdims=True, dtype=np.float64)
    return constriction.stream.model.Categorical(perfect=False), probs


class ChunkEncoder:
    """Collects (tokens, table) pairs of one chunk in coding order; ``finish`` returns the payload."""

    def __init__(self) -> None:
        import constriction

        self._coder = constriction.stream.queue.RangeEncoder()

    def add(self, tokens: np.ndarray, table: np.ndarray) -> None:
        """tokens (n,) ints in [0,V), table (n,V) from :func:`probability_table`."""
        model, probs = _model_and_probs(table)
        self._coder.encode(np.ascontiguousarray(tokens, dtype=np.int32), model, probs)

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class ChunkDecoder:
    """Decodes one chunk's tokens table by table, in the order they were added."""

    def __init__(self, payload: bytes) -> None:
        import constriction

        if len(payload) % 4:
            raise BitstreamError("chunk payload is not a whole number of 32-bit words; the stream is corrupt")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)

    def take(self, table: np.ndarray) -> np.ndarray:
        """Decode as many tokens as ``table`` (n,V) has rows -> int64 (n,)."""
        model, probs = _model_and_probs(table)
        try:
            return np.asarray(self._coder.decode(model, probs), dtype=np.int64)
        except Exception as exc:  # constriction raises on streams that cannot be valid
            raise BitstreamError(f"range decoder failed ({exc}); the stream is corrupt or was made "
                                 "on another kind of device") from exc
