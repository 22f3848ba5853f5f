"""The context model's two paths agree: teacher-forced training pass == KV-cached coding path."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from progvc.coding.state import GopState, teacher_forced_logits
from progvc.models.config import tiny_config
from progvc.models.context import ContextModel, block_mask
from progvc.models.tokenizer import Tokenizer

LOCAL = {"local_from": 2, "local_tile": 2, "local_halo": 1}  # the tiny latent is 5x9: tiles matter


@pytest.mark.parametrize("temporal", [True, False])
@pytest.mark.parametrize("n_frames", [1, 2, 4])
@pytest.mark.parametrize("context", [{}, LOCAL, {**LOCAL, "rd_conditioning": True}])
def test_training_pass_matches_incremental_coding(temporal, n_frames, context):
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, context=dataclasses.replace(cfg.context, **context))
    lam = 2.5
    tok, ctx = Tokenizer(cfg.tokenizer).eval(), ContextModel(cfg.context, cfg.tokenizer).eval()
    with torch.no_grad():
        for p in ctx.parameters():  # make every embedding and bias matter
            p.add_(torch.randn_like(p) * 0.05)
    frames = torch.randint(0, 256, (2 * n_frames, 17, 33, 3), dtype=torch.uint8)
    grids = tok.grids(17, 33)
    maps = tok.tokenize(frames)
    batched = [r.view(2, n_frames, *r.shape[1:]) for r in maps]
    with torch.no_grad():
        tf = teacher_forced_logits(ctx, tok.vq, batched, grids, temporal=temporal, lam=lam)  # (2, T*L, V)
        for b in range(2):
            state = GopState(ctx, tok.vq, grids, n_frames, temporal=temporal, lam=lam)
            got = {}

            def pick(t, k, logits, b=b, got=got):
                got[t, k] = logits.full()
                return batched[k][b, t].flatten().numpy()

            state.run(range(len(grids)), pick)
            inc = torch.cat([got[t, k] for t in range(n_frames) for k in range(len(grids))])
            torch.testing.assert_close(tf[b], inc, atol=1e-4, rtol=1e-4)


def test_mask_never_looks_at_finer_scales_or_later_frames():
    sizes = [1, 4, 9]
    mask = block_mask(3, sizes, 2, torch.device("cpu"))  # (T, L, 3L)
    scale = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    length = len(scale)
    assert mask.shape == (3, length, 3 * length)
    for t in range(3):
        for part in range(3):
            block = mask[t, :, part * length:(part + 1) * length]
            allowed = scale[None, :] <= scale[:, None]
            if part > 0 and t < part:  # memory from before the GOP start
                allowed = torch.zeros_like(allowed)
            assert torch.equal(block, allowed)


def test_local_rule_sees_the_tile_and_its_halo_and_the_coding_layout_agrees():
    """A fine query sees every coarse (global) key, and of the local scales exactly the cells whose
    centre lies within its tile widened by the halo; the coding path's tile gathers list the same
    keys as the training mask, for every tile and source scale."""
    from progvc.models.local_attention import local_visibility, tile_layout

    grids, local_from, tile, halo = [(1, 1), (2, 3), (5, 9), (10, 18)], 2, 4, 1
    sizes = [h * w for h, w in grids]
    offsets = [sum(sizes[:k]) for k in range(len(grids))]
    keep = local_visibility(grids, local_from, tile, halo)
    assert keep[:, : offsets[local_from]].all(), "coarse scales stay global"
    assert keep[: offsets[local_from]].all(), "coarse queries attend densely"
    q = offsets[3] + 5 * 18 + 9  # grid 3, row 5, col 9: tile rows 4..8, cols 8..12
    seen = {(r, c) for r in range(10) for c in range(18) if keep[q, offsets[3] + r * 18 + c]}
    assert seen == {(r, c) for r in range(3, 9) for c in range(7, 13)}
    seen2 = {(r, c) for r in range(5) for c in range(9) if keep[q, offsets[2] + r * 9 + c]}
    assert seen2 == {(r, c) for r in range(1, 4) for c in range(3, 6)}  # centres 2i+1 in [3, 9) and [7, 13)
    for k in (2, 3):
        layout = tile_layout(grids, k, local_from, tile, halo)
        for i in range(layout.queries.shape[0]):
            rows = offsets[k] + layout.queries[i][layout.query_ok[i]]
            for j, (keys, ok) in enumerate(zip(layout.keys, layout.key_ok, strict=True), start=local_from):
                listed = set((offsets[j] + keys[i][ok[i]]).tolist())
                for row in rows.tolist():
                    visible = keep[row, offsets[j]:offsets[j] + sizes[j]].nonzero().flatten() + offsets[j]
                    assert set(visible.tolist()) == listed


@pytest.mark.parametrize("budget", [1, 5000])
def test_tile_groups_give_the_bits_of_all_tiles_at_once(budget):
    """Local attention over groups of tiles (a memory bound) is bitwise the attention over every
    tile in one batch, with the coding path's kernel, padded tiles (a mask) included."""
    from progvc.models.cached_attention import _attend_tiles
    from progvc.models.local_attention import tile_layout
    from progvc.runtime.determinism import coding_mode

    torch.manual_seed(3)
    grids, local_from = [(1, 1), (2, 3), (5, 9), (10, 18)], 2
    layout = tile_layout(grids, 3, local_from, 4, 1)
    heads, d = 2, 8

    def kv(n):
        return torch.randn(1, heads, n, d), torch.randn(1, heads, n, d)

    sources = [[kv(h * w) for h, w in grids] for _ in range(3)]  # frame t and two earlier frames
    q = torch.randn(1, heads, 10 * 18, d)
    with coding_mode():
        whole = _attend_tiles(q, sources, layout, local_from, budget=1 << 40)
        grouped = _attend_tiles(q, sources, layout, local_from, budget=budget)
    assert torch.equal(whole, grouped)


