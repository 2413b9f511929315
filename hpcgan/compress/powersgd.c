/* PowerSGD's three products for hpcgan.compress.powersgd, one streaming pass over the matrix each.

   M is n values viewed row-major as rows x cols (the last row holds n - (rows - 1) cols values and
   implicit zeros); r is the rank (small), Qt is r x cols and P is rows x r, both row-major:
     project:      P = M Q             P[i][c] = sum_j M[i][j] Qt[c][j]
     backproject:  Qt = P^T M          Qt[c][j] = sum_i P[i][c] M[i][j]      (Qt overwritten)
     expand:       out = P Qt          out[i][j] = sum_c P[i][c] Qt[c][j]    (the n values only)
   Qt (r x cols floats, 64 KiB at r = 4 and cols = 4096) lives in L2, not L1, so what limits the
   loops is how often a value of Qt is loaded or stored per value of M, not the arithmetic: each
   loop takes BLOCK rows of M at once, so a value of Qt serves BLOCK rows per load, and every value
   of M or out is read or written exactly once. BLAS runs these skinny shapes (one side r) several
   times slower than a pass over memory. The loops are plain C vectorised by the compiler (omp simd,
   fused multiply-adds); their summation order is fixed, so results are deterministic, but they
   differ from torch's matmul in the last bits. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 4   /* rows of M per pass */
#define GROUP 4   /* columns of P (rows of Qt) per pass */

/* P rows [i, i + BLOCK), columns [c, c + GROUP), all of length len */
static inline void project_block(const float *restrict m, int64_t cols, int64_t len, const float *restrict qt,
                                 int32_t r, int64_t i, int32_t c, float *restrict p)
{
    const float *m0 = m + i * cols, *m1 = m0 + cols, *m2 = m1 + cols, *m3 = m2 + cols;
    const float *q0 = qt + (int64_t)c * cols, *q1 = q0 + cols, *q2 = q1 + cols, *q3 = q2 + cols;
    float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
    float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
#pragma omp simd reduction(+ : s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)
    for (int64_t j = 0; j < len; ++j) {
        const float a = q0[j], b = q1[j], cc = q2[j], d = q3[j];
        s00 = fmaf(m0[j], a, s00); s01 = fmaf(m0[j], b, s01); s02 = fmaf(m0[j], cc, s02); s03 = fmaf(m0[j], d, s03);
        s10 = fmaf(m1[j], a, s10); s11 = fmaf(m1[j], b, s11); s12 = fmaf(m1[j], cc, s12); s13 = fmaf(m1[j], d, s13);
        s20 = fmaf(m2[j], a, s20); s21 = fmaf(m2[j], b, s21); s22 = fmaf(m2[j], cc, s22); s23 = fmaf(m2[j], d, s23);
        s30 = fmaf(m3[j], a, s30); s31 = fmaf(m3[j], b, s31); s32 = fmaf(m3[j], cc, s32); s33 = fmaf(m3[j], d, s33);
    }
    float *p0 = p + i * r + c, *p1 = p0 + r, *p2 = p1 + r, *p3 = p2 + r;
    p0[0] = s00; p0[1] = s01; p0[2] = s02; p0[3] = s03;
    p1[0] = s10; p1[1] = s11; p1[2] = s12; p1[3] = s13;
    p2[0] = s20; p2[1] = s21; p2[2] = s22; p2[3] = s23;
    p3[0] = s30; p3[1] = s31; p3[2] = s32; p3[3] = s33;
}

/* P[i][c] for one row of length len and one column */
static inline float dot(const float *restrict row, const float *restrict q, int64_t len)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < len; ++j) s = fmaf(row[j], q[j], s);
    return s;
}

void hpcgan_psgd_project(const float *restrict m, int64_t n, int64_t cols, const float *restrict qt, int32_t r,
                         float *restrict p)
{
    const int64_t rows = (n + cols - 1) / cols, full = n / cols;
    int64_t i = 0;
    for (; i + BLOCK <= full; i += BLOCK) {
        int32_t c = 0;
        for (; c + GROUP <= r; c += GROUP) project_block(m, cols, cols, qt, r, i, c, p);
        for (; c < r; ++c)
            for (int64_t k = i; k < i + BLOCK; ++k) p[k * r + c] = dot(m + k * cols, qt + (int64_t)c * cols, cols);
    }
    for (; i < rows; ++i) {
        const int64_t len = i < full ? cols : n - full * cols;
        for (int32_t c = 0; c < r; ++c) p[i * r + c] = dot(m + i * cols, qt + (int64_t)c * cols, len);
    }
}

