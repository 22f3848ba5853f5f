/* The portable context model's elementwise work in one pass per row: progvc.models.exact_ops in C.
 *
 * Every function here computes, value for value, what its twin in exact_ops.py computes with tensor
 * operations, by the same argument (see that module's docstring):
 *   - sums and products of integers whose every partial sum stays below 2**24 (float32) or is done
 *     in int32/int64: exact in any order, so vector width and blocking cannot change them;
 *   - every inexact step is the same single IEEE-754 operation as in exact_ops (a float32 product,
 *     a float64 division, a rounding to an integer in the default round-to-nearest-even mode, a
 *     float64 -> float32 conversion), issued as its own C operation. The build passes
 *     -ffp-contract=off (no FMA contraction; pv_tile_attention alone re-allows it, EXACT_FMA, where
 *     the only products followed by a sum are exact integer sums) and never -ffast-math, and C on
 *     x86-64 and AArch64 evaluates float expressions in their own precision (FLT_EVAL_METHOD 0).
 * No libm function but rint/floor/sqrt/frexp/ldexp is called, and those are exact or correctly
 * rounded by IEEE-754. tests/test_portable_native.py checks each function against the tensor path.
 *
 * The hot loops are compiled for several instruction sets (target_clones); every clone computes the
 * same values, since none of the operations above depends on the vector width (and the tests run
 * each clone's code, built alone: PV_ONE_TARGET below).
 *
 * The dense layers' matrix products stay in torch (BLAS: exact for the same reason); these are the
 * passes between them. The tile-local attention, many small products with passes between them, is
 * one function here (pv_tile_attention), so that it runs as one long call per thread.
 * Layouts: row-major, contiguous (pv_tile_attention reads its keys and values in place, by row
 * address); sizes int64_t.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ACT_BITS 9
#define VALUE_MAX 8388607.0f /* 2**23 - 1 */
#define FRAC 10
#define NORM_FRAC 8
#define PROB_BITS 14
#define SCORE_FRAC 10

/* PV_ONE_TARGET: build for the compiler's target alone, no clones (tests/test_portable_native.py builds
 * one library per instruction set this way, with -mavx512f, -mavx2 and -march=x86-64, so that every
 * clone's code runs on a machine whose dispatch would pick only one of them). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(PV_ONE_TARGET)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

int pv_abi_version(void) { return 6; }

/* The shift e >= 0 of a group whose largest |x| is m: the bits of the integer m less ACT_BITS
 * (frexp reads the exponent: exact). */
static int shift_of(float m) {
    int bits;
    frexpf(m, &bits);
    return bits > ACT_BITS ? bits - ACT_BITS : 0;
}

/* The largest |x[i]| (0 for n = 0): the bits of |x| order as its values, so the maximum is taken
 * on integers (a loop that vectorizes; a maximum is exact in any order). */
static float max_abs(const float *restrict x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t b;
        memcpy(&b, x + i, sizeof b);
        b &= 0x7fffffff;
        best = b > best ? b : best;
    }
    float m;
    memcpy(&m, &best, sizeof m);
    return m;
}

/* o = round(x / 2**e) * 2**e for n values (exact_ops.quantize_rows' rounding at a known shift). */
static inline void round_row(const float *restrict x, float *restrict o, int64_t n, int e) {
    float down = ldexpf(1.0f, -e), up = ldexpf(1.0f, e);
    for (int64_t k = 0; k < n; k++) o[k] = rintf(x[k] * down) * up;
}

/* exact_ops.quantize_rows with one group per contiguous block of ``size`` floats: out = round(x /
 * 2**e) * 2**e, e per block. Block (i, j) starts at x + i * s0 + j * s1 (two outer dimensions with
 * any strides, so a transposed view needs no copy); out is contiguous (n0, n1, size). */
CLONES void pv_quantize_blocks(const float *x, float *out, int64_t n0, int64_t n1, int64_t s0, int64_t s1,
                               int64_t size) {
    for (int64_t i = 0; i < n0; i++)
        for (int64_t j = 0; j < n1; j++) {
            const float *xr = x + i * s0 + j * s1;
            float *o = out + (i * n1 + j) * size;
            round_row(xr, o, size, shift_of(max_abs(xr, size)));
        }
}

static float clamp_value(float y) { return y < -VALUE_MAX ? -VALUE_MAX : (y > VALUE_MAX ? VALUE_MAX : y); }

