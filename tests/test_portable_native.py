"""The compiled kernels (progvc/models/exact_kernels.c) give the tensor path's values bit for bit.

Each exact operation is run twice on the same seeded inputs, once through the C kernels and once
with ``PROGVC_NATIVE=0`` (the tensor path, which tests/test_portable.py holds to the NumPy
reference), and the results must be identical: wide and narrow rows, negative values, zero rows,
float32 and float64 products, transposed views, key masks. Then a whole GOP's logits, and the pinned
portable streams end to end.

The installed library dispatches to one clone of its hot loops (avx512f, avx2 or default) by the
CPU it runs on, so a machine exercises only its own. Every test therefore also runs on the C file
built for each instruction set alone (``PV_ONE_TARGET``, with setup.py's flags), where this CPU can
run it: the code an AVX2-only or a baseline x86-64 machine runs, checked here. The tests
skip when the kernels are not built and no C compiler is here (pip could not have built them);
with a compiler on the PATH (Python's own ``CC``), or ``PROGVC_REQUIRE_NATIVE=1``, a missing build
fails: ``pip install -e .`` should have made it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
from pathlib import Path

import pytest
import torch

import progvc
from benchmarks.kernel_builds import BLOCKING, SETUP_FLAGS, build, compiler, runnable
from benchmarks.machine import cpu_flags
from progvc.models import exact_native as native
from progvc.models import exact_ops as ops
from progvc.models import portable

from . import test_golden as golden
from .helpers import portable_pair
from .test_portable import coded_logits, random_tokens


def compiler_here() -> bool:
    return shutil.which(compiler()[0]) is not None


ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("avx512f", "avx2", "x86-64")
"""Each clone of the installed library (target_clones avx512f, avx2, default), built alone
(``benchmarks.kernel_builds.TARGETS`` holds their flags)."""


def clones_here() -> bool:
    """Whether pip's build has target clones here (the C file's CLONES condition)."""
    return platform.system() == "Linux" and platform.machine() == "x86_64" and "gcc" in Path(compiler()[0]).name


@functools.cache
def one_target_build(target: str, folder: Path) -> Path:
    """``exact_kernels.c`` built for ``target`` alone (``PV_ONE_TARGET``): the code of one clone."""
    return build(target, folder)


@pytest.fixture(scope="session")
def build_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kernels")


@pytest.fixture(autouse=True, params=["installed", *TARGETS])
def built(request, monkeypatch, build_folder):
    """Every test runs on the installed kernels, then on each clone's code built alone: this machine's
    dispatch runs only its best clone, and a stream must decode the same on a CPU that gets another."""
    if native.library() is None:
        if os.environ.get("PROGVC_NATIVE") == "0":
            pytest.skip("PROGVC_NATIVE=0: the C kernels are off")
        if os.environ.get("PROGVC_REQUIRE_NATIVE") == "1" or compiler_here():
            pytest.fail("progvc's C kernels are not built although a C compiler is here: run `pip install -e .`")
        pytest.skip("progvc's C kernels are not built (no C compiler when installing): the tensor path runs")
    target = request.param
    if target == "installed":
        return
    if not clones_here():
        pytest.skip(f"{target}: the installed kernels have no target clones on this platform")
    if not runnable(target, cpu_flags()):
        pytest.skip(f"{target}: this CPU cannot run that clone")
    lib = native.open_build(one_target_build(target, build_folder))
    assert lib is not None, f"the {target} build did not load"
    monkeypatch.setattr(native, "_load", lambda: lib)


def test_one_target_builds_use_setups_flags():
    setup = (ROOT / "setup.py").read_text()
    assert all(f'"{flag}"' in setup for flag in SETUP_FLAGS)


def both(monkeypatch, fn, *args):
    """fn(*args) through the kernels, then through the tensor path."""
    got = fn(*args)
    monkeypatch.setenv("PROGVC_NATIVE", "0")
    assert native.library() is None
    want = fn(*args)
    monkeypatch.delenv("PROGVC_NATIVE")
    return got, want


def wide_rows(gen: torch.Generator, rows: int, d: int) -> torch.Tensor:
    """Integer rows whose magnitudes span 1 .. 2**22, a zero row and an all-negative row among them."""
    x = (torch.randn(rows, d, generator=gen) * torch.logspace(0, 6.6, rows)[:, None]).round()
    x[1] = 0
    x[2] = -x[2].abs() - 1
    return x.clamp(-ops.VALUE_MAX, ops.VALUE_MAX)


def test_row_rounding_and_norm_are_the_tensor_paths(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    for d in (1, 7, 32, 192, 300):
        x = wide_rows(gen, 9, d)
        got, want = both(monkeypatch, lambda t: ops.normalize_rows(t), x)
        assert torch.equal(got, want), f"normalize_rows, d = {d}"
        lib = native.library()
        assert torch.equal(native.quantize_rows(lib, x), ops.quantize_rows(x)[0]), f"quantize_rows, d = {d}"
    blocks = wide_rows(gen, 24, 40).view(4, 6, 5, 8)
    view = blocks.transpose(0, 1)  # groups stay contiguous blocks: read in place
    assert torch.equal(native.quantize_rows(native.library(), view, group_dims=2),
                       ops.quantize_rows(view, group_dims=2)[0])


RECIPROCAL_ROWS = [
    [-569, -568, 379, -1352, -500, 2755, -1920, 1034, -2233, -508, 641, -2981, -2690, 1552, 119, -2258],
    [459, 2063, 1271, -2847, -1380, 340, -2532, 1467, 1434, 2863, 2339, 1884, -2579, -517, -2990, 8, 2300, 2371, -897,
     -2748, 826, 1748, 1323, -38, 1149, 2596, 2496],
    [464, 2063, 1271, -2847, -1380, 340, -2532, 1467, 1434, 2863, 2339, 1884, -2579, -517, -2990, 8, 2300, 2371, -897,
     -2748, 826, 1748, 1323, -38, 1149, 2596, 2496],
    [-510, -1421, -2433, -2874, -2601, -2036, -320, -1575, -873, -2220, 712, 1630, 2352, 144, 2865, 118, 1562, -2678,
     -1398, 1725, -2928, 485, 2991, -2281, 1374, -394, -2139, -1518],
    [130, 1603, -1675, -1762, -1845, -328, -920, 1265, -1522, 343, 583, 1074, 2433, -2706, -1150, 2188, 2941, -392,
     -1839, -2227, 2543, 624, -1946, 893, 1221, -723, -378, 748, -565, 1520, 2791, 1165],
]
"""Rows whose normalisation holds an exact half, c * 2**8 / sd = k + 1/2 with sd = 512 m (m not a power of
two), that c * 2**8 * (1 / sd) and c * (2**8 / sd) round to the other integer: a build with
-freciprocal-math (part of -ffast-math) gets them wrong. Random rows rarely hold one (5 of the 360 exact
halves a seeded search of 11.6 million rows of 4..32 integers in [-3000, 3000] found)."""


def rounds_apart_by_reciprocal(row: list[int]) -> bool:
    """Whether ``row``'s normalisation (exact_ops.normalize_rows' float64 steps, in NumPy) rounds
    differently when its division by sd is a multiplication by a reciprocal."""
    import numpy as np

    x = np.array(row, dtype=np.float64)
    c = x * len(x) - x.sum()  # |c| < 2**20 here: no shift
    sd = max(1.0, np.floor(np.sqrt(np.floor((c * c).sum() / len(x)))))
    exact = np.rint(c * 256 / sd)
    return bool((np.rint(c * 256 * (1 / sd)) != exact).any() and (np.rint(c * (256 / sd)) != exact).any())


def test_norm_divides_where_a_reciprocal_would_round_apart(monkeypatch):
    assert all(rounds_apart_by_reciprocal(row) for row in RECIPROCAL_ROWS)  # the rows have teeth
    for row in RECIPROCAL_ROWS:
        got, want = both(monkeypatch, ops.normalize_rows, torch.tensor([row], dtype=torch.float32))
        assert torch.equal(got, want), row


@pytest.mark.parametrize("k", [24, 192, 512, 600])
def test_linear_layers_are_the_tensor_paths(monkeypatch, k):
    """float32 products (k <= 256) and float64 ones (k > 256, in chunks), their rescale and clamp."""
    gen = torch.Generator().manual_seed(k)
    x = wide_rows(gen, 11, k)
    w = torch.randint(-127, 128, (k, 48), generator=gen).float()
    scale = torch.rand(48, generator=gen, dtype=torch.float64) * 2.0 ** -torch.randint(8, 30, (48,), generator=gen)
    scale = scale if k > ops.CHUNK else scale.float()
    bias = torch.randint(-5000, 5000, (48,), generator=gen).float()
    got, want = both(monkeypatch, ops.linear, x, w, scale, bias)
    assert torch.equal(got, want)


def test_gelu_is_the_tensor_paths(monkeypatch):
    _, codec = portable_pair()
    gen = torch.Generator().manual_seed(2)
    h = torch.cat([(torch.randn(4000, generator=gen) * 6000).round(), torch.arange(-9000.0, 9000.0, 7.0)])
    got, want = both(monkeypatch, ops.gelu, h, *codec.context._gelu_tables())
    assert torch.equal(got, want)


def exp_table() -> torch.Tensor:
    n = portable.attention_exp_entries()
    return torch.tensor([round(2 ** 15 * math.exp(-j / (1 << ops.SCORE_FRAC))) for j in range(n - 1)] + [0.0])


@pytest.mark.parametrize("keys", [1, 37, 700])
def test_attention_is_the_tensor_paths(monkeypatch, keys):
    """Dense and masked attention (a masked key repeats a kept one, as the tiles' padding does)."""
    gen = torch.Generator().manual_seed(keys)
    b, h, n, d = 3, 2, 19, 32

    def ints(*shape, scale):
        return (torch.randn(*shape, generator=gen) * scale).round()

    q, k, v = ints(b, h, n, d, scale=900), ints(b, h, keys, d, scale=2500), ints(b, h, keys, d, scale=4000)
    keep = (torch.rand(b, 1, 1, keys, generator=gen) > 0.3).float()
    keep[..., 0] = 1
    hidden = keep[:, 0, 0] == 0  # (b, keys)
    k = torch.where(hidden[:, None, :, None], k[:, :, :1], k)
    table = exp_table()
    for mask in (None, keep):
        got, want = both(monkeypatch, ops.attention, q, k, v.transpose(0, 1).contiguous().transpose(0, 1), table,
                         mask)
        assert torch.equal(got, want), f"keep = {mask is not None}"


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("context", [{}, {"local_from": 2, "local_tile": 2, "local_halo": 1}])
def test_a_gops_logits_are_the_tensor_paths(monkeypatch, context, threads):
    """Every (t, k) block's logits of a seeded tiny portable model, dense and tile-local attention,
    with the kernels' passes on one thread and cut between three (every pass, however small)."""
    monkeypatch.setattr(native, "SPLIT_MIN", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_gop_logits(monkeypatch, context)
    finally:
        torch.set_num_threads(before)


def check_gop_logits(monkeypatch, context):
    _, codec = portable_pair(4, **context)
    grids = codec.tokenizer.grids(24, 40)
    tokens = random_tokens(codec, grids, 3, 4)
    got, want = both(monkeypatch, coded_logits, codec, tokens, grids)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        for t, (a, b) in enumerate(zip(g, w, strict=True)):
            assert torch.equal(a, b), f"logits of scale {k}, frame {t}"


@pytest.fixture(params=["by-cpu", "narrow", "wide"])
def blocking(request):
    """pv_tile_attention's products in the blocks this CPU gets, then forced narrow (8-float vectors)
    and wide (16-float vectors): every blocking gives the same exact sums, on every build."""
    lib = native.library()
    lib.pv_set_blocking(BLOCKING[request.param])
    yield request.param
    lib.pv_set_blocking(-1)


@pytest.mark.parametrize("d", [16, 24, 32])
def test_tile_attention_is_the_tensor_paths_tile_by_tile(monkeypatch, d, blocking):
    """The whole tile-local attention in one C pass equals, tile by tile, the tensor path's gather and
    :func:`ops.attention`: queries padded (a tile's unused cells), keys repeated across tiles and a
    padding row that no tile keeps, sizes that fill none of the kernel's blocks (5 queries, 37 or 130
    keys, d not a multiple of 16), keys read in place from three pieces, the (tile, head) items cut
    between three threads, and each blocking of the products."""
    gen = torch.Generator().manual_seed(d)
    heads, n, rows, tiles, nq = 3, 23, 60, 4, 5
    q = (torch.randn(heads, n, d, generator=gen) * 900).round()
    keys = wide_rows(gen, heads * rows, d).view(heads, rows, d)
    vals = wide_rows(gen, heads * rows, d).view(heads, rows, d)
    keys[:, -1], vals[:, -1] = keys[:, 0], 0  # the padding row: the first key, a zero value
    queries = torch.randperm(n, generator=gen)[:tiles * nq].view(tiles, nq).to(torch.int32)
    query_ok = torch.rand(tiles, nq, generator=gen) > 0.2
    queries[~query_ok] = 0  # a padded cell points at cell 0, which another tile may own
    table = exp_table()
    for m in (37, 130):
        index = torch.randint(0, rows - 1, (tiles, m), generator=gen, dtype=torch.int32)
        index[:, -3:] = rows - 1
        keep = (index != rows - 1).float()
        monkeypatch.setattr(native, "SPLIT_MIN", 0)
        before = torch.get_num_threads()
        torch.set_num_threads(3)
        try:
            # keys and values in pieces, heads side by side in a row, as the projections lay them out
            pieces = [x.transpose(0, 1).contiguous().transpose(0, 1).split([7, 40, 13], dim=1) for x in (keys, vals)]
            got = native.tile_attention(native.library(), q, *pieces, index, keep, queries, query_ok, table)
        finally:
            torch.set_num_threads(before)
        monkeypatch.setenv("PROGVC_NATIVE", "0")
        for t in range(tiles):
            cells = queries[t].long()
            at = index[t].long()
            want = ops.attention(q[None, :, cells], keys[None, :, at], vals[None, :, at], table,
                                 keep[t, None, None, None])
            ok = query_ok[t]
            assert torch.equal(got[:, cells[ok]], want[0][:, ok]), f"m = {m}, tile {t}"
        monkeypatch.delenv("PROGVC_NATIVE")


@pytest.mark.parametrize("name", ["tiny-portable", pytest.param("progvc-small-v5", marks=pytest.mark.weights)])
def test_golden_portable_streams_decode_and_encode_the_same_on_each_build(name):
    """End to end on each build: the pinned stream decodes to its golden tokens, and encoding its clip
    (the RD token choice asks the context model) gives the pinned bytes where the float analysis is
    the golden machine's (tests/test_golden.py)."""
    pinned = name == "tiny-portable"
    codec = golden.pinned_tiny_portable() if pinned else progvc.Codec.from_pretrained(name, device="cpu")
    stored = (golden.GOLDEN / f"{name}.pvc").read_bytes()
    index = json.loads((golden.GOLDEN / "golden.json").read_text())
    assert golden._tokens_digest(codec, stored) == index[name]["tokens"]
    if golden.made_on(index, name) == golden.MACHINE:
        clip, options = golden.portable_case(name)
        assert codec.encode(clip, **options) == stored
