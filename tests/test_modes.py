"""Context modes: the per-block choice between temporal and intra context, its flags, and streams
that use it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import progvc
from progvc.coding.context_modes import ModeModel
from progvc.coding.entropy import ChunkDecoder, ChunkEncoder
from progvc.stream import format as bs

from .helpers import legacy_header, smooth_clip


def test_mode_decisions_take_the_cheaper_mode_and_decode_back():
    """Each flag picks the smaller of (J + lambda * flag bits, bits + flag bits) of the two modes
    under the adaptive model, temporal when intra was not tried; the flags decode back."""
    rng = np.random.default_rng(0)
    model, lam, flags, tables = ModeModel(), 1.5, [], []
    for i in range(60):
        j_temporal = (float(rng.normal(0, 20)), float(rng.exponential(30)))
        j_intra = None if i % 7 == 0 else (float(rng.normal(0, 20)), float(rng.exponential(30)))
        ctx = ModeModel.context(i % 5 + 1, flags[-1:] * 6)
        cost = model.cost(ctx)
        flag, table, bits = model.decide(j_temporal, j_intra, lam, ctx)
        expect = j_intra is not None and ((j_intra[0] + lam * cost[1], j_intra[1] + cost[1])
                                          < (j_temporal[0] + lam * cost[0], j_temporal[1] + cost[0]))
        assert flag == expect and bits == pytest.approx(cost[int(flag)])
        flags.append(flag)
        tables.append((ctx, table))
    assert 10 < sum(flags) < 50
    coder = ChunkEncoder()
    for flag, (_, table) in zip(flags, tables, strict=True):
        coder.add(np.array([int(flag)]), table)
    decoder, again = ChunkDecoder(coder.finish()), ModeModel()
    assert [again.read(decoder, ctx) for ctx, _ in tables] == flags


def _forced(monkeypatch, choose):
    """Make the encoder's mode decisions ``choose(j_intra tried) -> bool``, recorded in the list returned."""
    real, made = ModeModel.decide, []

    def decide(self, j_temporal, j_intra, lam, ctx):
        if j_intra is not None:
            j_intra = (-math.inf, -math.inf) if choose() else (math.inf, math.inf)
        out = real(self, j_temporal, j_intra, lam, ctx)
        made.append(out[0])
        return out

    monkeypatch.setattr(ModeModel, "decide", decide)
    return made


def test_an_intra_block_is_coded_as_if_its_frame_opened_the_gop(tiny_codec, monkeypatch):
    """With every block of the later frames in intra mode, the tokens are exactly those of a
    stream without temporal context: intra mode is the first frame's context, nothing else."""
    clip = smooth_clip(3, 24, 40, seed=4)
    options = dict(quality=50, preset="medium", refine=0, skip_block=0)
    alone = tiny_codec.decode_tokens(tiny_codec.encode(clip, temporal=False, **options))
    made = _forced(monkeypatch, lambda: True)
    data = tiny_codec.encode(clip, **options)
    assert made and all(made)
    assert progvc.info(data).modes
    got = tiny_codec.decode_tokens(data)
    assert [len(g) for g in got] == [len(g) for g in alone] == [tiny_codec.n_scales]
    assert all(torch.equal(a, b) for g, h in zip(got, alone, strict=True) for a, b in zip(g, h, strict=True))


def test_streams_mixing_modes_decode_exactly_at_every_truncation(tiny_codec, monkeypatch):
    rng = np.random.default_rng(3)
    made = _forced(monkeypatch, lambda: bool(rng.random() < 0.5))
    data = tiny_codec.encode(smooth_clip(5, 24, 40, seed=6), quality=50, preset="medium", refine=0, gop_size=3)
    assert 0 < sum(made) < len(made)  # both modes occur
    for n in range(1, tiny_codec.n_scales + 1):
        cut = progvc.truncate(data, n_scales=n)
        frames = tiny_codec.decode(cut, fill="none")  # the decoder follows the flags: tokens pass their CRC
        assert np.array_equal(frames, tiny_codec.decode(data, n_scales=n, fill="none"))
    decoder = progvc.Decoder(tiny_codec, fill="none")
    updates = [u for i in range(0, len(data), 97) for u in decoder.feed(data[i:i + 97])] + decoder.close()
    streamed = np.concatenate([u.frames for u in updates if u.final])
    assert np.array_equal(streamed, tiny_codec.decode(data, fill="none"))


