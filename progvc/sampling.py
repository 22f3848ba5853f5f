"""Seeded sampling of the scales that were not sent.

Sampling works on the same float32 logits the coder uses, in float64 on the host with a NumPy
PCG64 generator, so a (stream, seed) pair gives the same frames wherever the logits agree.
Each GOP gets its own generator, ``default_rng([seed, gop_index])``, so GOPs decode independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .entropy import PROB_BITS
from .errors import ConfigError


@dataclass(frozen=True)
class SamplingOptions:
    """temperature > 0; top_k = 0 keeps every token; top_p = 1 disables nucleus filtering."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.temperature <= 100:
            raise ConfigError(f"temperature must be in (0, 100], got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def gop_generator(seed: int, gop: int) -> np.random.Generator:
    return np.random.default_rng([seed, gop])


def sample_tokens(logits: torch.Tensor, opts: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """Draw one token per row. logits (n,V) -> int64 (n,)."""
    z = logits.detach().to(device="cpu", dtype=torch.float32).numpy().astype(np.float64) / opts.temperature
    if 0 < opts.top_k < z.shape[1]:
        kth = np.partition(z, -opts.top_k, axis=1)[:, -opts.top_k, None]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if opts.top_p < 1:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        drop_sorted = np.cumsum(sorted_p, axis=1) - sorted_p >= opts.top_p  # mass before it already enough
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=1)
        p = np.where(drop, 0.0, p)
    counts = np.floor(p * float(1 << PROB_BITS)).astype(np.int64)
    counts[np.arange(len(counts)), p.argmax(axis=1)] += 1  # never an all-zero row
    cum = np.cumsum(counts, axis=1)
    u = np.floor(rng.random(len(counts)) * cum[:, -1]).astype(np.int64)
    return (cum <= u[:, None]).sum(axis=1).astype(np.int64)
