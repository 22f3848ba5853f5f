"""Portable streams across devices: encode on each device, decode on each, compare (issue 29).

::

    python -m benchmarks.portable_devices [CLIP] [--frames 4] [--devices cpu,cuda] [--json out.json]

For every (encode device, decode device) pair: whether the decode succeeded, whether its tokens
(every scale, and the stream cut by two scales with the default fill, whose missing scales are
drawn) equal the first decode's, and how many pixel values differ from it (the synthesis is float
and not part of the guarantee). Run it on a machine with a GPU (the device tool's
``nvidia-h100-x1``): ``python -m benchmarks.portable_devices ../shared/clips/dev/<clip>``. Without
CUDA it runs the CPU row alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def run(clip: Path | None, frames: int, devices: list[str]) -> list[dict]:
    from progvc.bench.rd import read_frames
    from progvc.codec.codec import Codec
    from progvc.stream import format as bs
    from progvc.video.samples import sample_clip
    from tests.isa_decode import decode

    video = read_frames(clip, frames, 480) if clip else sample_clip(frames, 144, 176, seed=1).frames
    codecs = {d: Codec.from_pretrained(device=d) for d in devices}  # the default model
    streams = {d: c.encode(video, quality=60, gop_size=frames, preset="fast") for d, c in codecs.items()}
    rows, first = [], None
    for enc, data in streams.items():
        for dec, codec in codecs.items():
            row = {"encode": enc, "decode": dec, "same_bytes": data == next(iter(streams.values()))}
            try:
                k = bs.parse_header(data).coded_scales
                out = [decode(codec, data, k), decode(codec, data, k - 2)]
            except Exception as exc:  # a refusal is a result here
                rows.append({**row, "error": str(exc)[:200]})
                continue
            first = first or out
            row["same_tokens"] = all(np.array_equal(a[1], b[1]) for a, b in zip(out, first, strict=True))
            row["pixels_differing"] = int(sum((a[0] != b[0]).sum() for a, b in zip(out, first, strict=True)))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", nargs="?", type=Path)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = run(args.clip, args.frames, args.devices.split(","))
    print("| encode | decode | same bytes | same tokens | pixel values differing |\n|---|---|---|---|---:|")
    for r in rows:
        print(f"| {r['encode']} | {r['decode']} | {r['same_bytes']} | {r.get('same_tokens', r.get('error'))} | "
              f"{r.get('pixels_differing', '-')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r.get("same_tokens") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
