/* The portable context model's elementwise work in one pass per row: progvc.models.exact_ops in C.
 *
 * Every function here computes, value for value, what its twin in exact_ops.py computes with tensor
 * operations, by the same argument (see that module's docstring):
 *   - sums and products of integers whose every partial sum stays below 2**24 (float32) or is done
 *     in int32/int64: exact in any order, so vector width and blocking cannot change them;
 *   - every inexact step is the same single IEEE-754 operation as in exact_ops (a float32 product,
 *     a float64 division, a rounding to an integer in the default round-to-nearest-even mode, a
 *     float64 -> float32 conversion), issued as its own C operation. The build passes
 *     -ffp-contract=off (no FMA contraction) and never -ffast-math, and C on x86-64 and AArch64
 *     evaluates float expressions in their own precision (FLT_EVAL_METHOD 0).
 * No libm function but rint/floor/sqrt/frexp/ldexp is called, and those are exact or correctly
 * rounded by IEEE-754. tests/test_portable_native.py checks each function against the tensor path.
 *
 * The hot loops are compiled for several instruction sets (target_clones); every clone computes the
 * same values, since none of the operations above depends on the vector width.
 *
 * The matrix products stay in torch (BLAS: exact for the same reason, and faster than anything
 * written here); these are the passes between them. Layouts: row-major, contiguous; sizes int64_t.
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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

int pv_abi_version(void) { return 4; }

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

/* Rows src[h][index[t][j]] (src (heads, rows, d)) gathered to out (n, heads, m, d), each (t, h)
 * block rounded as one group (exact_ops.quantize_rows, group_dims=2): the tile-local attention's
 * keys and values, without a gathered copy to read twice. */
CLONES void pv_gather_round(const float *restrict src, const int32_t *restrict index, float *restrict out, int64_t n,
                            int64_t heads, int64_t rows, int64_t m, int64_t d) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < heads; h++) {
            const int32_t *idx = index + t * m;
            const float *base = src + h * rows * d;
            float *o = out + (t * heads + h) * m * d;
            float top = 0.0f;
            for (int64_t j = 0; j < m; j++) {
                float mj = max_abs(base + (int64_t)idx[j] * d, d);
                top = mj > top ? mj : top;
            }
            int e = shift_of(top);
            for (int64_t j = 0; j < m; j++) round_row(base + (int64_t)idx[j] * d, o + j * d, d, e);
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

/* The middle of exact_ops.attention, in place: scores a (rows, m) -> probabilities p (rows, m).
 *
 * Per row: t = min(max a - a, end) (exact), w = exp_table[floor t], times keep (0/1, one row of m
 * per ``rows_per_keep`` rows; NULL: all kept), S = sum w (integers <= 2**15: exact in int64, as the
 * tensor path's float sums are), c = float32((1 / S) * 2**14 * (1 - 2**-20)) in float64 (the tensor
 * path's reciprocal, product and conversion), p = floor(w * c) in float32. */
CLONES void pv_attention_weights(float *restrict a, const float *restrict keep, int64_t rows, int64_t m,
                                 int64_t rows_per_keep, const float *restrict exp_table, int64_t table_len) {
    const float last = (float)(table_len - 1);
    int32_t *at = malloc(sizeof(int32_t) * (size_t)m);
    for (int64_t r = 0; r < rows; r++) {
        float *restrict row = a + r * m;
        float top = row_max(row, m);
        /* short loops over one row (in L1), each of which vectorizes (the gather on its own) */
        for (int64_t j = 0; j < m; j++) {
            float dist = top - row[j];
            at[j] = (int32_t)(dist < last ? dist : last);
        }
        for (int64_t j = 0; j < m; j++) row[j] = exp_table[at[j]];
        if (keep)
            for (int64_t j = 0, k = (r / rows_per_keep) * m; j < m; j++) row[j] = row[j] * keep[k + j];
        int64_t total = 0;
        for (int64_t j = 0; j < m; j++) total += (int32_t)row[j];
        float c = (float)(((1.0 / (double)total) * (double)(1 << PROB_BITS)) * (1.0 - 0x1p-20));
        for (int64_t j = 0; j < m; j++) row[j] = (float)(int32_t)(row[j] * c); /* floor: w c is in [0, 2**15] */
    }
    free(at);
}