/* The end of exact_ops.linear with a float32 product: clamp(round(acc * scale) + bias). */
CLONES void pv_linear_out_f32(const float *acc, const float *scale, const float *bias, float *out,
                              int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) out[r * n + j] = clamp_value(rintf(acc[r * n + j] * scale[j]) + bias[j]);
}

/* The same with a float64 product and scale: round in float64, then to float32, then the bias. */
CLONES void pv_linear_out_f64(const double *acc, const double *scale, const float *bias, float *out,
                              int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            out[r * n + j] = clamp_value((float)rint(acc[r * n + j] * scale[j]) + bias[j]);
}

/* exact_ops.normalize_rows: (x - mean) / std at NORM_FRAC. The sums are of integers, so they are
 * taken in int64 (exact, as the tensor path's float64 sums are, and vectorizable); max |c| is
 * max(d max x - S, S - d min x), the extremes of c = d x - S; the rest is the tensor path's float64
 * steps: c rounded to 20 bits, floor(sum c^2 / d), floor(sqrt(.)), round(c * 2**8 / sd). */
CLONES void pv_normalize_rows(const float *restrict x, float *restrict out, int64_t rows, int64_t d) {
    int32_t *c = malloc(sizeof(int32_t) * (size_t)d);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        int64_t s = 0;
        int32_t hi = (int32_t)xr[0], lo = hi;
        for (int64_t i = 0; i < d; i++) {
            int32_t v = (int32_t)xr[i]; /* |x| < 2**23, an integer */
            s += v;
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
        }
        double sd_ = (double)s, dd = (double)d;
        double up = (double)hi * dd - sd_, down_ = sd_ - (double)lo * dd;
        int bits;
        frexp(up > down_ ? up : down_, &bits);
        int e = bits > 20 ? bits - 20 : 0;
        double down = ldexp(1.0, -e);
        int64_t sq = 0;
        for (int64_t i = 0; i < d; i++) {
            int32_t ci = (int32_t)rint(((double)(int32_t)xr[i] * dd - sd_) * down); /* |c| <= 2**20 */
            c[i] = ci;
            sq += (int64_t)ci * ci;
        }
        double sd = floor(sqrt(floor((double)sq / dd)));
        sd = sd < 1.0 ? 1.0 : sd;
        for (int64_t i = 0; i < d; i++) out[r * d + i] = (float)rint((double)c[i] * (double)(1 << NORM_FRAC) / sd);
    }
    free(c);
}

/* exact_ops.gelu: interpolation in the GELU table (GELU_LO = -8, GELU_HI = 8, steps of 2**-6). */
CLONES void pv_gelu(const float *restrict x, const float *restrict table, const float *restrict slope,
                    float *restrict out, int64_t n) {
    const int32_t lo = -8 * (1 << FRAC), top = 16 * (1 << FRAC) - 1;
    const float hi = 8.0f * (1 << FRAC), inv_step = 1.0f / (float)(1 << (FRAC - 6));
    enum { BLOCK = 512 };
    int32_t at[BLOCK];
    float f[BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) { /* blocks of short loops, each of which vectorizes */
        int64_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
        const float *xb = x + i0;
        float *ob = out + i0;
        for (int64_t i = 0; i < len; i++) { /* u = clamp(x - lo, 0, top), an integer: index u >> 4, f = u & 15 */
            int32_t u = (int32_t)xb[i] - lo;
            u = u < 0 ? 0 : (u > top ? top : u);
            at[i] = u >> (FRAC - 6);
            f[i] = (float)(u & ((1 << (FRAC - 6)) - 1));
        }
        for (int64_t i = 0; i < len; i++) f[i] = slope[at[i]] * f[i] * inv_step;
        for (int64_t i = 0; i < len; i++) {
            float fl = (float)(int32_t)f[i]; /* floor (|.| < 2**15): truncation, less one below 0 */
            fl = fl > f[i] ? fl - 1.0f : fl;
            f[i] = fl;
        }
        for (int64_t i = 0; i < len; i++) f[i] = f[i] + table[at[i]];
        for (int64_t i = 0; i < len; i++) ob[i] = xb[i] >= hi ? xb[i] : f[i];
    }
}

/* The largest of x[0..n-1] (n >= 1, no NaN), through integer keys that order as the floats do (the
 * bits of a negative float flipped below its sign), so that the loop vectorizes; a maximum is
 * exact in any order. (+0 wins over -0; the callers only subtract it, where the two agree.) */
