"""Options as data: ``EncodeOptions`` / ``DecodeOptions`` hold every option's default, check and help
text; keyword arguments, ``options=`` objects and the command line all go through them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import progvc
from progvc.codec.options import DecodeOptions, EncodeOptions, spec
from progvc.stream.truncation import BelowSmallestStream

from .helpers import smooth_clip


@pytest.mark.parametrize("kind, name, bad", [
    (EncodeOptions, "quality", 101), (EncodeOptions, "preset", "fastest"), (EncodeOptions, "bpp", 0),
    (EncodeOptions, "gop_size", 0), (EncodeOptions, "refine", -1), (EncodeOptions, "prefix_refine", 1.5),
    (EncodeOptions, "intra_trials", 1), (EncodeOptions, "inter_lambda_scale", 0.5),
    (EncodeOptions, "coarse_lambda_scale", (1, 2, 3)), (EncodeOptions, "skip_block", 3),
    (EncodeOptions, "resize", 5), (EncodeOptions, "seed", -1), (EncodeOptions, "temperature", 0),
    (EncodeOptions, "top_k", True), (EncodeOptions, "top_p", 2.0),
    (DecodeOptions, "fill", "blur"), (DecodeOptions, "seed", 2**64), (DecodeOptions, "temperature", -1),
    (DecodeOptions, "top_k", -1), (DecodeOptions, "top_p", 0), (DecodeOptions, "limits", 5),
])
def test_a_bad_value_is_refused_naming_its_option(kind, name, bad):
    with pytest.raises(progvc.ConfigError, match="limits" if name == "limits" else name):
        kind(**{name: bad})


def test_options_are_frozen_and_normalised():
    opts = EncodeOptions(coarse_lambda_scale=2, quality=40)
    assert opts.coarse_lambda_scale == (2.0, 2.0) and opts.limits == progvc.Limits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.quality = 50  # type: ignore[misc]


def test_build_puts_keywords_on_top_and_refuses_unknown_names():
    base = DecodeOptions(fill="none", seed=3)
    assert DecodeOptions.build(base, seed=4) == DecodeOptions(fill="none", seed=4)
    assert DecodeOptions.build(base, seed=None) == base  # None: not given
    with pytest.raises(progvc.ConfigError, match="no option sample.*fill"):
        DecodeOptions.build(None, sample=True)
    with pytest.raises(progvc.ConfigError, match="not both"):
        EncodeOptions(bpp=0.1, quality=50)
    with pytest.raises(progvc.ConfigError, match="EncodeOptions"):
        EncodeOptions.build(DecodeOptions())


def test_an_options_object_and_keyword_arguments_code_alike(tiny_codec):
    clip = smooth_clip(3, 24, 40, seed=7)
    opts = EncodeOptions(quality=50, preset="fast", gop_size=2)
    data = tiny_codec.encode(clip, options=opts)
    assert data == tiny_codec.encode(clip, quality=50, preset="fast", gop_size=2)
    assert data == tiny_codec.encode(clip, 4, options=EncodeOptions(quality=50, preset="fast"), gop_size=2)
    frames = tiny_codec.decode(data, options=DecodeOptions(fill="none"))
    assert np.array_equal(frames, tiny_codec.decode(data, fill="none"))


def test_the_command_line_shows_the_options_own_help_and_defaults():
    from progvc.cli.parser import build_parser

    encode = build_parser()._subparsers._group_actions[0].choices["encode"]  # noqa: SLF001
    actions = {a.dest: a for a in encode._actions}  # noqa: SLF001
    for name, flag in (("gop_size", "gop"), ("refine", "refine"), ("inter_lambda_scale", "inter_lambda_scale"),
                       ("skip_block", "skip_block"), ("preset", "preset")):
        default, text, _ = spec(EncodeOptions, name)
        assert actions[flag].help.startswith(text)
        assert actions[flag].default == default


def test_below_the_smallest_stream_is_one_error_phrased_for_its_caller(tiny_codec):
    data = tiny_codec.encode(smooth_clip(3, 24, 40, seed=7), preset="fast", gop_size=2)
    with pytest.raises(BelowSmallestStream) as caught:
        progvc.truncate(data, bpp=1e-4)
    exc = caught.value
    assert str(exc).startswith("bpp=0.0001 is below") and exc.phrased("--bpp ").startswith("--bpp 0.0001 is below")
    least = 8 * len(progvc.truncate(data, n_scales=1)) / (3 * 24 * 40)
    assert exc.least == pytest.approx(least)
    suggested = float(str(exc).split("give bpp=")[1].split()[0])
    assert suggested >= least and 8 * len(progvc.truncate(data, bpp=suggested)) <= suggested * 3 * 24 * 40


def test_options_import_neither_torch_nor_constriction():
    code = ("import sys; from progvc.codec.options import EncodeOptions, DecodeOptions, spec; "
            "spec(EncodeOptions, 'quality'); DecodeOptions(n_scales=2, partial=True); "
            "assert 'torch' not in sys.modules and 'constriction' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
