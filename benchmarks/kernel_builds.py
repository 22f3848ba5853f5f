"""Decode seconds of one stream under each build of the C kernels, and whether the frames agree.

::

    python -m benchmarks.kernel_builds [--model progvc-small-v5] [--size cif] [--frames 2] [--json FILE]

The installed library dispatches to one clone of ``exact_kernels.c`` per CPU (target_clones). This
compiles the file for one target at a time (``PV_ONE_TARGET``, as tests/test_portable_native.py
does; targets this CPU cannot run are left out), decodes the same stream through each build and
through the tensor path (``PROGVC_NATIVE=0``), and reports the seconds and whether every build gave
the installed build's frames. Blocks of the tile attention can be forced (``--blocking narrow`` or
``wide``; ``pv_set_blocking``). Measured with it: benchmarks/README.md, "Decode speed on an AVX2 CPU".
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .machine import cpu_flags, describe
from .speed import SIZES, load_codec, pattern

SOURCE = Path(__file__).resolve().parents[1] / "progvc" / "models" / "exact_kernels.c"
SETUP_FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-fast-math"]
"""setup.py's compile flags (tests/test_portable_native.py holds them equal to setup.py's)."""
TARGETS = {"avx512f": ["-mavx512f"], "avx2": ["-mavx2"], "avx2+fma": ["-mavx2", "-mfma"],
           "x86-64": ["-march=x86-64", "-mtune=generic"], "native": ["-march=native"]}
BLOCKING = {"by-cpu": -1, "narrow": 0, "wide": 1}


def compiler() -> list[str]:
    """Python's own C compiler command (what pip builds extensions with)."""
    return (sysconfig.get_config_var("CC") or "cc").split()


def build_kernels(flags: list[str], out: Path) -> Path:
    """``exact_kernels.c`` compiled with ``flags`` for one target (``PV_ONE_TARGET``: no clones) into
    library ``out``. The tests build each clone's code and a fast-math build with it."""
    subprocess.run([*compiler(), *flags, "-DPV_ONE_TARGET", "-shared", "-fPIC", str(SOURCE), "-o", str(out), "-lm"],
                   check=True, capture_output=True)
    return out


def runnable(target: str, flags: set[str]) -> bool:
    """Whether this machine runs ``target``'s code (the x86 ones only on x86-64, each with its features)."""
    if target == "native":
        return True
    need = {"avx512f": {"avx512f"}, "avx2": {"avx2"}, "avx2+fma": {"avx2", "fma"}}.get(target, set())
    return platform.machine() == "x86_64" and need <= flags


def build(target: str, folder: Path) -> Path:
    """The code of ``target``'s clone alone, with setup.py's flags, in ``folder``."""
    return build_kernels([*SETUP_FLAGS, "-Wno-psabi", *TARGETS[target]],
                         folder / f"exact_kernels_{target.replace('+', '_')}.so")


def timed(codec, data: bytes) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    frames = codec.decode(data)
    return time.perf_counter() - start, frames


def measure(model: str, size: str, frames: int, blocking: str) -> dict:
    """Seconds of each build's decode of one stream (after one untimed decode on the installed build)."""
    from progvc.models import exact_native as native

    codec = load_codec(model, "cpu")
    w, h = SIZES[size]
    data = codec.encode(pattern(frames, w, h))
    codec.decode(data)
    original = native._load
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        flags = cpu_flags()
        libs = {"installed": original()} | {t: native.open_build(build(t, Path(tmp)))
                                            for t in TARGETS if runnable(t, flags)}
        try:
            for name, lib in [*libs.items(), ("tensor path", None)]:
                if lib is None and name != "tensor path":
                    rows.append({"build": name, "error": "did not load"})
                    continue
                native._load = lambda lib=lib: lib  # None: the tensor path
                if lib is not None:
                    lib.pv_set_blocking(BLOCKING[blocking])
                seconds, out = timed(codec, data)
                reference = out if reference is None else reference
                rows.append({"build": name, "seconds": seconds, "same_frames": bool(np.array_equal(out, reference))})
                if lib is not None:
                    lib.pv_set_blocking(-1)
        finally:
            native._load = original
    return {"model": model, "size": size, "frames": frames, "blocking": blocking, "machine": describe(),
            "builds": rows}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="progvc-small-v5")
    ap.add_argument("--size", default="cif", choices=sorted(SIZES))
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--blocking", default="by-cpu", choices=sorted(BLOCKING))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    result = measure(args.model, args.size, args.frames, args.blocking)
    for row in result["builds"]:
        if "error" in row:
            print(f"{row['build']:>12}: {row['error']}")
        else:
            print(f"{row['build']:>12}: {row['seconds']:.2f} s, frames {'same' if row['same_frames'] else 'DIFFER'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
