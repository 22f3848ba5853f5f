"""Convert a float model into a portable one and ship it: one command for every model.

    python -m progvc.train.portable runs/ctx_v5/model.safetensors --name progvc-small-v5 --default

The tokenizer is kept as it is; the context model becomes a
:class:`~progvc.models.portable.PortableContextModel` (:func:`progvc.models.portable_convert.convert`:
8-bit weights per output channel, integer norms, attention and lookup tables), whose streams
(format 8) decode to the same tokens on any machine. ``--out FOLDER`` writes to another weights
folder than the package's own (``progvc/weights/``); ``--default`` makes it the model ``encode`` uses.

The other way, to warm-start a context leg from a shipped model when its float model is gone:

    python -m progvc.train.portable progvc/weights/progvc-small-v5.safetensors --to-float runs/v5_float.safetensors

writes a float model (:func:`progvc.models.portable_convert.to_float`) with the same tokenizer; it is
not shipped, only trained from.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from ..codec.codec import Codec
from ..models.portable_convert import convert, to_float
from ..weights import parse_weights, save_weights, shipped_dir
from .export import export


def portable_state(codec: Codec) -> tuple[dict, object]:
    """The state dict and config of ``codec`` with its context model converted."""
    if codec.config.context.portable:
        raise SystemExit(f"{codec.config.name} is portable already")
    tokenizer = {k: v for k, v in codec.model.state_dict().items() if k.startswith("tokenizer.")}
    context = {f"context.{k}": v for k, v in convert(codec.context, codec.tokenizer.vq).items()}
    config = dataclasses.replace(codec.config, context=dataclasses.replace(codec.config.context, portable=True))
    return {**tokenizer, **context}, config


def float_state(path: Path) -> tuple[dict, object]:
    """The state dict and config of the portable model in weights file ``path`` made float again."""
    config, state = parse_weights(path.read_bytes(), str(path))
    if not config.context.portable:
        raise SystemExit(f"{config.name} is not portable; it is a float model already")
    portable = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("context.")}
    context = to_float(portable, config.context, config.tokenizer)
    config = dataclasses.replace(config, context=dataclasses.replace(config.context, portable=False))
    tokenizer = {k: v for k, v in state.items() if k.startswith("tokenizer.")}
    return {**tokenizer, **{f"context.{k}": v for k, v in context.items()}}, config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="a float model's weights file (with --to-float: a portable one's)")
    p.add_argument("--name", help="the portable model's name (required unless --to-float)")
    p.add_argument("--to-float", type=Path, metavar="FILE", help="write SRC, a portable model, as a float one to FILE")
    p.add_argument("--out", type=Path, default=shipped_dir(),
                   help="weights folder to add it to (default: the package's own, %(default)s)")
    p.add_argument("--default", action="store_true", help="make it the model progvc.encode uses")
    args = p.parse_args(argv)
    if args.to_float:
        state, config = float_state(args.src)
        print(f"{args.to_float}  sha256 {save_weights(args.to_float, state, config)}")
        return 0
    if not args.name:
        p.error("--name is required to make a portable model")
    state, config = portable_state(Codec.from_file(args.src, device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.safetensors"
        save_weights(staged, state, dataclasses.replace(config, name=args.name))
        digest = export(staged, args.name, args.out, args.default)
    print(f"{args.out / (args.name + '.safetensors')}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
