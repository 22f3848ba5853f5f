"""Device choice: CUDA when present and not asked otherwise, CPU everywhere else."""

from __future__ import annotations

import torch

from .errors import DeviceError


def resolve_device(device: str | torch.device | None, *, option: str = "device=") -> torch.device:
    """``None`` -> cuda if available else cpu; an unavailable or unknown device raises DeviceError.

    ``option`` is how the caller's user spells the choice, so the message quotes what they typed:
    ``"device="`` (Python, the default: ``device='cuda'``) or a flag such as ``"--device"``.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def spelled(value: object) -> str:
        return f"{option}{value!r}" if option.endswith("=") else f"{option} {value}"

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {spelled(device)}; use {spelled('cpu')}, {spelled('cuda')} or "
                          f"{spelled('cuda:N')}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{spelled(device)} requested but CUDA is not available on this machine; "
                          f"use {spelled('cpu')}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"{spelled(device)} does not exist: this machine has {torch.cuda.device_count()} "
                          f"CUDA devices, cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device type {dev.type!r} ({spelled(device)}) is not supported; use "
                          f"{spelled('cpu')} or {spelled('cuda')}")
    return dev


def bfloat16_pays(device: torch.device) -> bool:
    """Whether bfloat16 convolutions pay on ``device``: on a CPU with AVX-512 BF16 or AMX, where
    oneDNN's bf16 convolutions run about twice as fast as float32 ones or more (benchmarks/README.md,
    "Refinement in bfloat16", "The decoder's synthesis in bfloat16"). Elsewhere bf16 is emulated and
    slower. CUDA keeps float32 (bf16 there is not measured). The synthesis' two users each have a
    switch of their own (:mod:`progvc.models.tokenizer`: ``search_in_bfloat16``, ``synthesis_in_bfloat16``)."""
    if device.type != "cpu":
        return False
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe is not None and probe() for probe in probes)
