/* PowerSGD's three products for hpcgan.compress.powersgd, one streaming pass over the matrix each.

   M is n values viewed row-major as rows x cols (the last row holds n - (rows - 1) cols values and
   implicit zeros); r is the rank (small), Qt is r x cols and P is rows x r, both row-major:
     project:      P = M Q             P[i][c] = sum_j M[i][j] Qt[c][j]
     backproject:  Qt = P^T M          Qt[c][j] = sum_i P[i][c] M[i][j]      (Qt overwritten)
     expand:       out = P Qt          out[i][j] = sum_c P[i][c] Qt[c][j]    (the n values only)
   Each row of M (or out) goes through the cache once; Qt (r x cols floats) stays in L1/L2. BLAS
   handles these skinny shapes (one dimension r = 4) several times slower than a pass over memory.
   The loops are plain C vectorised by the compiler (omp simd, fused multiply-adds); their summation
   order is fixed, so results are deterministic, but they differ from torch's matmul in the last bits. */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* elements of row i */
static inline int64_t row_len(int64_t n, int64_t cols, int64_t i)
{
    const int64_t rest = n - i * cols;
    return rest < cols ? rest : cols;
}

void hpcgan_psgd_project(const float *restrict m, int64_t n, int64_t cols, const float *restrict qt, int32_t r,
                         float *restrict p)
{
    const int64_t rows = (n + cols - 1) / cols;
    for (int64_t i = 0; i < rows; ++i) {
        const float *row = m + i * cols;
        const int64_t len = row_len(n, cols, i);
        int32_t c = 0;
        for (; c + 4 <= r; c += 4) {  /* four columns of Q per pass, each summed in two halves (ILP) */
            const float *q0 = qt + (int64_t)c * cols, *q1 = q0 + cols, *q2 = q1 + cols, *q3 = q2 + cols;
            const int64_t h = len / 2;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3, t0, t1, t2, t3)
            for (int64_t j = 0; j < h; ++j) {
                s0 = fmaf(row[j], q0[j], s0);
                s1 = fmaf(row[j], q1[j], s1);
                s2 = fmaf(row[j], q2[j], s2);
                s3 = fmaf(row[j], q3[j], s3);
                t0 = fmaf(row[h + j], q0[h + j], t0);
                t1 = fmaf(row[h + j], q1[h + j], t1);
                t2 = fmaf(row[h + j], q2[h + j], t2);
                t3 = fmaf(row[h + j], q3[h + j], t3);
            }
            if (len & 1) {
                const int64_t j = len - 1;
                t0 = fmaf(row[j], q0[j], t0);
                t1 = fmaf(row[j], q1[j], t1);
                t2 = fmaf(row[j], q2[j], t2);
                t3 = fmaf(row[j], q3[j], t3);
            }
            p[i * r + c] = s0 + t0;
            p[i * r + c + 1] = s1 + t1;
            p[i * r + c + 2] = s2 + t2;
            p[i * r + c + 3] = s3 + t3;
        }
        for (; c < r; ++c) {
            const float *q = qt + (int64_t)c * cols;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < len; ++j) s = fmaf(row[j], q[j], s);
            p[i * r + c] = s;
        }
    }
}

void hpcgan_psgd_backproject(const float *restrict m, int64_t n, int64_t cols, const float *restrict p, int32_t r,
                             float *restrict qt)
{
    const int64_t rows = (n + cols - 1) / cols;
    memset(qt, 0, sizeof(float) * (size_t)r * (size_t)cols);
    for (int64_t i = 0; i < rows; ++i) {
        const float *row = m + i * cols;
        const int64_t len = row_len(n, cols, i);
        for (int32_t c = 0; c < r; ++c) {
            float *q = qt + (int64_t)c * cols;
            const float w = p[i * r + c];
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) q[j] = fmaf(w, row[j], q[j]);
        }
    }
}

void hpcgan_psgd_expand(const float *restrict p, const float *restrict qt, int64_t n, int64_t cols, int32_t r,
                        float *restrict out)
{
    const int64_t rows = (n + cols - 1) / cols;
    for (int64_t i = 0; i < rows; ++i) {
        float *row = out + i * cols;
        const int64_t len = row_len(n, cols, i);
        const float *w = p + i * r;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) row[j] = w[0] * qt[j];
        for (int32_t c = 1; c < r; ++c) {  /* the row stays in L1 */
            const float *q = qt + (int64_t)c * cols;
#pragma omp simd
            for (int64_t j = 0; j < len; ++j) row[j] = fmaf(w[c], q[j], row[j]);
        }
    }
}
