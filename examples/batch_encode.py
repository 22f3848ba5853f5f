"""Encode every video of a folder with one loaded model; write .pvc files atomically and a summary.

    python examples/batch_encode.py videos/ --out streams/                     every scale
    python examples/batch_encode.py videos/ --out streams/ --bpp 0.05 --device cuda
    python examples/batch_encode.py videos/ --out streams/ --weights run/final.safetensors --frames 64

The model is loaded once (``progvc.Codec``; on CUDA when present unless ``--device``) and reused
for every file, which is what makes batch work cheap. Each stream is written to a temporary file
beside its target and renamed when complete, so an interrupted run leaves only whole files; an
existing output is skipped unless ``--force``, so rerunning the command resumes where it stopped.
A file that cannot be read or encoded is reported and the batch goes on. At the end a table is
printed and ``OUT/summary.json`` lists, per input, the stream, its size, bpp and timing, or the
error. Exit status: 0 when every file was encoded (or skipped), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import progvc
from progvc.runtime.atomic import write_bytes_atomic
from progvc.video.io import read_video

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".y4m", ".yuv", ".ivf", ".264", ".h264", ".265",
                  ".hevc", ".bit", ".ts", ".m4v"}


def find_videos(folder: Path) -> list[Path]:
    """Video files directly in ``folder`` (by suffix, hidden files skipped), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES)


def encode_one(codec: progvc.Codec, source: Path, target: Path, args: argparse.Namespace) -> dict:
    """Encode one file; returns its summary row (raises ProgvcError for a bad input)."""
    clip = read_video(source, max_frames=args.frames)
    result = codec.encode_with_stats(clip.frames, args.scales, bpp=args.bpp, fps=clip.fps,
                                     progress=sys.stderr.isatty())
    write_bytes_atomic(target, result.bitstream)
    facts = progvc.info(result.bitstream)
    return {"input": source.name, "stream": target.name, "status": "encoded", "frames": facts.n_frames,
            "width": facts.width, "height": facts.height, "bytes": facts.total_bytes, "bpp": facts.bpp,
            "coded_scales": facts.coded_scales, "seconds": round(result.seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="folder of videos (not searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="folder for the .pvc files and summary.json")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--scales", type=int, help="code the first N scales (default: all)")
    rate.add_argument("--bpp", type=float, help="fit this many bits per pixel, scales picked per GOP")
    p.add_argument("--frames", type=int, help="encode only the first N frames of each video")
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped model)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--force", action="store_true", help="re-encode files whose .pvc exists")
    args = p.parse_args(argv)

    videos = find_videos(args.folder)
    if not videos:
        p.error(f"no videos in {args.folder} (looked for {' '.join(sorted(VIDEO_SUFFIXES))})")
    args.out.mkdir(parents=True, exist_ok=True)
    codec = progvc.Codec.from_file(args.weights, device=args.device) if args.weights else \
        progvc.Codec.from_pretrained(device=args.device)
    print(f"{len(videos)} videos, model {codec.config.name} on {codec.device}")
    rows = []
    for source in videos:
        target = args.out / (source.stem + ".pvc")
        if target.exists() and not args.force:
            rows.append({"input": source.name, "stream": target.name, "status": "skipped (exists)"})
            continue
        try:
            rows.append(encode_one(codec, source, target, args))
        except progvc.ProgvcError as exc:  # a bad file must not stop the batch
            rows.append({"input": source.name, "status": "failed", "error": str(exc)})
    for row in rows:
        detail = (f"{row['bytes']:>9} B {row['bpp']:.4f} bpp {row['seconds']:>6.1f} s" if "bytes" in row
                  else row.get("error", ""))
        print(f"{row['input']:<32} {row['status']:<16} {detail}")
    write_bytes_atomic(args.out / "summary.json", (json.dumps({"model": codec.config.name, "files": rows}, indent=2)
                                            + "\n").encode())
    failed = sum(row["status"] == "failed" for row in rows)
    print(f"wrote {args.out / 'summary.json'}: {len(rows) - failed} ok, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
