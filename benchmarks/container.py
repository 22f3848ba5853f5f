"""What the container costs: each clip's default stream cut to n scales, in the format-5 and
format-6 layouts and in the current one (the same chunks; only the header, the GOP indexes and the
chunk checks differ, so the pictures are the same and only the rate changes).

    python -m benchmarks.container ../shared/clips/dev            # encodes: dev setting, default encoder
    python -m benchmarks.container --streams DIR                  # .pvc files already made (any version)
    python -m benchmarks.container ../shared/clips/dev --rebyte RESULTS --out NEW

Prints a markdown table: mean bytes per stream at each n in the three layouts, and the share the
current one saves against each older one (mean, min and max over the clips). ``--rebyte`` takes a
``benchmarks.progression`` results file made with an older container and writes it again with
every stream's bytes and bpp in the current one: it encodes each stream again with the file's settings (the encoder is
deterministic and the tokens do not depend on the container), checks that the default stream
decodes to the recorded PSNR, and leaves every quality number as it was. (It does not apply
from format 6 on: format 7 codes each chunk at its own temperature, which changes the payloads.)
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from progvc.stream import format as bs
from progvc.stream import truncation


def format5_bytes(stream: bs.Stream) -> int:
    """Bytes of ``stream`` laid out as format 5 wrote it (docs/FORMAT.md, "Versions"): a
    fixed-width header with the sampling fields, u16 grids; u32 payload lengths; two u32 checks
    per chunk."""
    h = stream.header
    header = 7 + 1 + len(h.model_name) + 32 + struct.calcsize("<IIIIIHBBQfIfB") + 4 * h.n_scales + 4
    return header + sum(5 + 4 * len(chunks) + 4 + sum(8 + len(c.payload) for c in chunks) for chunks in stream.gops)


def format6_bytes(stream: bs.Stream) -> int:
    """Bytes of ``stream`` laid out as format 6 wrote it (docs/FORMAT.md, "Versions"): format 7 with
    the whole sha256 instead of its first 8 bytes, every scale's grid instead of the finest, and no
    chunk temperatures in the GOP indexes (the same payloads: what a format-7 stream's chunks would
    take there, not what format 6's encoder, at temperature 1, made)."""
    h = stream.header
    grids = sum(len(bs.varint(r)) + len(bs.varint(c)) for r, c in h.grids[:-1])
    temperatures = sum((len(chunks) + 1) // 2 for chunks in stream.gops)
    return len(bs.pack(stream)) + 32 - bs.WEIGHTS_ID_BYTES + grids - temperatures


def streams_of_clips(folder: str, frames: int, max_side: int, gop: int) -> dict[str, bytes]:
    """The default encoder's stream of every clip in ``folder``, in the setting of
    benchmarks/results/dev (first ``frames`` frames, long side area-downscaled to ``max_side``)."""
    import progvc
    from progvc.bench.rd import find_clips, read_frames

    codec = progvc.Codec.from_pretrained(device="cpu")
    out = {}
    for path in find_clips(folder):
        video = read_frames(path, frames, max_side)
        out[path.name] = codec.encode(video, gop_size=gop)
        print(f"{path.name}: {len(out[path.name])} bytes", flush=True)
    return out


def table(streams: dict[str, bytes]) -> str:
    rows = [f"| n scales | format 5 (bytes) | format 6 (bytes) | format {bs.VERSION} (bytes) | saved against 5, "
            "mean (min-max) | saved against 6 (bytes) | saved against 6, mean (min-max) |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    n_max = max(bs.parse_header(d).n_scales for d in streams.values())
    for n in range(1, n_max + 1):
        sizes = []
        for data in streams.values():
            if n > bs.parse_header(data).coded_scales:
                continue
            cut = truncation.truncate(data, n_scales=n)
            sizes.append((format5_bytes(bs.unpack(cut)), format6_bytes(bs.unpack(cut)), len(cut)))
        f5, f6, new = np.array(sizes, float).T
        rows.append(f"| {n} | {f5.mean():.0f} | {f6.mean():.0f} | {new.mean():.0f} | {_saved(new, f5)} | "
                    f"{f6.mean() - new.mean():.0f} | {_saved(new, f6)} |")
    return "\n".join(rows)


def _saved(new: np.ndarray, old: np.ndarray) -> str:
    """The share of ``old`` bytes that ``new`` saves: mean (min-max) over the clips."""
    share = 100 * (1 - new / old)
    return f"{share.mean():.1f}% ({share.min():.1f}-{share.max():.1f})"


def rebyte(results: str, clips: str, out: str) -> None:
    """See the module docstring. Raises SystemExit if a re-encoded stream decodes differently."""
    import json

    import progvc
    from progvc.bench.metrics import psnr
    from progvc.bench.rd import find_clips, read_frames

    doc = json.loads(Path(results).read_text())
    st = doc["settings"]
    codec = progvc.Codec.from_pretrained(name=st["model"], device="cpu")
    enc = {k: st.get(k) for k in ("preset", "skip_block", "intra_trials", "inter_lambda_scale", "prefix_refine")}
    enc["resize"] = st.get("resize")
    enc["coarse_lambda_scale"] = st.get("coarse_lambda_scale", 1.0)  # before it: every scale alike; None: default
    paths = {p.name: p for p in find_clips(clips)}
    for name, clip in doc["clips"].items():
        video = read_frames(paths[name], st["frames"], st["max_side"])
        pixels = video.shape[0] * video.shape[1] * video.shape[2]
        default = codec.encode(video, quality=st["quality"], gop_size=st["gop"], **enc)
        full = next(p for p in clip["points"] if p["n_scales"] == codec.n_scales)
        if psnr(video, codec.decode(default)) != full["psnr_rgb"]:
            raise SystemExit(f"{name}: the re-encoded stream decodes differently; cannot rebyte")
        for p in clip["points"]:
            p["bytes"] = len(truncation.truncate(default, n_scales=p["n_scales"]))
            p["bpp"] = 8 * p["bytes"] / pixels
        for p in clip["sweep"]:
            data = default if p["quality"] == st["quality"] else codec.encode(
                video, quality=p["quality"], gop_size=st["gop"], **enc)
            p["bytes"], p["bpp"] = len(data), 8 * len(data) / pixels
        clip["encode"]["bytes"], clip["encode"]["bpp"] = len(default), 8 * len(default) / pixels
        print(f"{name}: {clip['encode']['bytes']} bytes", flush=True)
    doc["settings"]["container"] = bs.VERSION
    Path(out).write_text(json.dumps(doc, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="?", help="folder of clips to encode with the default encoder")
    p.add_argument("--streams", help="folder of .pvc streams instead")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--gop", type=int, default=8)
    p.add_argument("--rebyte", metavar="RESULTS", help="a benchmarks.progression results file to re-measure")
    p.add_argument("--out", help="where --rebyte writes")
    args = p.parse_args(argv)
    if bool(args.clips) == bool(args.streams):
        p.error("give a clips folder or --streams, not both")
    if args.rebyte:
        if not (args.clips and args.out):
            p.error("--rebyte needs the clips folder and --out")
        rebyte(args.rebyte, args.clips, args.out)
        return 0
    streams = ({f.name: f.read_bytes() for f in sorted(Path(args.streams).glob("*.pvc"))} if args.streams
               else streams_of_clips(args.clips, args.frames, args.max_side, args.gop))
    print(table(streams))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
