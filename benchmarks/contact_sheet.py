"""A contact sheet of fill modes: source, then fill none / mean / sample at two truncations, per clip.

::

    python -m benchmarks.contact_sheet ../shared/clips/dev/a.mp4 ../shared/clips/dev/b.yuv \\
        --scales 6,8 --out benchmarks/results/fill_contact_sheet.png
    python -m benchmarks.contact_sheet ... --fills none --resize 2 --out resize_contact_sheet.png

One row per (clip, n_scales): the clip's first frame (read like ``benchmarks.progression``: first
``--frames`` frames, long side <= ``--max-side``), and that frame decoded from the default-quality
stream truncated to n scales in each of ``--fills``, each tile labelled with its PSNR and detail
ratio (:func:`progvc.bench.metrics.detail_ratio`) over the whole clip. ``--resize F`` adds the clip
coded at 1/F size to the truncated stream's bytes (``encode(bpp=..., resize=F)``, :mod:`progvc.video.resize`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FILLS = ("none", "mean", "sample")


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with ``text`` written on a dark band under it (PIL's default bitmap font)."""
    from PIL import Image, ImageDraw

    band = np.zeros((14, tile.shape[1], 3), np.uint8)
    img = Image.fromarray(np.concatenate([tile, band]))
    ImageDraw.Draw(img).text((2, tile.shape[0] + 1), text, fill=(255, 255, 255))
    return np.asarray(img)


def sheet(paths: Sequence[Path], scales: Sequence[int], frames: int, max_side: int, seed: int,
          fills: Sequence[str] = FILLS, resize: int = 1) -> np.ndarray:
    """The contact sheet as one (H, W, 3) uint8 image."""
    import progvc
    from progvc.bench.metrics import detail_ratio, psnr
    from progvc.bench.rd import read_frames

    codec = progvc.Codec.from_pretrained(device="cpu")
    rows = []
    for path in paths:
        video = read_frames(Path(path), frames, max_side)
        data = codec.encode(video)
        for n in scales:
            part = progvc.truncate(data, n_scales=n)
            tiles = [_label(video[0], f"{Path(path).name[:24]} source")]
            for fill in fills:
                rec = codec.decode(part, fill=fill, seed=seed)
                tiles.append(_label(rec[0], f"n={n} {fill}: {psnr(video, rec):.1f} dB, detail "
                                            f"{detail_ratio(video, rec):.2f}"))
            if resize > 1:
                bpp = 8 * len(part) / video[..., 0].size
                rec = codec.decode(codec.encode(video, bpp=bpp, resize=resize))
                tiles.append(_label(rec[0], f"1/{resize} size, {bpp:.3f} bpp: {psnr(video, rec):.1f} dB, detail "
                                            f"{detail_ratio(video, rec):.2f}"))
            rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--scales", default="6,8", type=lambda v: [int(x) for x in v.split(",")])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fills", default=",".join(FILLS), type=lambda v: v.split(","))
    p.add_argument("--resize", type=int, default=1, help="add the clip coded at 1/F size to the same bytes")
    p.add_argument("--out", type=Path, default=Path("fill_contact_sheet.png"))
    args = p.parse_args(argv)
    image = sheet(args.clips, args.scales, args.frames, args.max_side, args.seed, args.fills, args.resize)
    Image.fromarray(image).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
