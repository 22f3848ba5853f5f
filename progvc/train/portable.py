"""Convert a float model into a portable one and ship it: one command for every model.

    python -m progvc.train.portable runs/ctx_v5/model.safetensors --name progvc-small-v5 --default

The tokenizer is kept as it is; the context model becomes a
:class:`~progvc.models.portable.PortableContextModel` (:func:`progvc.models.portable_convert.convert`:
8-bit weights per output channel, integer norms, attention and lookup tables), whose streams
(format 8) decode to the same tokens on any machine. ``--out FOLDER`` writes to another weights
folder than the package's own (``progvc/weights/``); ``--default`` makes it the model ``encode`` uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from ..codec.codec import Codec
from ..models.portable_convert import convert
from ..weights import save_weights, shipped_dir
from .export import export


def portable_state(codec: Codec) -> tuple[dict, object]:
    """The state dict and config of ``codec`` with its context model converted."""
    if codec.config.context.portable:
        raise SystemExit(f"{codec.config.name} is portable already")
    tokenizer = {k: v for k, v in codec.model.state_dict().items() if k.startswith("tokenizer.")}
    context = {f"context.{k}": v for k, v in convert(codec.context, codec.tokenizer.vq).items()}
    config = dataclasses.replace(codec.config, context=dataclasses.replace(codec.config.context, portable=True))
    return {**tokenizer, **context}, config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="a float model's weights file")
    p.add_argument("--name", required=True, help="the portable model's name")
    p.add_argument("--out", type=Path, default=shipped_dir(),
                   help="weights folder to add it to (default: the package's own, %(default)s)")
    p.add_argument("--default", action="store_true", help="make it the model progvc.encode uses")
    args = p.parse_args(argv)
    state, config = portable_state(Codec.from_file(args.src, device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.safetensors"
        save_weights(staged, state, dataclasses.replace(config, name=args.name))
        digest = export(staged, args.name, args.out, args.default)
    print(f"{args.out / (args.name + '.safetensors')}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
