"""What each fill mode costs a decoder, on real clips: whole stream, cut streams, streaming previews.

::

    python -m benchmarks.fill_speed ../shared/clips/dev/openh264__two-people-videochat__320x192_9f.i420.yuv \\
        ../shared/clips/dev/vvc__RaceHorses__416x240_152f_10bit.bit --threads 2

Each clip (first ``--frames`` frames, area-downscaled until the long side is at most ``--max-side``:
the setting of ``benchmarks/results/dev``) is encoded once at the default quality and preset. Then,
best of ``--runs`` timed runs each (a decode is deterministic, so the fastest run is the one least
disturbed by other processes):

- ``Codec.decode`` of the whole stream;
- the stream cut to each of ``--scales`` and decoded in every fill mode;
- the whole stream fed to the streaming ``Decoder`` in pieces of ``--piece`` bytes, its previews
  filled with "none" and with "sample" (the default), the final updates in the default fill.

Prints a Markdown table (seconds). Timing lives here, never in a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

FILLS = ("none", "sample", "mean")


def _best(runs: int, call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The fastest of ``runs`` timed calls ``call(*args, **kwargs)``, in seconds, formatted."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return f"{min(times):.1f}"


def _stream(codec: object, pieces: list[bytes], preview_fill: str) -> None:
    import progvc

    list(progvc.Decoder(codec, preview_fill=preview_fill).run(pieces))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+", help="video files or folders of them")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--scales", default="6,8", type=lambda v: [int(x) for x in v.split(",")])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--piece", type=int, default=200, help="bytes per piece fed to the streaming Decoder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)

    import torch

    import progvc
    from progvc.bench.rd import find_clips, read_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = progvc.Codec.from_pretrained(device="cpu")
    cuts = " | ".join(f"cut to {n}: {' / '.join(FILLS)}" for n in args.scales)
    print(f"| clip (coded size) | whole stream | {cuts} | streaming, previews none / sample |")
    print("|---|---:|" + "---:|" * len(args.scales) + "---:|")
    for path in [found for clip in args.clips for found in find_clips(clip)]:
        video = read_frames(path, args.frames, args.max_side)
        data = codec.encode(video)
        cells = [_best(args.runs, codec.decode, data)]
        for n in args.scales:
            cut = progvc.truncate(data, n_scales=n)
            cells.append(" / ".join(_best(args.runs, codec.decode, cut, fill=f) for f in FILLS))
        pieces = [data[i:i + args.piece] for i in range(0, len(data), args.piece)]
        cells.append(" / ".join(_best(args.runs, _stream, codec, pieces, f) for f in ("none", "sample")))
        size = f"{video.shape[2]}x{video.shape[1]}"
        print(f"| {path.name[:40]} ({size}) | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
