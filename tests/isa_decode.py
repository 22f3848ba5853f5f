"""Decode a stream in this process and save what came out: ``python -m tests.isa_decode STREAM OUT.npz``;
or encode the test clip in this process: ``python -m tests.isa_decode --encode CLIP OUT.pgvc``.

tests/test_portable_isa.py runs it in fresh processes under each ``ATEN_CPU_CAPABILITY`` and thread
count. For the whole stream and for the stream cut by two scales (the default fill), it saves every
token of every scale (those decoded and those the fill drew) and the frames, plus the capability
PyTorch ran with.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from progvc.codec.codec import Codec
from progvc.coding.fill import FillOptions
from progvc.stream import format as bs


def decode(codec: Codec, data: bytes, n_scales: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T,H,W,3) uint8, every token of every GOP flattened) of the stream's first n scales."""
    stream = bs.unpack(data)
    fill = FillOptions.resolve(stream.header)
    frames, tokens = [], []
    for g, chunks in enumerate(stream.gops):
        gop = codec.gop_decoder(stream.header, g, stream.rd_lambda(g), fill)
        for chunk in chunks[:n_scales]:
            gop.add(chunk)
        frames.append(gop.frames())
        tokens += [r.reshape(-1).cpu().numpy() for r in gop.state.token_maps()]
    return np.concatenate(frames), np.concatenate(tokens)


def main(stream: str, out: str) -> None:
    data = Path(stream).read_bytes()
    codec = Codec.from_pretrained(bs.parse_header(data).model_name)
    k = bs.parse_header(data).coded_scales
    full, full_tokens = decode(codec, data, k)
    cut, cut_tokens = decode(codec, data, k - 2)
    np.savez(out, full=full, full_tokens=full_tokens, cut=cut, cut_tokens=cut_tokens,
             capability=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads())


def encode(clip: str, out: str) -> None:
    """The test's stream of ``clip`` (4 frames, quality 60, GOP 4, preset fast) with the default
    (portable) model, made in this process."""
    from progvc.bench.rd import read_frames

    codec = Codec.from_pretrained()
    Path(out).write_bytes(codec.encode(read_frames(clip, 4, 480), quality=60, gop_size=4, preset="fast"))


if __name__ == "__main__":
    if sys.argv[1] == "--encode":
        encode(*sys.argv[2:4])
    else:
        main(*sys.argv[1:3])
