"""The portable context model: its arithmetic against an independent NumPy reference, its tables,
its conversion from a float model, and streams that decode to the same tokens on every CPU kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progvc.codec.codec import Codec
from progvc.coding.entropy import PROB_BITS
from progvc.coding.state import GopState
from progvc.models import exact_ops as ops
from tests import portable_reference as ref

from .helpers import portable_pair


def random_tokens(codec: Codec, grids: list, n_frames: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, codec.config.tokenizer.codebook_size, size=g) for _ in range(n_frames)] for g in grids]


def coded_logits(codec: Codec, tokens: list[list[np.ndarray]], grids: list) -> list[list[torch.Tensor]]:
    """The logits GopState gives each (t, k) when the tokens are known, in coding order."""
    state = GopState(codec.context, codec.tokenizer.vq, grids, len(tokens[0]))
    out: list[list[torch.Tensor]] = [[] for _ in grids]

    def pick(t: int, k: int, logits) -> np.ndarray:
        out[k].append(logits.full())
        return tokens[k][t].reshape(-1)
    state.run(range(len(grids)), pick)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_probability_path_equals_the_numpy_reference_bit_for_bit(seed):
    _, codec = portable_pair(seed)
    grids = codec.tokenizer.grids(24, 40)
    tokens = random_tokens(codec, grids, 3, seed)
    got = coded_logits(codec, tokens, grids)
    model = ref.ReferenceModel(codec.context.state_dict(), codec.config.context.heads,
                               codec.config.context.temporal_window, codec.config.tokenizer.n_phi)
    want = model.gop(tokens, grids)
    table = codec.context.table_exp.numpy()
    for k in range(len(grids)):
        for t in range(3):
            logits = (got[k][t] * (1 << ops.LOGIT_FRAC)).numpy().astype(np.int64)
            np.testing.assert_array_equal(logits, want[k][t], err_msg=f"logits of scale {k}, frame {t}")
            for index in (3, 9):
                np.testing.assert_array_equal(codec.context.table(got[k][t], index),
                                              ref.counts(want[k][t], index, table) + 1)


def test_primitives_equal_the_reference_on_wide_inputs():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(7, 300, generator=gen) * torch.logspace(0, 6, 7)[:, None]).round()
    q, e = ops.quantize_rows(x)
    rq, re = ref.quantize(x.numpy().astype(np.int64))
    np.testing.assert_array_equal(q.numpy(), (rq << re).astype(np.float32))
    assert (q.abs() / ops.pow2(e)).max() <= ops.ACT_MAX
    np.testing.assert_array_equal(ops.normalize_rows(x).numpy(), ref.normalize(x.numpy().astype(np.int64)))
    _, codec = portable_pair()
    table = codec.context._f("gelu_table")
    h = (torch.randn(5, 64, generator=gen) * 6000).round()
    np.testing.assert_array_equal(ops.gelu(h, *codec.context._gelu_tables()).numpy(),
                                  ref.gelu(h.numpy().astype(np.int64), table.numpy().astype(np.int64)))


def test_tables_keep_every_symbol_and_sum_within_the_coder_total():
    _, codec = portable_pair()
    gen = torch.Generator().manual_seed(4)
    logits = (torch.randn(50, 64, generator=gen) * 30 * (1 << ops.LOGIT_FRAC)).round() / (1 << ops.LOGIT_FRAC)
    logits[0] = 0  # a flat row
    logits[1, 5] = 500  # one certain symbol
    for index in range(16):
        table = codec.context.table(logits, index)
        assert table.min() >= 1 and table.sum(1).max() <= 1 << PROB_BITS
    assert ops.TABLE_TOTAL_BITS == PROB_BITS


def test_portable_logits_follow_the_float_model():
    float_codec, codec = portable_pair(2)
    grids = codec.tokenizer.grids(24, 40)
    tokens = random_tokens(codec, grids, 2, 2)
    a = torch.cat([torch.cat(r) for r in coded_logits(float_codec, tokens, grids)])
    b = torch.cat([torch.cat(r) for r in coded_logits(codec, tokens, grids)])
    assert (a - b).abs().mean() < 0.02 * a.abs().mean() + 1e-3


def test_a_portable_stream_round_trips_and_is_marked_format_8(clip_factory):
    float_codec, codec = portable_pair()
    video = clip_factory(n_frames=4, height=32, width=48)
    data = codec.encode(video, 4, quality=60)
    assert data[4] == 8 and float_codec.encode(video, 4, quality=60)[4] == 7
    assert codec.encode(video, 4, quality=60) == data
    full, cut = codec.decode(data), codec.decode(data, 2)
    assert full.shape == cut.shape == video.shape
    np.testing.assert_array_equal(codec.decode(data, 2, seed=5), codec.decode(data, 2, seed=5))


def test_to_float_undoes_the_conversion_up_to_its_rounding():
    """A portable model made float again (to warm-start a context leg) gives the float model's
    logits, and converts back to the same integers; norms with an affine part, ln_mem's included."""
    import dataclasses

    from progvc.models.config import tiny_config
    from progvc.models.portable_convert import convert, to_float
    from progvc.train.portable import portable_state

    float_codec = Codec.from_config(tiny_config(), seed=3, device="cpu")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in float_codec.context.named_parameters():
            if "ln" in name or "norm" in name:  # a trained model's norms are not the identity
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    state, config = portable_state(float_codec)
    portable = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("context.")}
    back = Codec(dataclasses.replace(config, context=dataclasses.replace(config.context, portable=False)),
                 {**{k: v for k, v in state.items() if k.startswith("tokenizer.")},
                  **{f"context.{k}": v for k, v in to_float(portable, config.context, config.tokenizer).items()}},
                 device="cpu")
    grids = back.tokenizer.grids(24, 40)
    tokens = random_tokens(back, grids, 2, 5)
    a = torch.cat([torch.cat(r) for r in coded_logits(float_codec, tokens, grids)])
    b = torch.cat([torch.cat(r) for r in coded_logits(back, tokens, grids)])
    assert (a - b).abs().mean() < 0.01 * a.abs().mean() + 1e-3
    again = convert(back.context, back.tokenizer.vq)
    for name, ints in portable.items():
        if name.endswith(".weight") and ints.dtype == torch.int8:
            off = (again[name].int() - ints.int()).abs()
            if ".kv_mem." in name:  # fitted: kv and kv_mem were rounded apart, one float kv makes both
                assert off.max() <= 2 and off.float().mean() < 0.5, name
            else:
                assert off.max() <= 1 and off.float().mean() < 0.02, name


