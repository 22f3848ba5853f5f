"""Make a portable context model from a float one: the conversion every shipped model goes through.

``convert(context, vq)`` returns the state of a :class:`~progvc.models.portable.PortableContextModel`:

* each linear layer's weights rounded to integers |w| <= 127 with one scale per output channel
  (``mult * 2**-shift``, a 24-bit multiplier), its bias at the output's fixed point;
* a layer norm's gain and bias folded into the layer that reads it (``W diag(g)``, ``W b + bias``),
  so the integer norm has no affine part; the attention's 1/sqrt(d) folded into the query projection;
* embeddings, codebook and phi convolutions (phi's mix with the identity folded into its centre
  tap) at fixed point; the GELU and exp lookup tables.

The tables are computed here with the platform's math library and then *stored*: the weights file
is the definition, whatever machine made it. Calibration is not needed: activations are scaled
per row at run time (:func:`progvc.models.exact_ops.quantize_rows`).

``to_float(portable)`` goes the other way, for training: a float :class:`~progvc.models.context.ContextModel`
state that computes what the portable model does up to its rounding (each weight within half a step
of its 8-bit grid), to warm-start a context leg when the float model a portable one was made from is
gone. Layer norms come back with the affine part folded into the layers that read them (gain 1, bias 0),
except ``ln_mem``, which shares ``kv`` with ``ln1``: its gain and bias are fitted from the two folded
layers by least squares.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from . import exact_ops as ops
from .config import ContextConfig, TokenizerConfig
from .context import ContextModel
from .portable import PHI_FRAC, IntLinear, PortableContextModel
from .quantizer import MultiScaleResidualVQ


def _fixed(x: torch.Tensor, frac: int) -> torch.Tensor:
    return (x.double() * (1 << frac)).round()


def _set_linear(dst: IntLinear, weight: torch.Tensor, bias: torch.Tensor, in_frac: int, out_frac: int) -> None:
    """Round a float layer (weight (N,K), bias (N,)) reading values at ``in_frac`` and writing at ``out_frac``."""
    weight, bias = weight.double(), bias.double()
    scale = weight.abs().amax(1).clamp(min=1e-12) / ops.WEIGHT_MAX
    dst.weight.copy_((weight / scale[:, None]).round().clamp(-ops.WEIGHT_MAX, ops.WEIGHT_MAX).to(torch.int8))
    unit = scale * 2.0 ** (out_frac - in_frac)
    shift = 23 - torch.floor(torch.log2(unit))
    dst.mult.copy_((unit * 2.0 ** shift).round().long())
    dst.shift.copy_(shift.long())
    dst.bias.copy_(_fixed(bias, out_frac).long())


def _set_normed(dst: IntLinear, layer: torch.nn.Linear, norm: torch.nn.LayerNorm, out_frac: int,
                gain: float = 1.0) -> None:
    """A linear layer that reads a layer norm: the norm's affine part folded in, times ``gain``."""
    w = layer.weight.double() * norm.weight.double()[None, :]
    b = layer.weight.double() @ norm.bias.double() + layer.bias.double()
    _set_linear(dst, w * gain, b * gain, ops.NORM_FRAC, out_frac)


def lookup_tables() -> dict[str, torch.Tensor]:
    """The GELU and exp tables (module docstring of :mod:`progvc.models.exact_ops`)."""
    from .portable import attention_exp_entries, table_exp_entries
    steps = (ops.GELU_HI - ops.GELU_LO) << ops.GELU_STEP_BITS
    xs = [ops.GELU_LO + i / (1 << ops.GELU_STEP_BITS) for i in range(steps + 1)]
    gelu = [round(0.5 * x * (1 + math.erf(x / math.sqrt(2))) * (1 << ops.FRAC)) for x in xs]
    att = [round(2 ** ops.ATTENTION_WEIGHT_BITS * math.exp(-j / (1 << ops.SCORE_FRAC)))
           for j in range(attention_exp_entries())]
    tab = [round(2 ** ops.TABLE_WEIGHT_BITS * math.exp(-j / (1 << ops.LOGIT_FRAC))) for j in range(table_exp_entries())]
    att[-1] = tab[-1] = 0
    return {"gelu_table": torch.tensor(gelu, dtype=torch.int32), "attention_exp": torch.tensor(att, dtype=torch.int32),
            "table_exp": torch.tensor(tab, dtype=torch.int64)}