static float row_max(const float *restrict x, int64_t n) {
    int32_t best = INT32_MIN;
    for (int64_t j = 0; j < n; j++) {
        int32_t b;
        memcpy(&b, x + j, sizeof b);
        int32_t key = b ^ ((b >> 31) & 0x7fffffff);
        best = key > best ? key : best;
    }
    best ^= (best >> 31) & 0x7fffffff;
    float top;
    memcpy(&top, &best, sizeof top);
    return top;
}

/* One row of pv_attention_weights: scores row (m) -> probabilities, in place; keep (m) or NULL.
 * at (m) is scratch. */
static inline void weights_row(float *restrict row, const float *restrict keep, int64_t m, int32_t *restrict at,
                               const float *restrict exp_table, float last) {
    float top = row_max(row, m);
    for (int64_t j = 0; j < m; j++) {
        float dist = top - row[j];
        at[j] = (int32_t)(dist < last ? dist : last);
    }
    for (int64_t j = 0; j < m; j++) row[j] = exp_table[at[j]];
    if (keep)
        for (int64_t j = 0; j < m; j++) row[j] = row[j] * keep[j];
    int64_t total = 0;
    for (int64_t j = 0; j < m; j++) total += (int32_t)row[j];
    float c = (float)(((1.0 / (double)total) * (double)(1 << PROB_BITS)) * (1.0 - 0x1p-20));
    for (int64_t j = 0; j < m; j++) row[j] = (float)(int32_t)(row[j] * c); /* floor: w c is in [0, 2**15] */
}

/* The middle of exact_ops.attention, in place: scores a (rows, m) -> probabilities p (rows, m),
 * for the rows lo .. hi-1 (a is the whole array, so that callers can split any rows between threads).
 *
 * Per row: t = min(max a - a, end) (exact), w = exp_table[floor t], times keep (0/1, one row of m
 * per ``rows_per_keep`` rows: row r reads keep row r / rows_per_keep; NULL: all kept), S = sum w
 * (integers <= 2**15: exact in int64, as the tensor path's float sums are), c = float32((1 / S) *
 * 2**14 * (1 - 2**-20)) in float64 (the tensor path's reciprocal, product and conversion),
 * p = floor(w * c) in float32. */
CLONES void pv_attention_weights(float *restrict a, const float *restrict keep, int64_t lo, int64_t hi, int64_t m,
                                 int64_t rows_per_keep, const float *restrict exp_table, int64_t table_len) {
    int32_t *at = malloc(sizeof(int32_t) * (size_t)m);
    for (int64_t r = lo; r < hi; r++)
        weights_row(a + r * m, keep ? keep + (r / rows_per_keep) * m : NULL, m, at, exp_table, (float)(table_len - 1));
    free(at);
}

/* 16 floats as one value: GCC and clang compile its arithmetic to whatever vectors the clone has
 * (one AVX-512 register, two AVX2 ones, four SSE ones); lanes are independent IEEE operations. */
#if defined(__GNUC__) && !defined(__clang__)
#define EXACT_FMA __attribute__((optimize("fp-contract=fast")))
#else
#define EXACT_FMA
#endif

typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

#define QK_ROWS 4  /* queries per block of the score product */
#define QK_COLS 64 /* keys per block (the scores' row stride is a multiple of it): 4 vectors */
#define PV_ROWS 8  /* queries per block of the value product */
#define PV_COLS 32 /* value channels per block (the values' row stride is a multiple of it): 2 vectors */

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* NAME(a, lda, b, ldb, o, ldo, rows, inner, cols): o (rows, cols) = a (rows, inner) b (inner, cols),
 * row strides lda, ldb, ldo; rows a multiple of ROWS, cols of LANES * VECS: a block of ROWS x VECS
 * vectors VT of sums is held in registers while ``inner`` runs (one b row loaded, each a value
 * broadcast). Both uses sum integers whose partial sums stay below 2**24 units, so every order, and
 * FMA, gives the exact sum: the blocking is a matter of speed alone. */
