"""``StreamInfo``: what a stream holds, read from its bytes alone (no torch, no constriction)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from . import format as bs


@dataclass(frozen=True)
class StreamInfo:
    """Header facts and where the bytes go. ``bytes_per_scale[k]`` sums chunk k over all GOPs
    (payload plus its checks: 6 bytes, 8 before format 6); ``tokens_per_frame[k]`` is the size of
    grid k; ``coding_temperatures[k]`` is the temperature chunk k's tokens were coded at
    (:mod:`progvc.coding.temperature`), the mean over the GOPs that carry it;
    ``weights_sha256`` is the hex of the weights hash the stream carries (its first 8 bytes from
    format 7 on, all 32 before)."""

    model_name: str
    weights_sha256: str
    width: int
    height: int
    n_frames: int
    fps: Fraction
    gop_size: int
    n_gops: int
    n_scales: int
    coded_scales: int
    seed: int
    temperature: float
    top_k: int
    top_p: float
    temporal: bool
    skip_block: int
    modes: bool
    grids: tuple[tuple[int, int], ...]
    total_bytes: int
    header_bytes: int
    index_bytes: int
    bytes_per_scale: tuple[int, ...]
    complete: bool
    resize: int = 1
    coding_temperatures: tuple[float, ...] = ()
    deblock: bool = False

    @property
    def tokens_per_frame(self) -> tuple[int, ...]:
        return tuple(r * c for r, c in self.grids)

    @property
    def bpp(self) -> float:
        return 8 * self.total_bytes / (self.n_frames * self.width * self.height)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fps"] = str(self.fps)
        d["bpp"] = self.bpp
        d["tokens_per_frame"] = list(self.tokens_per_frame)
        return d

    def __str__(self) -> str:
        lines = [
            f"model       {self.model_name} (weights {self.weights_sha256[:12]})",
            f"video       {self.width}x{self.height}, {self.n_frames} frames at {float(self.fps):.3f} fps"
            + ("" if self.resize == 1 else ", coded at {}x{} (resize {})".format(
                *bs.coded_size(self.width, self.height, self.resize), self.resize)),
            f"GOPs        {self.n_gops} of {self.gop_size} frames",
            f"scales      {self.coded_scales} of {self.n_scales} coded" + ("" if self.complete else " (cut short)")
            + ("" if self.temporal else ", no temporal context")
            + (f", block skip {self.skip_block}x{self.skip_block}" if self.skip_block else "")
            + (", context modes" if self.modes else "") + (", deblocked" if self.deblock else ""),
            f"size        {self.total_bytes} bytes, {self.bpp:.4f} bpp "
            f"(header {self.header_bytes}, index {self.index_bytes})",
            f"sampling    seed {self.seed}, temperature {self.temperature:g}, top-k {self.top_k}, "
            f"top-p {self.top_p:g}",
            "scale  grid       tokens/frame  bytes  coded at temperature",
        ]
        for k, (grid, n) in enumerate(zip(self.grids, self.tokens_per_frame, strict=True)):
            b = self.bytes_per_scale[k] if k < len(self.bytes_per_scale) else 0
            tau = f"{self.coding_temperatures[k]:.2f}" if k < len(self.coding_temperatures) else "-"
            lines.append(f"{k + 1:>5}  {grid[0]:>4}x{grid[1]:<5} {n:>12}  {b:>5}  {tau:>20}")
        return "\n".join(lines)


def info(data: bytes, *, partial: bool = False) -> StreamInfo:
    """Describe a stream. Raises BitstreamError on a malformed one."""
    stream = bs.unpack(data, partial=partial)
    h = stream.header
    per_scale = [0] * h.coded_scales
    temperatures: list[list[float]] = [[] for _ in range(h.coded_scales)]
    for chunks in stream.gops:
        for k, c in enumerate(chunks):
            per_scale[k] += c.size
            temperatures[k].append(bs.TEMPERATURES[c.temperature])
    header_bytes = bs.header_size(data)
    return StreamInfo(h.model_name, h.weights_sha256.hex(), h.width, h.height, h.n_frames, h.fps, h.gop_size,
                      h.n_gops, h.n_scales, h.coded_scales, h.seed, h.temperature, h.top_k, h.top_p, h.temporal,
                      h.skip_block, h.modes, h.grids, memoryview(data).nbytes, header_bytes, stream.index_bytes,
                      tuple(per_scale),
                      stream.complete, h.resize,
                      tuple(sum(t) / len(t) for t in temperatures if t), h.deblock)

