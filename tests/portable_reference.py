"""An independent reference of the portable probability path in plain NumPy.

It re-implements, from the rules in ``progvc.models.exact_ops`` and ``progvc.models.portable``'s
docstrings, everything between a GOP's tokens and the range coder's tables: the integer f_hat,
query and memory elements, the blocks (integer layer norm, linear layers, GELU table, attention),
the head with its copy gate and the frequency tables, for dense attention (the tiny test config).
Integers are int64 and Python ints; the two steps the rules define as one correctly rounded float
operation (a product's rescaling, the attention's normalising factor) use NumPy float32/float64
scalars of the same IEEE operations. Only the exact tables (resampling matrices, positions, the
weights file's lookup tables) are shared with the library.
"""

from __future__ import annotations

import math

import numpy as np

from progvc.models import exact_geometry as geo
from progvc.models import exact_ops as ops


def round_half_even(num: np.ndarray, den: int | np.ndarray) -> np.ndarray:
    """round(num / den) to the nearest integer, ties to even, for integer arrays (den > 0)."""
    num, den = np.asarray(num, dtype=np.int64), np.asarray(den, dtype=np.int64)
    q, r = np.divmod(num, den)
    twice = 2 * r
    up = (twice > den) | ((twice == den) & (q % 2 == 1))
    return q + up


def bit_length(m: np.ndarray) -> np.ndarray:
    return np.array([int(v).bit_length() for v in np.ravel(m)], dtype=np.int64).reshape(np.shape(m))


def quantize(x: np.ndarray, axes: tuple[int, ...] = (-1,)) -> tuple[np.ndarray, np.ndarray]:
    """(q, e): q integers |q| <= 512 with x ~ q * 2**e, e per group over ``axes``."""
    e = np.maximum(bit_length(np.abs(x).max(axis=axes, keepdims=True)) - ops.ACT_BITS, 0)
    return round_half_even(x, np.left_shift(1, e)), e


def linear(x: np.ndarray, layer: dict[str, np.ndarray]) -> np.ndarray:
    q, e = quantize(x)
    acc = (q @ layer["weight"].T.astype(np.int64)) << e  # exact integers
    scale = (layer["mult"].astype(np.float64) * 2.0 ** -layer["shift"].astype(np.float64))
    if layer["weight"].shape[1] > ops.CHUNK:
        y = np.round(acc.astype(np.float64) * scale)
    else:
        y = np.round(acc.astype(np.float32) * scale.astype(np.float32))
    return np.clip(y.astype(np.int64) + layer["bias"], -ops.VALUE_MAX, ops.VALUE_MAX)


def normalize(x: np.ndarray) -> np.ndarray:
    d = x.shape[-1]
    c = d * x - x.sum(-1, keepdims=True)
    e = np.maximum(bit_length(np.abs(c).max(-1, keepdims=True)) - 20, 0)
    c = round_half_even(c, np.left_shift(1, e))
    var = (c * c).sum(-1, keepdims=True) // d
    sd = np.maximum(np.vectorize(math.isqrt)(var), 1)
    return round_half_even(c << ops.NORM_FRAC, sd)


def gelu(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    step = ops.FRAC - ops.GELU_STEP_BITS
    u = np.clip(x - ops.GELU_LO * (1 << ops.FRAC), 0, (ops.GELU_HI - ops.GELU_LO) * (1 << ops.FRAC) - 1)
    i = u >> step
    y = table[i] + (((table[i + 1] - table[i]) * (u - (i << step))) >> step)
    return np.where(x >= ops.GELU_HI * (1 << ops.FRAC), x, y)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, exp_table: np.ndarray) -> np.ndarray:
    """q (H,n,d), k, v (H,m,d) integers -> (H,n,d)."""
    qq, eq = quantize(q)
    kq, ek = quantize(k, (-2, -1))
    vq, ev = quantize(v, (-2, -1))
    a = (qq << eq) @ np.swapaxes(kq << ek, -1, -2)  # scores in units of 2**-(2 FRAC)
    t = (a.max(-1, keepdims=True) - a) >> (2 * ops.FRAC - ops.SCORE_FRAC)
    w = exp_table[np.minimum(t, len(exp_table) - 1)]
    c = (np.float64(1 << ops.PROB_BITS) / w.sum(-1, keepdims=True).astype(np.float64)
         * np.float64(1 - 2.0 ** -20)).astype(np.float32)
    p = np.floor(w.astype(np.float32) * c).astype(np.int64)
    return round_half_even((p @ vq) << ev, 1 << ops.PROB_BITS)


