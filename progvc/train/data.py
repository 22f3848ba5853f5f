"""Training data: a cache of downscaled clips, and random GOP windows drawn from it.

::

    clips/*.mp4|.webm|.264|.bit|.yuv …  ──build_cache──►  cache/NAME.npy  (T,h,w,3) uint8, long side ≤ 512
                                                          cache/NAME.json (runs of consecutive frames)
    cache/  ──ClipWindows──►  (G, 3, crop, crop) float in [0, 1], endless, seeded

Decoding real video is slow and its files are small; training wants many random crops. So every
clip is decoded once, downscaled (the 1080p/4K clips are soft at full size, and 512 px keeps crops
natural-looking), and stored as a raw ``.npy`` that training reads through ``np.load(mmap_mode="r")``:
each window touches only the bytes of its own crop, and memory stays small with many workers.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.atomic import atomic_path
from ..runtime.errors import ConfigError, ProgvcError, VideoError

CLIP_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".webm", ".mov", ".avi", ".ivf", ".y4m", ".264", ".h264", ".265", ".hevc", ".bit", ".266", ".yuv"}
)
"""File name endings :func:`build_cache` treats as clips (other files, like README.md, are ignored)."""

_MAX_RUNS = 4  # a long clip contributes at most this many runs of consecutive frames
_PIXELS_PER_BATCH = 24_000_000  # frames resized together: bounds float32 memory (~0.3 GB)


def build_cache(
    clip_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    max_side: int = 512,
    max_frames_per_clip: int = 300,
    exclude: Iterable[str] = (),
) -> list[Path]:
    """Decode every clip in ``clip_dir`` into ``cache_dir/NAME.npy``; returns the cached files.

    Each clip is downscaled (antialiased bilinear) until its long side is at most ``max_side``
    (never upscaled). A clip longer than ``max_frames_per_clip`` keeps up to 4 runs of consecutive
    frames spread evenly over its length, so scene variety grows while motion statistics stay
    those of the real frame rate; ``NAME.json`` records the runs so windows never straddle a gap.
    ``exclude`` holds glob patterns of file names to skip. A clip already cached with the same
    settings is skipped; a clip that cannot be decoded is skipped with a warning. Prints one line
    per clip.
    """
    from ..video.io import MAX_FRAMES  # PyAV: training from a cache needs no video decoder (device_leg)

    clip_dir, cache_dir = Path(clip_dir), Path(cache_dir)
    if not clip_dir.is_dir():
        raise ConfigError(f"clip folder {str(clip_dir)!r} not found")
    if max_side < 1 or not 1 <= max_frames_per_clip <= MAX_FRAMES:
        raise ConfigError(f"need max_side >= 1 and 1 <= max_frames_per_clip <= {MAX_FRAMES}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    settings = {"max_side": max_side, "max_frames_per_clip": max_frames_per_clip}
    patterns = list(exclude)
    cached = []
    for clip in sorted(clip_dir.iterdir()):
        if clip.suffix.lower() not in CLIP_EXTENSIONS or any(fnmatch.fnmatch(clip.name, p) for p in patterns):
            continue
        target, meta_path = cache_dir / f"{clip.name}.npy", cache_dir / f"{clip.name}.json"
        if target.is_file() and _read_meta(meta_path).get("settings") == settings:
            print(f"cached  {clip.name} (already)", flush=True)
            cached.append(target)
            continue
        start = time.perf_counter()
        try:
            frames, meta = _cache_clip(clip, max_side, max_frames_per_clip)
        except ProgvcError as e:
            warnings.warn(f"skipping {clip.name}: {e}", stacklevel=2)
            continue
        _atomic_write(target, lambda f, a=frames: np.save(f, a))
        _atomic_write(meta_path, lambda f, m=meta: f.write(json.dumps({**m, "settings": settings}).encode()))
        t, h, w = frames.shape[:3]
        print(f"cached  {clip.name}: {t} of {meta['source_frames']} frames, {meta['source_size'][0]}x"
              f"{meta['source_size'][1]} -> {w}x{h}, {time.perf_counter() - start:.1f} s", flush=True)
        cached.append(target)
    return cached


def _cache_clip(clip: Path, max_side: int, keep: int) -> tuple[np.ndarray, dict]:
    """Decode ``clip`` twice (count, then keep the chosen runs); returns frames and metadata."""
    from ..video.io import MAX_FRAMES, iter_frames

    n = sum(1 for _ in iter_frames(clip, max_frames=MAX_FRAMES))  # streaming: one frame in memory
    if n == 0:
        raise VideoError("no decodable frames")
    runs = _choose_runs(n, keep)
    wanted = np.zeros(n, dtype=bool)
    for s, length in runs:
        wanted[s : s + length] = True
    kept: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    source_size = (0, 0)
    for i, frame in enumerate(iter_frames(clip, max_frames=n)):
        source_size = (frame.shape[1], frame.shape[0])
        if wanted[i]:
            batch.append(frame)
        if len(batch) * frame.shape[0] * frame.shape[1] >= _PIXELS_PER_BATCH:
            kept.append(downscale(np.stack(batch), max_side))
            batch = []
    if batch:
        kept.append(downscale(np.stack(batch), max_side))
    frames = np.concatenate(kept) if kept else np.zeros((0, 1, 1, 3), np.uint8)
    if frames.shape[0] != int(wanted.sum()):  # a second decode must see the same frames
        raise VideoError(f"decoded {frames.shape[0]} frames, expected {int(wanted.sum())}")
    offsets = np.cumsum([0] + [length for _, length in runs])[:-1]
    meta = {"runs": [[int(o), int(length)] for o, (_, length) in zip(offsets, runs, strict=True)],
            "source_runs": [[int(s), int(length)] for s, length in runs],
            "source_frames": n, "source_size": list(source_size)}
    return frames, meta


def _choose_runs(n: int, keep: int) -> list[tuple[int, int]]:
    """``(start, length)`` runs of consecutive frames: the whole clip if it fits in ``keep``,
    else ``k = min(4, ceil(n / keep))`` runs of ``keep // k`` frames with evenly spread starts."""
    if n <= keep:
        return [(0, n)]
    k = min(_MAX_RUNS, math.ceil(n / keep))
    length = keep // k
    return [(int(s), length) for s in np.linspace(0, n - length, k).round()]


