"""Ship a trained model: copy it into ``progvc/weights/`` as float16 safetensors and record its sha256.

    python -m progvc.train.export runs/ctx/model.safetensors --name progvc-small-v3 --default

The manifest (``progvc/weights/manifest.json``) maps model names to files and hashes; the loader
refuses a file whose hash differs. The folder is package data, so every file the manifest lists
travels in the wheel (``--out`` writes elsewhere, e.g. a folder for ``$PROGVC_WEIGHTS_DIR``).
Float16 halves the size; the model computes in float32 from exactly these values, so the shipped
file *is* the model that was evaluated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from ..runtime.atomic import write_text_atomic
from ..weights import parse_weights, save_weights, shipped_dir


def export(src: Path, name: str, out_dir: Path | None = None, make_default: bool = False) -> str:
    """Add ``src`` to the weights folder ``out_dir`` (default: the package's own) as model ``name``,
    in float16, and list it in the folder's manifest (the default model too if ``make_default`` or
    the manifest names none yet). Returns the file's sha256 (hex)."""
    out_dir = shipped_dir() if out_dir is None else out_dir
    config, state = parse_weights(src.read_bytes(), str(src))
    config = dataclasses.replace(config, name=name)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = save_weights(out_dir / f"{name}.safetensors", state, config, dtype=torch.float16)
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"models": {}}
    manifest["models"][name] = {"file": f"{name}.safetensors", "sha256": digest}
    if make_default or "default" not in manifest:
        manifest["default"] = name
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="model.safetensors written by progvc.train.context_stage")
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, default=shipped_dir(),
                   help="weights folder to add the model to (default: the package's own, %(default)s)")
    p.add_argument("--default", action="store_true", help="make it the model progvc.encode uses")
    args = p.parse_args(argv)
    digest = export(args.src, args.name, args.out, args.default)
    print(f"{args.out / (args.name + '.safetensors')}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
