"""Perceptual rate-quality benchmarks of progvc against conventional codecs.

One command (``python -m benchmarks.rd CLIPS --out DIR`` or ``progvc bench``) produces
``results.json`` (one schema for every codec, :mod:`progvc.bench.results`), ``summary.md`` with
BD-rates (:mod:`progvc.bench.bdrate`, :mod:`progvc.bench.report`) and plots.

Modules: :mod:`~progvc.bench.rd` (the driver), :mod:`~progvc.bench.metrics` (PSNR, MS-SSIM, VMAF),
:mod:`~progvc.bench.perceptual` (LPIPS, DISTS, FID/KID from user-given weights),
:mod:`~progvc.bench.baselines` (x264, x265, SVT-AV1, VP9 through PyAV). Nothing heavy is imported
here; the names below load their module on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "run_benchmark": "rd",
    "main": "rd",
    "bd_rate": "bdrate",
    "bd_quality": "bdrate",
    "SequenceMetrics": "metrics",
    "encode_decode": "baselines",
    "ResultsStore": "results",
    "validate": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'progvc.bench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