def downscale(frames: np.ndarray, max_side: int) -> np.ndarray:
    """``(T,H,W,3)`` uint8 -> ``(T,h,w,3)`` uint8 with ``max(h, w) <= max_side``, aspect kept.

    Antialiased bilinear (a proper low-pass for any ratio, unlike ``mode="area"`` whose windows
    are uneven at non-integer ratios). Frames already small enough are returned unchanged.
    """
    t, h, w = frames.shape[:3]
    if max(h, w) <= max_side:
        return frames
    s = max_side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T,3,H,W) in 0..255
    y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` atomically (:func:`progvc.runtime.atomic.atomic_path`): no half-written
    cache file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


class ClipWindows(torch.utils.data.IterableDataset):
    """Endless random GOP windows from a :func:`build_cache` folder.

    Each item is a float32 tensor ``(gop, 3, crop, crop)`` in [0, 1] (``gop=1``: single frames for
    the tokenizer). A window is drawn as follows: a clip with probability proportional to its
    frame count, capped at ``weight_cap`` frames so long clips do not dominate; a run of
    consecutive frames; a temporal stride in ``1..max_stride`` that fits (faster apparent motion);
    a start frame; a random ``crop`` x ``crop`` square (frames smaller than the crop are
    reflection-padded at a random offset; clips whose short side is below ``min_side`` are left
    out instead); with probability ``zoom_out``, a ``2*crop`` square area-averaged down to
    ``crop`` instead, where the frame is large enough (denser detail per pixel, as in video
    shown smaller than it was shot: the cached clips are soft, pristine content is not); then a
    horizontal flip and a time reversal, each with probability 1/2 (the
    codec must not prefer one direction of motion).

    Random streams come from ``np.random.default_rng([seed, worker_id])``, so every DataLoader
    worker draws different windows and a run is reproducible. Clips are memory-mapped lazily, in
    the process that iterates, so the dataset pickles cheaply to workers.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        *,
        gop: int = 8,
        crop: int = 256,
        seed: int = 0,
        max_stride: int = 2,
        weight_cap: int = 300,
        min_side: int = 0,
        zoom_out: float = 0.0,
    ) -> None:
        super().__init__()
        if gop < 1 or crop < 1 or max_stride < 1 or weight_cap < 1:
            raise ConfigError("gop, crop, max_stride and weight_cap must all be >= 1")
        self.gop, self.crop, self.seed, self.max_stride = gop, crop, seed, max_stride
        self.zoom_out = zoom_out
        self.clips: list[tuple[Path, list[tuple[int, int]]]] = []  # (file, runs that fit a window)
        for path in sorted(Path(cache_dir).glob("*.npy")):
            n, h, w = np.load(path, mmap_mode="r").shape[:3]  # reads the header only
            if min(h, w) < min_side:
                continue
            runs = _read_meta(path.with_suffix(".json")).get("runs") or [(0, n)]
            runs = [(int(s), int(length)) for s, length in runs if length >= gop and s + length <= n]
            if runs:
                self.clips.append((path, runs))
        if not self.clips:
            raise ConfigError(f"no cached clip in {str(cache_dir)!r} has {gop} frames; run build_cache first")
        weights = np.array([min(sum(length for _, length in runs), weight_cap) for _, runs in self.clips], float)
        self.weights = weights / weights.sum()

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        arrays: dict[Path, np.ndarray] = {}
        while True:
            yield self.sample(rng, arrays)

    def sample(self, rng: np.random.Generator, arrays: dict[Path, np.ndarray] | None = None) -> torch.Tensor:
        """One window ``(gop, 3, crop, crop)`` float32 in [0, 1]; ``arrays`` caches the memmaps."""
        arrays = {} if arrays is None else arrays
        path, runs = self.clips[rng.choice(len(self.clips), p=self.weights)]
        if path not in arrays:
            arrays[path] = np.load(path, mmap_mode="r")
        clip = arrays[path]  # (T,H,W,3) uint8, memory-mapped
        lengths = np.array([length for _, length in runs], float)
        start, length = runs[rng.choice(len(runs), p=lengths / lengths.sum())]
        strides = [s for s in range(1, self.max_stride + 1) if (self.gop - 1) * s + 1 <= length]
        stride = strides[rng.integers(len(strides))]
        span = (self.gop - 1) * stride + 1
        t0 = start + rng.integers(length - span + 1)
        h, w = clip.shape[1:3]
        zoom = 2 if self.zoom_out and min(h, w) >= 2 * self.crop and rng.random() < self.zoom_out else 1
        size = zoom * self.crop
        y0, x0 = rng.integers(max(h - size, 0) + 1), rng.integers(max(w - size, 0) + 1)
        window = np.asarray(clip[t0 : t0 + span : stride, y0 : y0 + size, x0 : x0 + size])  # (G,h,w,3)
        if zoom > 1:
            g = window.shape[0]
            blocks = window.reshape(g, self.crop, zoom, self.crop, zoom, 3).astype(np.float32)
            window = blocks.mean(axis=(2, 4)).round().astype(np.uint8)
        pad_h, pad_w = self.crop - window.shape[1], self.crop - window.shape[2]
        if pad_h or pad_w:
            top, left = rng.integers(pad_h + 1), rng.integers(pad_w + 1)
            pads = ((0, 0), (top, pad_h - top), (left, pad_w - left), (0, 0))
            window = np.pad(window, pads, mode="symmetric")  # symmetric also works for 1-px frames
        if rng.random() < 0.5:
            window = window[:, :, ::-1]
        if rng.random() < 0.5:
            window = window[::-1]
            # an explicit copy: a reversed 1-frame window counts as contiguous to numpy despite its negative stride
        x = torch.from_numpy(window.copy(order="C")).permute(0, 3, 1, 2)  # (G,3,crop,crop) uint8
        return x.float().div_(255)