#define BLOCK_PRODUCT(NAME, ROWS, VECS, VT, LANES)                                                              \
    static inline __attribute__((always_inline)) EXACT_FMA void NAME(                                           \
        const float *restrict a, int64_t lda, const float *restrict b, int64_t ldb, float *restrict o,           \
        int64_t ldo, int64_t rows, int64_t inner, int64_t cols) {                                                \
        for (int64_t i0 = 0; i0 < rows; i0 += ROWS)                                                              \
            for (int64_t j0 = 0; j0 < cols; j0 += LANES * VECS) {                                                \
                VT acc[ROWS][VECS] = {{0}};                                                                      \
                for (int64_t k = 0; k < inner; k++) {                                                            \
                    VT br[VECS];                                                                                 \
                    for (int v = 0; v < VECS; v++) memcpy(&br[v], b + k * ldb + j0 + LANES * v, sizeof(VT));     \
                    for (int ii = 0; ii < ROWS; ii++) {                                                          \
                        float av = a[(i0 + ii) * lda + k];                                                       \
                        for (int v = 0; v < VECS; v++) acc[ii][v] += av * br[v];                                 \
                    }                                                                                            \
                }                                                                                                \
                for (int ii = 0; ii < ROWS; ii++)                                                                \
                    for (int v = 0; v < VECS; v++)                                                               \
                        memcpy(o + (i0 + ii) * ldo + j0 + LANES * v, &acc[ii][v], sizeof(VT));                   \
            }                                                                                                    \
    }

/* Two blockings of each product, for the register files of the vector units (the same sums):
 * 16 blocks of 16 floats fill half of AVX-512's 32 registers; with 8-float vectors (AVX2's 16
 * registers, NEON's 32 of 4 floats) that block spilled to the stack on every step, and pv_tile_attention
 * took 32 s of a 42 s CIF decode on an AVX2 CPU. The narrow blocks hold 8 vectors of 8 floats. */
/* scores q (rows, d) kt (d, mp): terms of at most 512 * 512 units, d <= 32 of them (< 2**23) */
BLOCK_PRODUCT(score_product_wide, QK_ROWS, QK_COLS / 16, v16f, 16)
BLOCK_PRODUCT(score_product_narrow, QK_ROWS, 2, v8f, 8)
/* p (rows, first m of mp columns) v (m, dp): probabilities sum to at most 2**14 per row, |v| <= 512
 * units (< 2**23) */
BLOCK_PRODUCT(value_product_wide, PV_ROWS, PV_COLS / 16, v16f, 16)
BLOCK_PRODUCT(value_product_narrow, PV_ROWS / 2, 2, v8f, 8)

static int blocking = -1; /* pv_set_blocking: -1 by the CPU, 0 narrow, 1 wide */

/* Which blocks pv_tile_attention uses: -1 (the default) the wide ones where the CPU has AVX-512's
 * 32 wide registers and the narrow ones elsewhere; 0 or 1 force the narrow or the wide ones, so that
 * the tests run both on any CPU (both give the same values). */
void pv_set_blocking(int wide) { blocking = wide; }