@pytest.mark.weights
def test_the_shipped_model_codes_a_scene_cut_in_intra_mode(monkeypatch):
    """At a cut the previous frame misleads the context model: the encoder's own choice codes the
    new scene's scales in intra mode, and the stream costs fewer bits than the fast preset's,
    which does not try intra mode (same latent: refine 0 both). Every scale at the frame's lambda:
    with the default coarse multiple (``coarse_lambda_scale``) most coarse scales of this small
    clip copy the previous frame in either mode, and the finest scale corrects them."""
    from progvc.video.samples import sample_clip

    codec = progvc.Codec.from_pretrained(device="cpu")
    a, b = sample_clip(2, 48, 64, seed=1).frames, sample_clip(2, 48, 64, seed=9).frames[:, ::-1]
    clip = np.concatenate([a, np.ascontiguousarray(b)])
    real, made = ModeModel.decide, []

    def record(self, j_temporal, j_intra, lam, ctx):
        out = real(self, j_temporal, j_intra, lam, ctx)
        made.append(out[0])
        return out

    monkeypatch.setattr(ModeModel, "decide", record)
    chosen = codec.encode_with_stats(clip, preset="medium", refine=0, coarse_lambda_scale=1)
    k = codec.n_scales
    at_cut = [made[k_ * 3 + 1] for k_ in range(k)]  # per scale, frames 1..3: the cut is frame 2
    assert sum(at_cut) >= 3  # measured: v4p 5 of its 10 scales, v5 3 (its coarse scales 1, 3 and 5)
    made.clear()
    temporal_only = codec.encode_with_stats(clip, preset="fast", coarse_lambda_scale=1)
    assert made and not any(made)
    assert chosen.frame_bits[2] < temporal_only.frame_bits[2]  # the cut itself is cheaper in intra mode
    assert sum(chosen.frame_bits) < sum(temporal_only.frame_bits)


def test_mode_flags_need_temporal_context_and_format_4(tiny_codec, clip_factory):
    data = tiny_codec.encode(clip_factory(2, 32, 32), preset="fast")
    header = bs.parse_header(data)
    assert header.modes and bs.VERSION >= 4
    with pytest.raises(progvc.BitstreamError, match="without temporal context"):
        bs.pack_header(dataclasses.replace(header, temporal=False, skip_block=0))
    with pytest.raises(progvc.BitstreamError, match="unknown header flags"):
        bs.parse_header(legacy_header(header, 3))
    assert not bs.parse_header(tiny_codec.encode(clip_factory(2, 32, 32), preset="fast", temporal=False)).modes


def test_intra_trials_follow_the_preset_unless_overridden(tiny_codec, monkeypatch):
    clip = smooth_clip(3, 24, 40, seed=8)
    real, tried = ModeModel.decide, []

    def record(self, j_temporal, j_intra, lam, ctx):
        tried.append(j_intra is not None)
        return real(self, j_temporal, j_intra, lam, ctx)

    monkeypatch.setattr(ModeModel, "decide", record)
    for options, expect in (({"preset": "fast"}, False), ({"preset": "medium", "refine": 0}, True),
                            ({"preset": "fast", "intra_trials": True}, True),
                            ({"preset": "medium", "refine": 0, "intra_trials": False}, False)):
        tried.clear()
        tiny_codec.encode(clip, **options)
        assert tried and all(t == expect for t in tried), options
    with pytest.raises(progvc.ConfigError, match="intra_trials"):
        tiny_codec.encode(clip, intra_trials="yes")
