"""The compiled twins of :mod:`progvc.models.exact_ops` (``exact_kernels.c``), when they are built.

The portable path spends most of its time in elementwise passes over small rows: a row's rounding
(:func:`exact_ops.quantize_rows`) is a dozen tensor operations, an attention's softmax ten, each its
own kernel. The C file does each of them in one pass per row, with the same IEEE-754 operations in
the same order where a result is not exact, so it gives the same values (its header has the
argument; ``tests/test_portable_native.py`` checks it against the tensor path, and the golden token
digests pass on either). ``pip install`` builds it when a C compiler is there (``setup.py``); without
it, or with ``PROGVC_NATIVE=0`` in the environment, the tensor path runs: the same values, slower.

The dense layers' matrix products stay in torch (BLAS); the C passes run between them. The tile-local
attention runs whole in C (:func:`tile_attention`: its products are small, and a call per pass
between them left the second core idle). The large passes are split over ``torch.get_num_threads()``
threads by independent rows or (tile, head) items (a ctypes call releases the GIL), so the split
changes no value. The library is loaded on first use, never at import. Only CPU tensors go
through it; CUDA tensors take the tensor path.

Editing ``exact_kernels.c``: ``pip install -e .`` rebuilds it in place; bump :data:`ABI_VERSION` and
``pv_abi_version()`` together when a signature changes (a library of another version is not used).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

ABI_VERSION = 6
"""``pv_abi_version()`` of the C file this module calls; a library built from another is not used."""

_P, _I = ctypes.c_void_p, ctypes.c_int64


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("progvc.models._exact_kernels")
    if spec is None or not spec.origin:
        return None
    return open_build(spec.origin)


def open_build(path: str | os.PathLike[str]) -> ctypes.CDLL | None:
    """A build of ``exact_kernels.c`` at ``path``, its functions typed; None when it cannot be loaded
    or was built from another :data:`ABI_VERSION`. The installed one is :func:`library`; the tests
    also open builds for one instruction set each (``PV_ONE_TARGET`` in the C file)."""
    try:
        lib = ctypes.CDLL(os.fspath(path))
    except OSError:
        return None
    if lib.pv_abi_version() != ABI_VERSION:
        return None
    signatures = {"pv_quantize_blocks": [_P, _P, _I, _I, _I, _I, _I], "pv_linear_out_f32": [_P, _P, _P, _P, _I, _I],
                  "pv_linear_out_f64": [_P, _P, _P, _P, _I, _I], "pv_normalize_rows": [_P, _P, _I, _I],
                  "pv_gelu": [_P, _P, _P, _P, _I], "pv_attention_weights": [_P, _P, _I, _I, _I, _I, _P, _I],
                  "pv_tile_attention": [_P, _I, _I] + [_P] * 11 + [_I] * 7 + [_P, _I],
                  "pv_rows_max_abs": [_P, _P, _I, _I, _I, _P], "pv_set_blocking": [ctypes.c_int]}
    for name, args in signatures.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = args, None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None when they are not built or ``PROGVC_NATIVE=0``."""
    if os.environ.get("PROGVC_NATIVE", "1") == "0":
        return None
    return _load()


def active(x: torch.Tensor) -> ctypes.CDLL | None:
    """The kernels if x (and the call it is part of) can use them: a CPU tensor, the library built."""
    return library() if x.device.type == "cpu" else None


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


SPLIT_MIN = 1 << 16
"""Elements below which a pass runs on the calling thread (a thread hand-off costs ~20 us)."""


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="progvc-exact")