def test_the_cache_keeps_only_what_a_later_block_reads():
    """Coded through the last scale a GOP's cache is empty; a fork that runs the last scales
    (previews) drops only its own entries, and the state it came from codes on to the same logits
    as a state never forked."""
    torch.manual_seed(1)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, context=dataclasses.replace(cfg.context, **LOCAL))
    tok, ctx = Tokenizer(cfg.tokenizer).eval(), ContextModel(cfg.context, cfg.tokenizer).eval()
    frames = torch.randint(0, 256, (3, 17, 33, 3), dtype=torch.uint8)
    grids = tok.grids(17, 33)
    maps = tok.tokenize(frames)
    n_scales = len(grids)
    got: dict = {}

    def pick(t, k, logits, into=got):
        into[t, k] = logits.full()
        return maps[k][t].flatten().numpy()

    with torch.no_grad():
        whole = GopState(ctx, tok.vq, grids, 3)
        whole.run(range(n_scales), pick)
        assert whole.cache.own == [[], [], []] and whole.cache.mem == [[], [], []]
        state, again = GopState(ctx, tok.vq, grids, 3), {}
        state.run(range(2), lambda t, k, logits: pick(t, k, logits, again))
        kept = [len(per_t) for per_t in state.cache.own], [len(per_t) for per_t in state.cache.mem]
        assert kept == ([2, 2, 2], [2, 2, 0])  # the last frame's memory has no reader
        fork = state.fork()
        fork.run(range(2, n_scales), lambda t, k, logits: pick(t, k, logits, {}))
        assert fork.cache.own == [[], [], []] and fork.cache.mem == [[], [], []]
        assert ([len(per_t) for per_t in state.cache.own], [len(per_t) for per_t in state.cache.mem]) == kept
        state.run(range(2, n_scales), lambda t, k, logits: pick(t, k, logits, again))
    assert got.keys() == again.keys() and all(torch.equal(got[key], again[key]) for key in got)
