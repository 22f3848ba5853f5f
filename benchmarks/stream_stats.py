"""Tokens per scale, header and index bytes, and tiny-model CPU seconds per frame.

    python -m benchmarks.stream_stats
"""

from __future__ import annotations

import time

import numpy as np

import progvc
from progvc.codec.codec import Codec
from progvc.models.config import small_config, tiny_config
from progvc.stream.scales import scale_grids


def main() -> int:
    cfg = small_config()
    for name, (h, w) in {"CIF 352x288": (288, 352), "1080p 1920x1080": (1080, 1920)}.items():
        s = cfg.tokenizer.stride
        grids = scale_grids(-(-h // s), -(-w // s), cfg.tokenizer.n_scales)
        tokens = [r * c for r, c in grids]
        print(f"{name} ({cfg.name}, stride {s}): grids {grids}\n  tokens/scale {tokens}, total {sum(tokens)}")
    codec = Codec.from_config(tiny_config(), device="cpu")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 288, 352, 3), dtype=np.uint8)
    codec.encode(x[:1])  # warm-up
    t0 = time.perf_counter()
    data = codec.encode(x)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    codec.decode(data)
    dec = time.perf_counter() - t0
    info = progvc.info(data)
    print(f"tiny config (stride {codec.config.tokenizer.stride}), CIF, 8 frames in {info.n_gops} GOPs of "
          f"{codec.gop_size}: header {info.header_bytes} B, index {info.index_bytes} B, total {info.total_bytes} B")
    print(f"tiny config CPU: encode {enc / 8:.3f} s/frame, decode (with sampling) {dec / 8:.3f} s/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
