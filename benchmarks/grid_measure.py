"""A grid measure: how much a decode's neighbour differences follow the tokenizer's 8-pixel lattice.

A stride-8 synthesis that has learnt one "stamp" per latent cell paints a periodic pattern of
period 8 wherever the latent is smooth (a truncated stream's up-sampled coarse scales are). On the
luma of (T,H,W,3) frames take the absolute differences of horizontal neighbours |Y[y,x+1]-Y[y,x]|
and of vertical ones |Y[y+1,x]-Y[y,x]|; the difference between pixels x and x+1 has phase x mod 8.
Pooling rows and columns, m_p is the mean difference at phase p (p = 0..7), and

    grid = max_p m_p / mean_{q != p*} m_q          (1.0: no phase stands out)

A natural picture scores a little above 1 (noise alone makes one phase the largest); what a
decode adds is ``grid(decode) - grid(source)`` (issue 30: at most +0.03 at every n). Phases are
anchored at the top-left pixel, where the tokenizer's lattice starts (it pads bottom/right).

    python -m benchmarks.grid_measure source.y4m decode.y4m      (prints both and the difference)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from progvc.bench.metrics import rgb_to_y

PERIOD = 8


@dataclass(frozen=True)
class GridScore:
    """``phases``: m_p, mean |neighbour difference| at each phase (8,), rows and columns pooled;
    ``rows`` / ``cols``: the score of vertical / horizontal differences alone; ``score``: pooled."""

    phases: tuple[float, ...]
    rows: float
    cols: float
    score: float


def phase_means(y: np.ndarray, axis: int, period: int = PERIOD) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of |neighbour difference| along ``axis`` of luma y (T,H,W), per phase:
    two (period,) float64 arrays."""
    d = np.abs(np.diff(y.astype(np.float64), axis=axis))  # (T,H-1,W) or (T,H,W-1)
    d = np.moveaxis(d, axis, -1)  # (..., n) with n = size - 1
    n = d.shape[-1]
    per = d.reshape(-1, n).sum(0)  # (n,): summed over frames and the other axis
    sums = np.bincount(np.arange(n) % period, weights=per, minlength=period)
    counts = np.bincount(np.arange(n) % period, minlength=period) * (d.size // max(n, 1))
    return sums, counts.astype(np.float64)


def peak_ratio(means: np.ndarray) -> float:
    """Largest entry over the mean of the others; NaN when the others are all zero (a flat picture)."""
    p = int(np.argmax(means))
    others = np.delete(means, p).mean()
    return float(means[p] / others) if others > 0 else float("nan")


def grid_measure(frames: np.ndarray, period: int = PERIOD) -> GridScore:
    """Grid score of (T,H,W,3) uint8 RGB frames (or (T,H,W) luma); both sides must be > period."""
    y = rgb_to_y(frames) if frames.ndim == 4 else frames.astype(np.float32)
    if min(y.shape[1:]) <= period:
        raise ValueError(f"frames {y.shape[1]}x{y.shape[2]} too small for a period of {period}")
    rs, rc = phase_means(y, 1, period)
    cs, cc = phase_means(y, 2, period)
    pooled = (rs + cs) / np.maximum(rc + cc, 1)
    return GridScore(tuple(float(v) for v in pooled), peak_ratio(rs / np.maximum(rc, 1)),
                     peak_ratio(cs / np.maximum(cc, 1)), peak_ratio(pooled))


def grid_excess(source: np.ndarray, decode: np.ndarray) -> float:
    """``grid(decode) - grid(source)`` for two (T,H,W,3) uint8 sequences of one shape."""
    if source.shape != decode.shape:
        raise ValueError(f"need two arrays of one shape, got {source.shape} and {decode.shape}")
    return grid_measure(decode).score - grid_measure(source).score


def main(argv: list[str] | None = None) -> None:
    from progvc.video.io import read_video

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source")
    p.add_argument("decode")
    p.add_argument("--frames", type=int, default=8)
    a = p.parse_args(argv)
    src = np.asarray(read_video(a.source, max_frames=a.frames).frames)
    dec = np.asarray(read_video(a.decode, max_frames=a.frames).frames)
    s, d = grid_measure(src), grid_measure(dec)
    print(f"source {s.score:.3f}  decode {d.score:.3f}  decode - source {d.score - s.score:+.3f}")


if __name__ == "__main__":
    main()
