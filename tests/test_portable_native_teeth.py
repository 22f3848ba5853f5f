"""The kernel tests have teeth: the C kernels built with -ffast-math (reciprocal division, FMA,
reassociation) fail tests/test_portable_native.py's rows that a reciprocal division rounds apart.
Before those rows, such a build passed every kernel test."""

from __future__ import annotations

import pytest
import torch

from benchmarks.kernel_builds import build_kernels
from progvc.models import exact_native as native
from progvc.models import exact_ops as ops

from .test_portable_native import RECIPROCAL_ROWS, compiler_here


def test_a_fast_math_build_gets_a_row_wrong(tmp_path, monkeypatch):
    if not compiler_here():
        pytest.skip("no C compiler here")
    lib = native.open_build(build_kernels(["-O3", "-std=c11", "-ffast-math"], tmp_path / "fast_math.so"))
    assert lib is not None
    monkeypatch.setenv("PROGVC_NATIVE", "0")  # the tensor path: what every build must give
    wrong = [not torch.equal(native.normalize_rows(lib, x), ops.normalize_rows(x))
             for x in (torch.tensor([row], dtype=torch.float32) for row in RECIPROCAL_ROWS)]
    assert any(wrong)