def counts(logits: np.ndarray, temperature_index: int, table: np.ndarray) -> np.ndarray:
    d = ((logits.max(-1, keepdims=True) - logits) * 10) // (temperature_index + 1)
    w = table[np.minimum(d, len(table) - 1)]  # the table ends with a 0 that every larger d would read
    r = (((1 << ops.TABLE_TOTAL_BITS) - logits.shape[-1]) << ops.TABLE_SHIFT) // w.sum(-1, keepdims=True)
    return (w * r) >> ops.TABLE_SHIFT  # + 1 below


class ReferenceModel:
    """The portable context model's coding pass, from its state dict (tensors -> NumPy int64)."""

    def __init__(self, state: dict, heads: int, window: int, n_phi: int) -> None:
        self.s = {k: v.cpu().numpy().astype(np.int64) for k, v in state.items()}
        self.heads, self.window, self.n_phi = heads, window, n_phi
        self.depth = len({k.split(".")[1] for k in self.s if k.startswith("blocks.")})

    def layer(self, name: str) -> dict[str, np.ndarray]:
        return {p: self.s[f"{name}.{p}"] for p in ("weight", "mult", "shift", "bias")}

    # -- the integer f_hat ------------------------------------------------------------------------
    def embed(self, tokens: np.ndarray, k: int, grids: list) -> np.ndarray:
        """(h_k, w_k) tokens -> (C, h, w) contribution."""
        x = np.moveaxis(self.s["codebook"][tokens], -1, 0)  # (C, h_k, w_k)
        (h, w), unit = grids[-1], 1 << geo.RESIZE_FRAC
        if x.shape[1:] != (h, w):
            rows = geo.bicubic_matrix(x.shape[1], h).numpy().astype(np.int64)
            cols = geo.bicubic_matrix(x.shape[2], w).numpy().astype(np.int64)
            x = round_half_even(np.einsum("ij,cjk->cik", rows, x), unit)
            x = round_half_even(np.einsum("cik,lk->cil", x, cols), unit)
        j = min(self.n_phi - 1, int(k / max(1, len(grids) - 1) * self.n_phi))
        weight = self.s["phi_weight"][j].reshape(x.shape[0], x.shape[0], 3, 3)
        pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        acc = np.zeros_like(x) + self.s["phi_bias"][j][:, None, None]
        for dy in range(3):
            for dx in range(3):
                acc += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], pad[:, dy:dy + h, dx:dx + w])
        return np.clip(round_half_even(acc, 1 << 14), -ops.VALUE_MAX, ops.VALUE_MAX)

    @staticmethod
    def down(x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """(C, H, W) -> (h*w, C) area-averaged."""
        if x.shape[1:] != tuple(grid):
            rows, n_rows = (a.numpy() for a in geo.area_matrix(x.shape[1], grid[0]))
            cols, n_cols = (a.numpy() for a in geo.area_matrix(x.shape[2], grid[1]))
            total = np.einsum("ij,cjk,lk->cil", rows.astype(np.int64), x, cols.astype(np.int64))
            x = round_half_even(total, (n_rows[:, None] * n_cols[None, :]).astype(np.int64))
        return x.reshape(x.shape[0], -1).T

    # -- elements and blocks ------------------------------------------------------------------------
    def where(self, k: int, grid: tuple[int, int], dim: int) -> np.ndarray:
        pos = geo.grid_positions(tuple(grid), dim).numpy().astype(np.int64)
        return np.clip(self.s["scale_emb"][k] + pos, -ops.VALUE_MAX, ops.VALUE_MAX)

    def query(self, f_prev: np.ndarray | None, k: int, grid: tuple[int, int],
              prev_mem: np.ndarray | None) -> np.ndarray:
        dim = self.s["sos"].shape[0]
        x = (np.broadcast_to(self.s["sos"], (grid[0] * grid[1], dim)) if f_prev is None
             else linear(self.down(f_prev, grid), self.layer("in_proj")))
        x = np.clip(x + self.where(k, grid, dim), -ops.VALUE_MAX, ops.VALUE_MAX)
        extra = self.s["intra"] if prev_mem is None else linear(prev_mem, self.layer("prev_proj"))
        return np.clip(x + extra, -ops.VALUE_MAX, ops.VALUE_MAX)

    def memory(self, tokens: np.ndarray, f_upto: np.ndarray, k: int, grid: tuple[int, int]) -> np.ndarray:
        e = self.s["codebook"][tokens.reshape(-1)]
        m = linear(np.concatenate([e, self.down(f_upto, grid)], axis=1), self.layer("mem_proj"))
        return np.clip(m + self.where(k, grid, m.shape[1]), -ops.VALUE_MAX, ops.VALUE_MAX)

    def split(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], self.heads, -1).transpose(1, 0, 2)

    def kv(self, h: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        y = linear(h, self.layer(name))
        return self.split(y[:, :y.shape[1] // 2]), self.split(y[:, y.shape[1] // 2:])

    def logits(self, x: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        h = normalize(x)
        out = linear(h, self.layer("head"))
        if prev is not None:
            out[np.arange(len(out)), prev] += linear(h, self.layer("copy_gate"))[:, 0]
        return np.clip(out, -ops.VALUE_MAX, ops.VALUE_MAX)

    # -- a GOP in coding order ----------------------------------------------------------------------
    def gop(self, tokens: list[np.ndarray], grids: list) -> list[list[np.ndarray]]:
        """tokens[k][t] (h_k, w_k) -> integer logits [k][t] (n_k, V) at LOGIT_FRAC, as coding makes them."""
        n_frames, c = len(tokens[0]), self.s["codebook"].shape[1]
        f_hat = [np.zeros((c, *grids[-1]), dtype=np.int64) for _ in range(n_frames)]
        own = [[] for _ in range(n_frames)]  # own[t][j][b] = (k, v)
        mem = [[] for _ in range(n_frames)]  # mem[t][j]
        out = []
        for k, grid in enumerate(grids):
            row = []
            for t in range(n_frames):
                lags = [lag for lag in range(1, self.window + 1) if t - lag >= 0]
                x = self.query(f_hat[t] if k > 0 else None, k, grid, mem[t - 1][k] if lags else None)
                keys = []
                for b in range(self.depth):
                    blk = f"blocks.{b}"
                    h = normalize(x)
                    q = self.split(linear(h, self.layer(f"{blk}.q")))
                    kb, vb = self.kv(h, f"{blk}.kv")
                    keys.append((kb, vb))
                    ks = [own[t][j][b][0] for j in range(k)] + [kb]
                    vs = [own[t][j][b][1] for j in range(k)] + [vb]
                    for lag in lags:
                        for j in range(k + 1):
                            m = np.clip(mem[t - lag][j] + self.s["lag_emb"][lag - 1], -ops.VALUE_MAX, ops.VALUE_MAX)
                            mk, mv = self.kv(normalize(m), f"{blk}.kv_mem")
                            ks.append(mk)
                            vs.append(mv)
                    a = attention(q, np.concatenate(ks, axis=1), np.concatenate(vs, axis=1), self.s["attention_exp"])
                    x = np.clip(x + linear(a.transpose(1, 0, 2).reshape(len(x), -1), self.layer(f"{blk}.proj")),
                                -ops.VALUE_MAX, ops.VALUE_MAX)
                    hid = gelu(linear(normalize(x), self.layer(f"{blk}.fc1")), self.s["gelu_table"])
                    x = np.clip(x + linear(hid, self.layer(f"{blk}.fc2")), -ops.VALUE_MAX, ops.VALUE_MAX)
                row.append(self.logits(x, tokens[k][t - 1].reshape(-1) if lags else None))
                own[t].append(keys)
                f_hat[t] = f_hat[t] + self.embed(tokens[k][t], k, grids)
                if self.window and t + 1 < n_frames:
                    mem[t].append(self.memory(tokens[k][t], f_hat[t], k, grid))
            out.append(row)
        return out