void hpcgan_psgd_backproject(const float *restrict m, int64_t n, int64_t cols, const float *restrict p, int32_t r,
                             float *restrict qt)
{
    const int64_t rows = (n + cols - 1) / cols, full = n / cols;
    memset(qt, 0, sizeof(float) * (size_t)r * (size_t)cols);
    int64_t i = 0;
    if (r == GROUP) {  /* the default rank: each value of M loaded once, each of Qt once per BLOCK rows */
        float *q0 = qt, *q1 = q0 + cols, *q2 = q1 + cols, *q3 = q2 + cols;
        for (; i + BLOCK <= full; i += BLOCK) {
            const float *m0 = m + i * cols, *m1 = m0 + cols, *m2 = m1 + cols, *m3 = m2 + cols;
            const float *w = p + i * r;   /* w[k * r + c] = P[i + k][c] */
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) {
                const float a = m0[j], b = m1[j], c = m2[j], d = m3[j];
                q0[j] = fmaf(w[12], d, fmaf(w[8], c, fmaf(w[4], b, fmaf(w[0], a, q0[j]))));
                q1[j] = fmaf(w[13], d, fmaf(w[9], c, fmaf(w[5], b, fmaf(w[1], a, q1[j]))));
                q2[j] = fmaf(w[14], d, fmaf(w[10], c, fmaf(w[6], b, fmaf(w[2], a, q2[j]))));
                q3[j] = fmaf(w[15], d, fmaf(w[11], c, fmaf(w[7], b, fmaf(w[3], a, q3[j]))));
            }
        }
    }
    for (; i + BLOCK <= full; i += BLOCK) {
        const float *m0 = m + i * cols, *m1 = m0 + cols, *m2 = m1 + cols, *m3 = m2 + cols;
        for (int32_t c = 0; c < r; ++c) {
            float *restrict q = qt + (int64_t)c * cols;
            const float w0 = p[i * r + c], w1 = p[(i + 1) * r + c], w2 = p[(i + 2) * r + c], w3 = p[(i + 3) * r + c];
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) q[j] = fmaf(w3, m3[j], fmaf(w2, m2[j], fmaf(w1, m1[j], fmaf(w0, m0[j], q[j]))));
        }
    }
    for (; i < rows; ++i) {
        const float *row = m + i * cols;
        const int64_t len = i < full ? cols : n - full * cols;
        for (int32_t c = 0; c < r; ++c) {
            float *restrict q = qt + (int64_t)c * cols;
            const float w = p[i * r + c];
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) q[j] = fmaf(w, row[j], q[j]);
        }
    }
}

/* out[i][j] for one row of length len */
static inline void expand_row(const float *restrict w, const float *restrict qt, int64_t cols, int32_t r, int64_t len,
                              float *restrict row)
{
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
        float s = w[0] * qt[j];
        for (int32_t c = 1; c < r; ++c) s = fmaf(w[c], qt[(int64_t)c * cols + j], s);
        row[j] = s;
    }
}

void hpcgan_psgd_expand(const float *restrict p, const float *restrict qt, int64_t n, int64_t cols, int32_t r,
                        float *restrict out)
{
    const int64_t rows = (n + cols - 1) / cols, full = n / cols;
    int64_t i = 0;
    if (r == GROUP) {  /* the default rank: BLOCK rows per load of Qt */
        const float *q0 = qt, *q1 = q0 + cols, *q2 = q1 + cols, *q3 = q2 + cols;
        for (; i + BLOCK <= full; i += BLOCK) {
            const float *w = p + i * r;
            float *o0 = out + i * cols, *o1 = o0 + cols, *o2 = o1 + cols, *o3 = o2 + cols;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) {
                const float a = q0[j], b = q1[j], c = q2[j], d = q3[j];
                o0[j] = fmaf(w[3], d, fmaf(w[2], c, fmaf(w[1], b, w[0] * a)));
                o1[j] = fmaf(w[7], d, fmaf(w[6], c, fmaf(w[5], b, w[4] * a)));
                o2[j] = fmaf(w[11], d, fmaf(w[10], c, fmaf(w[9], b, w[8] * a)));
                o3[j] = fmaf(w[15], d, fmaf(w[14], c, fmaf(w[13], b, w[12] * a)));
            }
        }
    }
    for (; i < rows; ++i) expand_row(p + i * r, qt, cols, r, i < full ? cols : n - full * cols, out + i * cols);
}
