"""Both training stages under torchrun with two CPU processes (gloo): the DDP path end to end.

Each stage ends with ``common.check_replicas``, which fails the run if the two replicas are not
bit-identical, so this catches updates that bypass DDP's gradient sync (codebook re-seeding, a
forward that skips the wrapper), not only crashes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist

from progvc.codec.codec import Codec
from tests.helpers import make_cache, smooth_clip

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                                    reason="this torch build has no gloo backend")]


def torchrun(module: str, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", module, *args, "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[:6000]


def test_both_stages_train_under_torchrun_and_keep_replicas_identical(tmp_path):
    cache = make_cache(tmp_path / "cache")
    tok, ctx = tmp_path / "tok", tmp_path / "ctx"
    torchrun("progvc.train.tokenizer_stage", "--cache", str(cache), "--out", str(tok), "--preset", "tiny",
             "--batch", "2", "--crop", "32", "--steps", "6", "--log-every", "2", "--restart-every", "2",
             "--disc-start", "3", "--drop-prob", "0.5", "--max-minutes", "30")
    rows = [json.loads(line) for line in (tok / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6 and any(r.get("restarted", 0) > 0 for r in rows)

    torchrun("progvc.train.context_stage", "--tokenizer", str(tok / "tokenizer.safetensors"),
             "--cache", str(cache), "--out", str(ctx), "--steps", "3", "--batch", "1", "--gop", "3",
             "--crop", "32", "--log-every", "1", "--max-minutes", "30")
    codec = Codec.from_file(ctx / "model.safetensors", device="cpu")
    x = smooth_clip(2, 20, 28)
    assert codec.decode(codec.encode(x)).shape == x.shape
