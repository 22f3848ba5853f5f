"""Determinism settings live here, applied around coding calls and restored afterwards.

Importing progvc changes no torch flag (DESIGN.md rule 7). :func:`coding_mode` pins what makes
logits reproducible: no TF32, deterministic cuDNN without autotuning, and one attention backend
(the flash kernel of ``scaled_dot_product_attention``) whatever else is installed. On CPU the flash
kernel gives bitwise the same logits with 1, 2 or 4 threads (checked like the math kernel was) and
never materialises the attention matrix: 8 CIF frames decoded in 8.9 s instead of 36.7 s.
:func:`pinned_threads` runs the probability path on one CPU thread: BLAS kernels split their
reductions by thread count, so logits computed with 2 threads differ in the last bits from logits
computed with 1, and a stream encoded on one machine would not decode on another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


@contextmanager
def coding_mode() -> Iterator[None]:
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


@contextmanager
def pinned_threads(device: torch.device, n: int = 1) -> Iterator[None]:
    """Run torch's CPU ops on ``n`` threads (restored afterwards); a no-op on CUDA devices."""
    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
