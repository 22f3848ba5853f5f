"""Device choice: CUDA when present and not asked otherwise, CPU everywhere else."""

from __future__ import annotations

import torch

from .errors import DeviceError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda if available else cpu; an unavailable or unknown device raises DeviceError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'")
    return dev
