"""Tokens to bytes and back, one GOP at a time, with the context model's probabilities.

::

    options.py        what the encoder and decoder can be asked to do (presets, quality, fill, ...)
    state.py          GopState: the one scale-by-scale path that encoder, decoder and sampler share
    gop.py            GopEncoder / GopDecoder: a GOP's chunks, scale after scale
    entropy.py        the range coder (the one module that imports constriction)
    temperature.py    per-chunk coding temperatures
    rd_choice.py      the encoder's rate-distortion choice of tokens
    skip.py           block-skip flags      context_modes.py   intra / temporal context flags
    adaptive.py       the adaptive binary models those flags are coded with
    fill.py           the scales a stream does not carry: mean, sample or none
    footprint.py      the memory a coding job needs, estimated before it starts

Depends on :mod:`progvc.models`, :mod:`progvc.stream`, :mod:`progvc.video` (resize) and
:mod:`progvc.runtime`.
"""