static int wide_registers(void) {
    if (blocking >= 0) return blocking;
#if defined(__GNUC__) && defined(__x86_64__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* The largest |x| of each row of d floats of each head: out (heads, rows), out[h][g] for the row at
 * address addr[g] + h * hstride[g] floats (the tile-local attention's keys and values, read in
 * place from the projections' outputs, whose heads lie side by side in a row). */
CLONES void pv_rows_max_abs(const int64_t *restrict addr, const int64_t *restrict hstride, int64_t rows, int64_t heads,
                            int64_t d, float *restrict out) {
    for (int64_t h = 0; h < heads; h++)
        for (int64_t g = 0; g < rows; g++)
            out[h * rows + g] = max_abs((const float *)(intptr_t)addr[g] + h * hstride[g], d);
}

/* Tile-local attention, all of it, for the (tile, head) items lo .. hi-1 (tile = item / heads):
 * exact_ops.attention of the tile's queries over its gathered keys, as progvc.models.portable's
 * tensor path computes it: keys and values rounded as one group per (tile, head) (quantize_rows,
 * group_dims=2), each query row rounded on its own and scaled by 2**-(2 FRAC - SCORE_FRAC), the
 * score product, weights_row's probabilities, round(p v 2**-14); written to the tile's queries in out.
 * The two products are exact sums (their comments), so this function alone may contract a product
 * and a sum into an FMA (EXACT_FMA): the fused result is the exact one, as the unfused one is; no
 * other a * b + c is computed here.
 *
 * q and out: element (h, i, c) at h * q_hs + i * q_rs + c. Keys and values are read in place: key
 * row g of head h is the d floats at key_addr[g] + h * key_hs[g] (values likewise), and key_max,
 * val_max (heads, rows) hold each such row's largest |x| (pv_rows_max_abs: rows are read by many
 * tiles, so taken once). index and keep (tiles, m): the tile's key rows and whether it keeps them;
 * queries and query_ok (tiles, nq): the tile's query cells and which are real (a cell is real in
 * exactly one tile, so items of different tiles write apart). */
CLONES EXACT_FMA void pv_tile_attention(const float *restrict q, int64_t q_hs, int64_t q_rs,
                                        const int64_t *restrict key_addr, const int64_t *restrict key_hs,
                                        const int64_t *restrict val_addr, const int64_t *restrict val_hs,
                                        const float *restrict key_max, const float *restrict val_max,
                                        const int32_t *restrict index, const float *restrict keep,
                                        const int32_t *restrict queries, const uint8_t *restrict query_ok,
                                        float *restrict out, int64_t lo, int64_t hi, int64_t heads, int64_t rows,
                                        int64_t m, int64_t nq, int64_t d, const float *restrict exp_table,
                                        int64_t table_len) {
    const int64_t mp = round_up(m, QK_COLS), dp = round_up(d, PV_COLS);
    const int64_t qr = round_up(round_up(nq, QK_ROWS), PV_ROWS);
    const float last = (float)(table_len - 1), score_unit = ldexpf(1.0f, -(2 * FRAC - SCORE_FRAC)),
                prob_unit = ldexpf(1.0f, -PROB_BITS);
    float *qs = calloc((size_t)(qr * d), sizeof(float));
    float *kt = calloc((size_t)(d * mp), sizeof(float));
    float *vv = calloc((size_t)(m * dp), sizeof(float));
    float *s = calloc((size_t)(qr * mp), sizeof(float));
    float *o = malloc(sizeof(float) * (size_t)(qr * dp));
    int32_t *at = malloc(sizeof(int32_t) * (size_t)m);
    const int wide = wide_registers();
    for (int64_t item = lo; item < hi; item++) {
        const int64_t t = item / heads, h = item % heads;
        const int32_t *idx = index + t * m;
        /* keys (transposed) and values, each rounded as one group */
        float top_k = 0.0f, top_v = 0.0f;
        for (int64_t j = 0; j < m; j++) {
            float mk = key_max[h * rows + idx[j]], mv = val_max[h * rows + idx[j]];
            top_k = mk > top_k ? mk : top_k;
            top_v = mv > top_v ? mv : top_v;
        }
        int ek = shift_of(top_k), ev = shift_of(top_v);
        float kdown = ldexpf(1.0f, -ek), kup = ldexpf(1.0f, ek);
        for (int64_t j = 0; j < m; j++) {
            const float *kr = (const float *)(intptr_t)key_addr[idx[j]] + h * key_hs[idx[j]];
            for (int64_t c = 0; c < d; c++) kt[c * mp + j] = rintf(kr[c] * kdown) * kup;
            round_row((const float *)(intptr_t)val_addr[idx[j]] + h * val_hs[idx[j]], vv + j * dp, d, ev);
        }
        /* queries, each row rounded on its own, in score units */
        for (int64_t i = 0; i < nq; i++) {
            const float *qrow = q + h * q_hs + queries[t * nq + i] * q_rs;
            round_row(qrow, qs + i * d, d, shift_of(max_abs(qrow, d)));
            for (int64_t c = 0; c < d; c++) qs[i * d + c] = qs[i * d + c] * score_unit;
        }
        if (wide)
            score_product_wide(qs, d, kt, mp, s, mp, round_up(nq, QK_ROWS), d, mp);
        else
            score_product_narrow(qs, d, kt, mp, s, mp, round_up(nq, QK_ROWS), d, mp);
        for (int64_t i = 0; i < nq; i++) weights_row(s + i * mp, keep + t * m, m, at, exp_table, last);
        if (wide)
            value_product_wide(s, mp, vv, dp, o, dp, round_up(nq, PV_ROWS), m, dp);
        else
            value_product_narrow(s, mp, vv, dp, o, dp, round_up(nq, PV_ROWS), m, dp);
        for (int64_t i = 0; i < nq; i++) {
            if (!query_ok[t * nq + i]) continue;
            float *dst = out + h * q_hs + queries[t * nq + i] * q_rs;
            for (int64_t c = 0; c < d; c++) dst[c] = rintf(o[i * dp + c] * prob_unit);
        }
    }
    free(qs);
    free(kt);
    free(vv);
    free(s);
    free(o);
    free(at);
}
