"""The context model's two paths agree: teacher-forced training pass == KV-cached coding path."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from progvc.coding import GopState, teacher_forced_logits
from progvc.config import tiny_config
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
                got[t, k] = logits
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