def test_to_float_command_writes_a_float_model_that_codes_like_the_portable_one(tmp_path):
    import dataclasses

    from progvc.train.portable import main
    from progvc.weights import parse_weights, save_weights

    float_codec, codec = portable_pair(4)
    src = tmp_path / "portable.safetensors"
    save_weights(src, codec.model.state_dict(), codec.config)
    out = tmp_path / "float.safetensors"
    assert main([str(src), "--to-float", str(out)]) == 0
    config, state = parse_weights(out.read_bytes(), "float")
    assert config == dataclasses.replace(codec.config, context=dataclasses.replace(codec.config.context,
                                                                                   portable=False))
    assert all(torch.equal(state[k], v) for k, v in codec.model.state_dict().items() if k.startswith("tokenizer."))
    back = Codec.from_file(out, device="cpu")
    grids = back.tokenizer.grids(24, 40)
    tokens = random_tokens(back, grids, 2, 6)
    a = torch.cat([torch.cat(r) for r in coded_logits(float_codec, tokens, grids)])
    b = torch.cat([torch.cat(r) for r in coded_logits(back, tokens, grids)])
    assert (a - b).abs().mean() < 0.01 * a.abs().mean() + 1e-3
    with pytest.raises(SystemExit, match="not portable"):
        main([str(out), "--to-float", str(tmp_path / "again.safetensors")])
