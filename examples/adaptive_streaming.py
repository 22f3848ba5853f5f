"""Follow a bandwidth trace by dropping chunks of each GOP, and plot the quality that gets through.

    python examples/adaptive_streaming.py                          # built-in sample, shipped model
    python examples/adaptive_streaming.py clip.mp4 --frames 48 --trace 0:400,0.5:60,1.2:250
    python examples/adaptive_streaming.py --weights run/final.safetensors --out trace.png

The sender encodes once with every scale. A (simulated) link carries ``bandwidth(t)`` kbit/s; GOP
g lasts ``frames_g / fps`` seconds, so it may send ``bandwidth(t_g) * duration / 8`` bytes, plus
whatever earlier GOPs left unspent (a sender buffer; an overdraft is paid back later). Each GOP
sends the largest prefix of its chunks that fits, but at least its first chunk: progvc's coarse
to fine chunk order makes this a byte operation, no re-encode (``progvc.truncate`` does the same
for a whole-stream budget). The receiver feeds the packets to a :class:`progvc.Decoder`, which
fills the scales that were not sent, and we measure PSNR per GOP.

``--trace`` lists ``time_s:kbit_s`` steps (piecewise constant). Without it the trace steps through
fractions of the full-quality stream's own bit rate, so it suits any model and frame size.
The plot (matplotlib, Agg backend) shows the bandwidth, the bytes sent per GOP and the PSNR
reached per GOP, next to the PSNR of the full stream.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

import progvc
from progvc.runtime.atomic import atomic_path
from progvc.stream import format as bs
from progvc.video.io import read_video
from progvc.video.samples import sample_clip

DEFAULT_STEPS = (1.0, 0.45, 0.15, 0.05, 0.3, 0.8)  # fractions of the full stream's rate, one per GOP
PACKET = 1500  # bytes per network packet fed to the decoder


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def parse_trace(text: str) -> list[tuple[float, float]]:
    """``"0:400,1.5:80"`` -> [(0.0, 400.0), (1.5, 80.0)]: (start second, kbit/s), sorted by time."""
    steps = sorted((float(t), float(r)) for t, r in (item.split(":") for item in text.split(",")))
    if not steps or steps[0][0] > 0 or any(r <= 0 for _, r in steps):
        raise argparse.ArgumentTypeError("trace must be time:kbit/s steps starting at 0 with positive rates")
    return steps


def rate_at(trace: list[tuple[float, float]], t: float) -> float:
    """kbit/s of a piecewise-constant trace at time t (seconds)."""
    return next(r for start, r in reversed(trace) if start <= t)


def adapt(data: bytes, trace: list[tuple[float, float]]) -> tuple[bytes, list[int], list[float]]:
    """Truncate every GOP to what the link carries during it. Returns (stream, chunks per GOP, budgets)."""
    stream = bs.unpack(data)
    h = stream.header
    kept, budgets, carry = [], [], 0.0
    for g, chunks in enumerate(stream.gops):
        duration = h.gop_frames(g) / float(h.fps)
        budget = rate_at(trace, g * h.gop_size / float(h.fps)) * 1000 * duration / 8
        costs = bs.gop_costs(chunks)
        n = max(1, sum(1 for c in costs if c <= budget + carry))
        carry += budget - costs[n - 1]
        kept.append(chunks[:n])
        budgets.append(budget)
    small = bs.Stream(replace(h, coded_scales=max(len(k) for k in kept)), tuple(kept), rd_lambdas=stream.rd_lambdas)
    return bs.pack(small), [len(k) for k in kept], budgets


def receive(codec: progvc.Codec, data: bytes, seed: int) -> np.ndarray:
    """What a player ends up showing: packets through the streaming decoder, final GOP updates."""
    decoder = progvc.Decoder(codec, seed=seed, previews=False)
    packets = (data[i:i + PACKET] for i in range(0, len(data), PACKET))
    return np.concatenate([u.frames for u in decoder.run(packets) if u.final])


def plot(path: str, times: np.ndarray, dur: np.ndarray, budgets: list[float], sent: list[int],
         quality: list[float], full: list[float], kept: list[int], n_scales: int) -> None:
    """Two panels sharing the time axis: bytes per GOP, PSNR per GOP. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    top.bar(times, np.asarray(budgets) / 1000, width=dur, align="edge", alpha=0.3, label="link allows")
    top.bar(times, np.asarray(sent) / 1000, width=dur * 0.6, align="edge", label="sent")
    top.set_ylabel("kB per GOP")
    top.legend()
    mid = times + dur / 2
    bottom.hlines(full, times, times + dur, colors="tab:gray", linestyles="--", label=f"all {n_scales} scales")
    bottom.hlines(quality, times, times + dur, colors="tab:blue")
    bottom.plot(mid, quality, "o", color="tab:blue", label="received (missing scales filled)")
    for t, q, n in zip(mid, quality, kept, strict=True):
        bottom.annotate(str(n), (t, q), textcoords="offset points", xytext=(0, 6), fontsize=8, ha="center")
    bottom.set_xlabel("time (s); numbers = scales sent")
    bottom.set_ylabel("PSNR (dB)")
    bottom.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", help="any video PyAV reads (default: built-in sample)")
    p.add_argument("--frames", type=int, default=48, help="frames to stream (default 48)")
    p.add_argument("--size", default="352x288", help="size of the built-in sample, WxH")
    p.add_argument("--gop", type=int, default=8,
                   help="frames per GOP, the step of adaptation (default 8: a third of a second at 25 fps)")
    p.add_argument("--trace", type=parse_trace, help="bandwidth steps time_s:kbit_s,... (default: see above)")
    p.add_argument("--out", default="adaptive_streaming.png", help="the plot to write")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the receiver")
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped model)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)

    if args.video:
        clip = read_video(args.video, max_frames=args.frames)
    else:
        w, h = (int(v) for v in args.size.lower().split("x"))
        clip = sample_clip(args.frames, height=h, width=w)
    frames = clip.frames
    codec = progvc.Codec.from_file(args.weights, device=args.device) if args.weights else \
        progvc.Codec.from_pretrained(device=args.device)
    data = codec.encode(frames, fps=clip.fps, gop_size=args.gop)
    header = bs.parse_header(data)
    fps, gop = float(header.fps), header.gop_size
    trace = args.trace
    if trace is None:  # steps through fractions of the full stream's mean rate, one step per GOP
        full_kbps = 8 * len(data) / (len(frames) / fps) / 1000
        trace = [(g * gop / fps, f * full_kbps) for g, f in
                 enumerate(np.resize(DEFAULT_STEPS, header.n_gops))]
    small, kept, budgets = adapt(data, trace)
    got, best = receive(codec, small, args.seed), codec.decode(data, seed=args.seed)
    starts = range(0, len(frames), gop)
    quality = [psnr(got[s:s + gop], frames[s:s + gop]) for s in starts]
    full = [psnr(best[s:s + gop], frames[s:s + gop]) for s in starts]
    sent = [bs.gop_costs(chunks)[-1] for chunks in bs.unpack(small).gops]
    print(f"{len(frames)} frames at {fps:g} fps in {header.n_gops} GOPs; full stream {len(data)} bytes, "
          f"adapted {len(small)} bytes")
    print("  GOP  time_s  allowed_B  sent_B  scales  PSNR_dB  full_dB")
    for g in range(header.n_gops):
        print(f"{g:>5} {g * gop / fps:>7.2f} {budgets[g]:>10.0f} {sent[g]:>7} {kept[g]:>7} {quality[g]:>8.2f}"
              f" {full[g]:>8.2f}")
    times = np.arange(header.n_gops) * gop / fps
    durations = np.array([header.gop_frames(g) / fps for g in range(header.n_gops)])
    plot(args.out, times, durations, budgets, sent, quality, full, kept, codec.n_scales)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
