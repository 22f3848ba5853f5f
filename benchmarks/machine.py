"""What machine a timing was taken on, for the JSON of the speed benchmarks.

Decode speed differs by machine kind far more than by commit (v4 decodes CIF at 1.60 fps on the
AVX-512 machine of earlier sessions and 0.66 fps on an AVX2 one), and the portable kernels take
other code paths on each (benchmarks/README.md, "Decode speed on an AVX2 CPU"), so a timing that
does not name its machine cannot be compared with another.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def describe() -> dict[str, Any]:
    """The CPU, its core count, PyTorch's version, kernel level and threads, and whether bfloat16 is
    native there (the decoder's synthesis and the encoder's refinement switch on it)."""
    import torch

    from progvc.runtime.devices import bfloat16_pays

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "native_bfloat16": bfloat16_pays(torch.device("cpu"))}
