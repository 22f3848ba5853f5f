"""What both training stages share: run directories, DDP set-up, checkpoints, JSON-lines logs.

A run directory holds ``config.json`` (the stage's dataclass), ``metrics.jsonl`` (one JSON object
per logged step), ``last.pt`` (model + optimiser + step, for resuming; never shipped) and
``model.safetensors`` (the exportable weights with the codec config inside). The same script runs
on CPU, one GPU, or several GPUs under ``torchrun`` (DDP; rank 0 logs and saves).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..runtime.atomic import atomic_path


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None, seed: int, threads: int = 0) -> Dist:
    """Initialise DDP when launched by torchrun, pick the device, seed every generator.

    ``threads`` > 0 sets torch's CPU threads (1 avoids OpenMP thrashing on a shared machine)."""
    if threads > 0:
        torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True  # training only; coding pins these off
        torch.backends.cudnn.allow_tf32 = True
    if world > 1:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    torch.manual_seed(seed + rank)
    return Dist(rank, world, dev)


def teardown() -> None:
    """End a torchrun process cleanly, after ``train`` has returned: wait for rank 0's save, free
    the DDP wrappers, then close the process group. (A process that exits with the group or a
    DDP reducer still alive can abort in gloo's threads, and torchrun reports the run failed.)"""
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist, *, unused_ok: bool = False) -> torch.nn.Module:
    """DDP around ``model`` under torchrun, else ``model``. ``unused_ok``: some parameters may get
    no gradient in a step (the tokenizer's last refinement when finer scales are dropped)."""
    if d.world == 1:
        return model
    ids = [d.device.index] if d.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_ok)


def broadcast_(tensor: torch.Tensor, d: Dist) -> None:
    """Overwrite ``tensor`` on every rank with rank 0's (for changes made outside the optimiser)."""
    if d.world > 1:
        dist.broadcast(tensor, src=0)