def _split(run: Callable[[int, int], object], items: int, elements: int) -> None:
    """run(lo, hi) over items 0..items-1, cut in ``torch.get_num_threads()`` contiguous parts when
    the pass is large (``elements`` in all); the parts are independent. The calling thread runs
    the last part itself while the pool runs the others."""
    threads = min(torch.get_num_threads(), items)
    if threads <= 1 or elements < SPLIT_MIN:
        run(0, items)
        return
    cuts = [items * i // threads for i in range(threads + 1)]
    others = [_pool(threads - 1).submit(run, lo, hi) for lo, hi in zip(cuts[:-2], cuts[1:-1], strict=True)]
    run(cuts[-2], cuts[-1])
    for part in others:
        part.result()


def quantize_rows(lib: ctypes.CDLL, x: torch.Tensor, group_dims: int = 1) -> torch.Tensor:
    """:func:`exact_ops.quantize_rows` of float32 x (..., D): q only, contiguous, x's shape. A view
    whose groups are contiguous blocks under at most two outer dimensions (the attention's
    transposed keys) is read in place."""
    inner = x.shape[x.dim() - group_dims:]
    size = int(torch.Size(inner).numel())
    if not _blocks_contiguous(x, group_dims) or x.dim() - group_dims > 2:
        x = x.contiguous()
    outer = list(zip(x.shape[:x.dim() - group_dims], x.stride()[:x.dim() - group_dims], strict=True))
    (n0, s0), (n1, s1) = ([(1, 0)] * 2 + outer)[-2:] if len(outer) <= 2 else [(x.numel() // max(1, size), size), (1, 0)]
    out = torch.empty(x.shape, dtype=torch.float32)
    if n0 == 1:  # cut the threads' work along the dimension that has it
        n0, s0, n1, s1 = n1, s1, 1, 0

    def run(lo: int, hi: int) -> None:
        lib.pv_quantize_blocks(_ptr(x) + 4 * lo * s0, _ptr(out) + 4 * lo * n1 * size, hi - lo, n1, s0, s1, size)
    _split(run, n0, x.numel())
    return out


def _blocks_contiguous(x: torch.Tensor, group_dims: int) -> bool:
    """Whether each group (the last ``group_dims`` dimensions) of x is one contiguous block."""
    expected = 1
    for size, stride in reversed(list(zip(x.shape[-group_dims:], x.stride()[-group_dims:], strict=True))):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def linear_out(lib: ctypes.CDLL, acc: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The end of :func:`exact_ops.linear`: clamp(round(acc * scale) + bias), acc float32 or float64
    (..., N) with a scale of its dtype; float32 out."""
    acc = acc.contiguous()
    out = torch.empty(acc.shape, dtype=torch.float32)
    fn = lib.pv_linear_out_f64 if acc.dtype == torch.float64 else lib.pv_linear_out_f32
    n, width = acc.shape[-1], acc.element_size()
    scale, bias = scale.contiguous(), bias.contiguous()

    def run(lo: int, hi: int) -> None:
        fn(_ptr(acc) + width * lo * n, _ptr(scale), _ptr(bias), _ptr(out) + 4 * lo * n, hi - lo, n)
    _split(run, acc.numel() // max(1, n), acc.numel())
    return out


def normalize_rows(lib: ctypes.CDLL, x: torch.Tensor) -> torch.Tensor:
    """:func:`exact_ops.normalize_rows` of float32 x (..., D)."""
    x = x.contiguous()
    out = torch.empty_like(x)
    d = x.shape[-1]

    def run(lo: int, hi: int) -> None:
        lib.pv_normalize_rows(_ptr(x) + 4 * lo * d, _ptr(out) + 4 * lo * d, hi - lo, d)
    _split(run, x.numel() // max(1, d), x.numel())
    return out


def gelu(lib: ctypes.CDLL, x: torch.Tensor, table: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """:func:`exact_ops.gelu` of float32 x."""
    x, table, slope = x.contiguous(), table.contiguous(), slope.contiguous()
    out = torch.empty_like(x)

    def run(lo: int, hi: int) -> None:
        lib.pv_gelu(_ptr(x) + 4 * lo, _ptr(table), _ptr(slope), _ptr(out) + 4 * lo, hi - lo)
    _split(run, x.numel(), x.numel())
    return out


def attention_weights(lib: ctypes.CDLL, a: torch.Tensor, keep: torch.Tensor | None,
                      exp_table: torch.Tensor) -> torch.Tensor:
    """The middle of :func:`exact_ops.attention`, in place: scores a (B,H,n,m) float32 -> the
    probabilities p = floor(w * c); keep (B,1,1,m) float32 0/1 or None."""
    if not a.is_contiguous():
        a = a.contiguous()
    b, m = a.shape[0], a.shape[-1]
    rows = a.numel() // max(1, m)
    if keep is not None:
        keep = keep.expand(b, 1, 1, m).contiguous()
    table = exp_table.contiguous()

    def run(lo: int, hi: int) -> None:  # any rows: each finds its keep row (rows // b per batch item)
        lib.pv_attention_weights(_ptr(a), None if keep is None else _ptr(keep), lo, hi, m, rows // max(1, b),
                                 _ptr(table), table.shape[0])
    _split(run, rows, a.numel())
    return a


def _row_addresses(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """For (H, N_s, d) float32 tensors laid end to end (rows numbered across them), each row's
    address (int64) and the step in floats from one head's row to the next: the rows are read
    where the projections wrote them, without a concatenated copy."""
    addr, step = [], []
    for x in parts:
        addr.append(x.data_ptr() + 4 * x.stride(1) * np.arange(x.shape[1], dtype=np.int64))
        step.append(np.full(x.shape[1], x.stride(0), dtype=np.int64))
    return torch.from_numpy(np.concatenate(addr)), torch.from_numpy(np.concatenate(step))


def tile_attention(lib: ctypes.CDLL, q: torch.Tensor, keys: list[torch.Tensor], vals: list[torch.Tensor],
                   index: torch.Tensor, keep: torch.Tensor, queries: torch.Tensor, query_ok: torch.Tensor,
                   exp_table: torch.Tensor) -> torch.Tensor:
    """Tile-local attention in one pass per (tile, head): each tile's queries q (H, n, d) over the
    rows ``index`` (tiles, m) int32 of the keys and values ``keys``, ``vals`` (lists of (H, N_s, d),
    rows numbered across them end to end; read in place), ``keep`` (tiles, m) float32 0/1, written
    at the tile's query cells ``queries`` (tiles, Q) int32 where ``query_ok`` (tiles, Q) bool.
    The same values as the tensor path's gather, :func:`exact_ops.attention` tile by tile, and the
    scatter to the tiles' cells: (H, n, d), laid out as q is. Split between threads by (tile, head)
    items, each long enough (a tile's whole attention) to be worth the hand-off."""
    keys = [x if x.stride(-1) == 1 else x.contiguous() for x in keys]
    vals = [x if x.stride(-1) == 1 else x.contiguous() for x in vals]
    if q.stride(-1) != 1:
        q = q.contiguous()
    out = torch.empty_like(q)
    if out.stride() != q.stride():  # a layout empty_like does not keep
        q, out = q.contiguous(), torch.empty(q.shape, dtype=q.dtype)
    index, keep, queries = index.contiguous(), keep.contiguous(), queries.contiguous()
    ok = query_ok.to(torch.uint8).contiguous()
    table = exp_table.contiguous()
    heads, _, d = q.shape
    tiles, m = index.shape
    (key_addr, key_hs), (val_addr, val_hs) = _row_addresses(keys), _row_addresses(vals)
    rows = key_addr.shape[0]
    key_max, val_max = torch.empty(heads, rows), torch.empty(heads, rows)
    for addr, hs, top in ((key_addr, key_hs, key_max), (val_addr, val_hs, val_max)):
        lib.pv_rows_max_abs(_ptr(addr), _ptr(hs), rows, heads, d, _ptr(top))
    pointers = [_ptr(x) for x in (key_addr, key_hs, val_addr, val_hs, key_max, val_max, index, keep, queries, ok,
                                  out)]

    def run(lo: int, hi: int) -> None:
        lib.pv_tile_attention(_ptr(q), q.stride(0), q.stride(1), *pointers, lo, hi, heads, rows, m,
                              queries.shape[1], d, _ptr(table), table.shape[0])
    _split(run, tiles * heads, tiles * heads * queries.shape[1] * m)
    return out