@torch.no_grad()
def convert(context: ContextModel, vq: MultiScaleResidualVQ) -> dict[str, torch.Tensor]:
    """The state dict of the portable version of ``context`` (reading ``vq``'s codebook and phis)."""
    cfg: ContextConfig = context.cfg
    tok: TokenizerConfig = context.tok
    out = PortableContextModel(cfg, tok)
    for name in ("sos", "scale_emb", "lag_emb", "intra"):
        getattr(out, name).copy_(_fixed(getattr(context, name), ops.FRAC).int())
    out.codebook.copy_(_fixed(vq.codebook.weight, ops.FRAC).int())
    for j, phi in enumerate(vq.phis):
        w = phi.conv.weight.double() * phi.mix
        c = w.shape[0]
        w[torch.arange(c), torch.arange(c), 1, 1] += 1 - phi.mix
        out.phi_weight[j].copy_(_fixed(w.reshape(c, -1), PHI_FRAC).int())
        out.phi_bias[j].copy_(_fixed(phi.conv.bias * phi.mix, ops.FRAC + PHI_FRAC).long())
    for name, table in lookup_tables().items():
        getattr(out, name).copy_(table)
    for name in ("in_proj", "mem_proj", "prev_proj") + (("rd_proj",) if cfg.rd_conditioning else ()):
        src = getattr(context, name)
        _set_linear(getattr(out, name), src.weight, src.bias, ops.FRAC, ops.FRAC)
    head_dim = cfg.dim // cfg.heads
    for src, dst in zip(context.blocks, out.blocks, strict=True):
        _set_normed(dst.q, src.q, src.ln1, ops.FRAC, gain=head_dim ** -0.5)
        _set_normed(dst.kv, src.kv, src.ln1, ops.FRAC)
        _set_normed(dst.kv_mem, src.kv, src.ln_mem, ops.FRAC)
        _set_linear(dst.proj, src.proj.weight, src.proj.bias, ops.FRAC, ops.FRAC)
        _set_normed(dst.fc1, src.mlp.fc1, src.ln2, ops.FRAC)
        _set_linear(dst.fc2, src.mlp.fc2.weight, src.mlp.fc2.bias, ops.FRAC, ops.FRAC)
    _set_normed(out.head, context.head, context.norm, ops.LOGIT_FRAC)
    _set_normed(out.copy_gate, context.copy_gate, context.norm, ops.LOGIT_FRAC)
    return out.state_dict()


def _get_linear(src: dict[str, torch.Tensor], name: str, in_frac: int,
                out_frac: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The float (weight (N,K), bias (N,)) of portable layer ``name`` (inverse of :func:`_set_linear`)."""
    unit = src[f"{name}.mult"].double() * torch.pow(2.0, -src[f"{name}.shift"].double())
    weight = src[f"{name}.weight"].double() * (unit * 2.0 ** (in_frac - out_frac))[:, None]
    return weight, src[f"{name}.bias"].double() / 2.0 ** out_frac


@torch.no_grad()
def to_float(portable: dict[str, torch.Tensor], cfg: ContextConfig, tok: TokenizerConfig) -> dict[str, torch.Tensor]:
    """The state dict of a float :class:`ContextModel` that computes what the portable model whose
    state is ``portable`` (keys as :class:`PortableContextModel`'s) does, up to its rounding."""
    out = ContextModel(dataclasses.replace(cfg, portable=False), tok).state_dict()
    put = {name: portable[name].double() / (1 << ops.FRAC) for name in ("sos", "scale_emb", "lag_emb", "intra")}

    def linear(dst: str, src: str, in_frac: int = ops.FRAC, out_frac: int = ops.FRAC, gain: float = 1.0) -> None:
        weight, bias = _get_linear(portable, src, in_frac, out_frac)
        put[f"{dst}.weight"], put[f"{dst}.bias"] = weight / gain, bias / gain

    for name in ("in_proj", "mem_proj", "prev_proj") + (("rd_proj",) if cfg.rd_conditioning else ()):
        linear(name, name)
    head_dim = cfg.dim // cfg.heads
    for i in range(cfg.depth):
        b = f"blocks.{i}"
        linear(f"{b}.q", f"{b}.q", ops.NORM_FRAC, gain=head_dim ** -0.5)
        linear(f"{b}.kv", f"{b}.kv", ops.NORM_FRAC)
        linear(f"{b}.proj", f"{b}.proj")
        linear(f"{b}.mlp.fc1", f"{b}.fc1", ops.NORM_FRAC)
        linear(f"{b}.mlp.fc2", f"{b}.fc2")
        for norm in ("ln1", "ln2"):
            put[f"{b}.{norm}.weight"], put[f"{b}.{norm}.bias"] = torch.ones(cfg.dim), torch.zeros(cfg.dim)
        kv, kv_bias = put[f"{b}.kv.weight"], put[f"{b}.kv.bias"]
        mem, mem_bias = _get_linear(portable, f"{b}.kv_mem", ops.NORM_FRAC, ops.FRAC)
        put[f"{b}.ln_mem.weight"] = (kv * mem).sum(0) / (kv * kv).sum(0).clamp(min=1e-12)  # per column: mem = kv g
        put[f"{b}.ln_mem.bias"] = torch.linalg.lstsq(kv, (mem_bias - kv_bias)[:, None]).solution[:, 0]
    linear("head", "head", ops.NORM_FRAC, ops.LOGIT_FRAC)
    linear("copy_gate", "copy_gate", ops.NORM_FRAC, ops.LOGIT_FRAC)
    put["norm.weight"], put["norm.bias"] = torch.ones(cfg.dim), torch.zeros(cfg.dim)
    missing = set(out) - set(put)
    if missing:
        raise ValueError(f"to_float does not know these context parameters: {sorted(missing)}")
    return {k: put[k].to(out[k].dtype).reshape(out[k].shape) for k in out}