def sum_(tensor: torch.Tensor, d: Dist) -> None:
    """Sum ``tensor`` over all ranks, in place."""
    if d.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def check_replicas(module: torch.nn.Module, d: Dist) -> None:
    """Raise if the DDP replicas of ``module`` are no longer bit-identical (run before saving).

    DDP keeps them equal only if every update goes through synchronised gradients; a codebook
    re-seed or a forward that bypasses the wrapper silently breaks that, and rank 0 would save a
    model the other ranks never trained."""
    if d.world == 1:
        return
    flat = torch.cat([p.detach().flatten().float() for p in module.parameters()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if not torch.equal(high, low):
        raise RuntimeError(f"DDP replicas of {type(module).__name__} diverged "
                           f"(max difference {float((high - low).max()):.3g}); this is a training bug")


class RunLog:
    """Append-only JSON-lines metrics plus a progress bar on a terminal (quiet otherwise)."""

    def __init__(self, out: Path, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.t0 = time.time()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step")

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def log(self, step: int, **metrics: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time_s": round(time.time() - self.t0, 1), **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)


def save_config(out: Path, cfg: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))


def save_checkpoint(out: Path, step: int, modules: dict[str, Any]) -> None:
    """Atomically write ``last.pt`` with every module's / optimiser's state_dict."""
    with atomic_path(out / "last.pt") as tmp:
        torch.save({"step": step, **{k: m.state_dict() for k, m in modules.items()}}, tmp)


def finish_stage(out: Path, step: int, modules: dict[str, Any], trained: torch.nn.Module, model: torch.nn.Module,
                 codec_cfg: Any, d: Dist) -> Path:
    """End of a codec-model stage: check the replicas of ``trained`` agree, then (main rank) write
    ``last.pt`` and ``model.safetensors`` (the whole codec ``model`` with ``codec_cfg``). Returns ``out``."""
    from ..weights import save_weights

    check_replicas(trained, d)
    if d.main:
        save_checkpoint(out, step, modules)
        save_weights(out / "model.safetensors", model.state_dict(), codec_cfg)
    return out


def load_checkpoint(out: Path, modules: dict[str, Any], device: torch.device) -> int:
    """Resume from ``last.pt`` if present; returns the step to continue from (0 when fresh)."""
    path = out / "last.pt"
    if not path.exists():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    for k, m in modules.items():
        m.load_state_dict(state[k])
    return int(state["step"])


def warm_start(model: torch.nn.Module, path: str) -> int:
    """Copy what fits from another model's weights (``.safetensors`` or a ``last.pt`` checkpoint).

    Parameters are grouped by module (``g_s.net.4``) under their parent (``g_s.net``); within a
    parent, modules are matched from the front while their shapes agree, then from the back. So a
    stride-8 tokenizer takes from a stride-16 one the encoder's early levels, the decoder's late
    ones and the quantiser, and everything else starts fresh. Returns the number of tensors copied.
    """
    if path.endswith(".pt"):
        raw = torch.load(path, map_location="cpu", weights_only=True)
        src = next(v for k, v in raw.items() if k in ("tokenizer", "context"))
        prefix = "tokenizer." if "tokenizer" in raw else "context."
        src = {prefix + k: v for k, v in src.items()}
    else:
        from safetensors.torch import load_file

        src = load_file(path)
    dst = model.state_dict()
    if not any(k in src for k in dst):  # a bare tokenizer state into the tokenizer module
        src = {k.split(".", 1)[1]: v for k, v in src.items() if "." in k}

    def modules(state: dict[str, torch.Tensor]) -> dict[str, dict[str, list[tuple[str, tuple[int, ...]]]]]:
        """child -> module -> [(name, shape)]: ``g_s.net.4.body.0.weight`` is in module
        ``g_s.net.4`` of child ``g_s.net`` (split at the first numeric part, else the last)."""
        out: dict[str, dict[str, list[tuple[str, tuple[int, ...]]]]] = {}
        for name, t in state.items():
            parts = name.split(".")
            cut = next((i for i, p in enumerate(parts[:-1]) if p.isdigit()), len(parts) - 2)
            child, mod = ".".join(parts[:cut]), ".".join(parts[:cut + 1])
            out.setdefault(child, {}).setdefault(mod, []).append((name, tuple(t.shape)))
        return out

    def in_order(mods: dict[str, list[tuple[str, tuple[int, ...]]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
        """Modules in layer order (``net.10`` after ``net.9``: safetensors sorts its keys)."""
        def key(mod: str) -> list[tuple[int, str]]:
            return [(int(p), "") if p.isdigit() else (-1, p) for p in mod.split(".")]
        return [sorted(mods[m]) for m in sorted(mods, key=key)]

    src_mods, copied = modules(src), 0
    for child, mods in modules(dst).items():
        new, old = in_order(mods), in_order(src_mods.get(child, {}))
        pairs: dict[str, str] = {}
        for order in (1, -1):
            for a, b in zip(new[::order], old[::order], strict=False):
                if [shape for _, shape in a] != [shape for _, shape in b]:
                    break
                pairs.update((dn, sn) for (dn, _), (sn, _) in zip(a, b, strict=True))
        for dn, sn in pairs.items():
            dst[dn] = src[sn].to(dst[dn].dtype)
        copied += len(pairs)
    model.load_state_dict(dst)
    return copied


def init_from(module: torch.nn.Module, cfg: Any, start: int) -> None:
    """Apply ``cfg.init_from`` (:func:`warm_start`) to a fresh run; a resumed run keeps ``last.pt``."""
    if cfg.init_from and start == 0:
        print(f"warm start: {warm_start(module, cfg.init_from)} tensors from {cfg.init_from}", flush=True)


def lr_at(step: int, base: float, warmup: int, total: int, done: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 10% of ``base``. ``done`` in [0, 1]: a share of the run
    known to be over by other means (wall time, :func:`time_share`); the cosine follows whichever of
    it and the steps is further along."""
    if step < warmup:
        return base * (step + 1) / warmup
    import math

    frac = max((step - warmup) / max(1, total - warmup), done)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def time_share(cfg: Any, t0: float) -> float:
    """The share of ``cfg.max_minutes`` spent since ``t0`` when ``cfg.lr_by_time`` is set, else 0:
    a run bounded by time rather than steps (a leg on a lent GPU, :mod:`progvc.train.device_leg`)
    still ends its cosine at the low rate."""
    if not cfg.lr_by_time or cfg.max_minutes <= 0:
        return 0.0
    return (time.time() - t0) / (60 * cfg.max_minutes)


def parse_config(cls: type, argv: list[str] | None, doc: str | None) -> Any:
    """Command-line flags for every field of a training dataclass (``--max-minutes 30``)."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        kind = {"int": int, "float": float, "bool": _flag}.get(str(f.type), str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    return cls(**vars(p.parse_args(argv)))


def _flag(text: str) -> bool:
    """A boolean flag's value: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``)."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise ValueError(f"expected true or false, got {text!r}")
    return value


def finished(step: int, cfg: Any, t0: float, d: Dist | None = None) -> bool:
    """True once ``cfg.steps`` are done or ``cfg.max_minutes`` (> 0) of wall time have passed.

    Under DDP the time limit is agreed on (any rank out of time stops all): a rank that stopped
    alone would leave the others waiting forever in their next gradient all-reduce."""
    if step >= cfg.steps:
        return True
    if not cfg.max_minutes:
        return False
    late = time.time() - t0 > 60 * cfg.max_minutes
    if d is not None and d.world > 1:
        flag = torch.tensor(float(late), device=d.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        late = bool(flag.item())
    return late


def set_lr(opt: torch.optim.Optimizer, step: int, cfg: Any, t0: float = 0.0) -> float:
    """Apply :func:`lr_at` for this step (and, with ``cfg.lr_by_time``, the wall time since ``t0``) to every
    parameter group; returns the rate."""
    lr = lr_at(step, cfg.lr, cfg.warmup, cfg.steps, time_share(cfg, t0) if t0 else 0.0)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr
