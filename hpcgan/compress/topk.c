/* Top-k selection for hpcgan.compress.sparse: per tensor, the k entries of largest |x|, without a sort.

   x is a flat fp32 buffer of T tensors laid end to end (tensor t holds sizes[t] values, keeps
   ks[t] <= sizes[t] of them). An entry's key is its IEEE-754 bits with the sign cleared, compared
   as an unsigned integer: the order of |x| (NaN above inf). The result is the exact top-k under the
   total order "larger key first, then lower index": values (bit copies of x) and global int32
   indices, in increasing index order. The torch fallback in sparse.py selects under the same
   order, so both produce the same bits.

   Per tensor, one pass appends every entry whose key is at least a threshold to a candidate buffer.
   The threshold starts at a quantile of a sample of SAMPLE_RUNS runs of RUN consecutive values at
   pseudo-random offsets, chosen so that about 1.5 k entries pass (mean + 3 standard deviations of
   the sample count). When the buffer fills (2k + 64 entries) it is cut to its k best and the
   threshold rises to just above the k-th key: a later entry with that key has a higher index and
   loses the tie. After the pass the buffer is cut to exactly k. If fewer than k entries passed
   (the sample overestimated the quantile: about 1 call in 700) the pass repeats from threshold 0,
   which cannot fail. The sample therefore changes the time taken, never the result. Tensors of at
   most SMALL values skip the sample and cut once. A cut is a radix selection of the k-th key
   (4 passes of 8 bits over the buffer) and a stable compaction.

   stats (fp64, accumulated): [0] sum of x_i^2, [1] sum of the kept x_i^2, [2] entries appended to
   the buffer, [3] passes over the tensors. The pass has no data-dependent branch: with AVX-512 it
   compares 16 keys at once and compresses the passing (key, position) pairs into the buffer; with
   AVX2, 8 keys and a left-packing permutation from a 256-entry table; the buffer has room for a
   whole vector past its capacity, and is cut once it reaches it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define SMALL 8192
#define SAMPLE_RUNS 512
#define RUN 8
#define BLOCK 1024
#define SLACK 16      /* buffer entries past the capacity: one vector store */
#if defined(__AVX512F__)
#define TOPK_AVX512 1
#endif

const char *hpcgan_topk_isa(void)
{
#if defined(TOPK_AVX512)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#else
    return "portable";
#endif
}

typedef struct {
    uint32_t *key, *pos;
    int64_t n, cap, k, appended;
    uint32_t thr;                 /* entries with key >= thr are candidates */
} Cands;

static inline uint32_t key_of(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x7fffffffu;
}

static inline uint64_t splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The r-th largest (1-based, r <= n) of keys[0..n): a most-significant-byte-first radix selection. */
static uint32_t rth_largest(const uint32_t *keys, int64_t n, int64_t r)
{
    uint32_t prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < n; ++i)
            if ((keys[i] & mask) == prefix) hist[(keys[i] >> shift) & 255u]++;
        int b = 255;
        while (r > hist[b]) r -= hist[b--];
        prefix |= (uint32_t)b << shift;
        mask |= 255u << shift;
    }
    return prefix;
}

/* Keep the k best candidates (larger key, then lower index), in index order; raise the threshold. */
static void cut(Cands *c)
{
    const uint32_t v = rth_largest(c->key, c->n, c->k);
    int64_t above = 0;
    for (int64_t i = 0; i < c->n; ++i) above += c->key[i] > v;
    int64_t ties = c->k - above, m = 0;
    for (int64_t i = 0; i < c->n; ++i) {
        if (c->key[i] > v || (c->key[i] == v && ties-- > 0)) {
            c->key[m] = c->key[i];
            c->pos[m++] = c->pos[i];
        }
    }
    c->n = m;
    c->thr = v + 1u;  /* v <= 0x7fffffff: no overflow */
}

static inline void append(Cands *c, uint32_t key, int64_t pos)
{
    if (key < c->thr) return;
    c->key[c->n] = key;
    c->pos[c->n++] = (uint32_t)pos;
    c->appended++;
    if (c->n >= c->cap) cut(c);
}

/* The vector loops keep the buffer's fill and threshold in registers: n entries after a store of
   new ones; at capacity, cut and reload the threshold. */
static inline int64_t filled(Cands *c, int64_t n, uint32_t *thr)
{
    if (n < c->cap) return n;
    c->n = n;
    cut(c);
    *thr = c->thr;
    return c->n;
}

#if defined(__AVX2__) && !defined(TOPK_AVX512)
static uint32_t LEFT_PACK[256][8];  /* LEFT_PACK[m]: the lanes set in m, first, for permutevar8x32 */
static int left_pack_ready;

static void init_left_pack(void)
{
    if (left_pack_ready) return;
    for (int m = 0; m < 256; ++m) {
        int n = 0;
        for (int j = 0; j < 8; ++j)
            if (m >> j & 1) LEFT_PACK[m][n++] = (uint32_t)j;
        while (n < 8) LEFT_PACK[m][n++] = 0;
    }
    left_pack_ready = 1;
}
#endif

/* One pass over x[0..n): append candidates; returns sum x_i^2. */
static double scan(const float *restrict x, int64_t n, Cands *c)
{
    double total = 0.0;
    int64_t i = 0;
#if defined(TOPK_AVX512)
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff), lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                                     10, 11, 12, 13, 14, 15);
    int64_t cn = c->n, added = 0;
    uint32_t thr = c->thr;
    while (n - i >= 16) {
        const int64_t end = i + ((n - i) / 16 < BLOCK / 16 ? (n - i) / 16 * 16 : BLOCK);
        __m512 acc = _mm512_setzero_ps();
        for (; i < end; i += 16) {
            const __m512 v = _mm512_loadu_ps(x + i);
            const __m512i key = _mm512_and_si512(_mm512_castps_si512(v), absmask);
            acc = _mm512_fmadd_ps(v, v, acc);
            const __mmask16 m = _mm512_cmpge_epu32_mask(key, _mm512_set1_epi32((int32_t)thr));
            const __m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int32_t)i), lanes);
            _mm512_storeu_si512(c->key + cn, _mm512_maskz_compress_epi32(m, key));
            _mm512_storeu_si512(c->pos + cn, _mm512_maskz_compress_epi32(m, pos));
            const int k = __builtin_popcount(m);
            added += k;
            cn = filled(c, cn + k, &thr);
        }
        total += _mm512_reduce_add_ps(acc);
    }
    c->n = cn;
    c->appended += added;
#elif defined(__AVX2__)
    init_left_pack();
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t cn = c->n, added = 0;
    uint32_t thr = c->thr;
    while (n - i >= 8) {
        const int64_t end = i + ((n - i) / 8 < BLOCK / 8 ? (n - i) / 8 * 8 : BLOCK);
        __m256 acc = _mm256_setzero_ps();
        for (; i < end; i += 8) {
            const __m256 v = _mm256_loadu_ps(x + i);
            const __m256i key = _mm256_and_si256(_mm256_castps_si256(v), absmask);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
            /* key >= thr  <=>  key > thr - 1 as int32 (keys <= 0x7fffffff, thr <= 0x80000000) */
            const __m256i pass = _mm256_cmpgt_epi32(key, _mm256_set1_epi32((int32_t)(thr - 1u)));
            const unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(pass));
            const __m256i perm = _mm256_loadu_si256((const __m256i *)LEFT_PACK[m]);
            const __m256i pos = _mm256_add_epi32(_mm256_set1_epi32((int32_t)i), lanes);
            _mm256_storeu_si256((__m256i *)(c->key + cn), _mm256_permutevar8x32_epi32(key, perm));
            _mm256_storeu_si256((__m256i *)(c->pos + cn), _mm256_permutevar8x32_epi32(pos, perm));
            const int k = __builtin_popcount(m);
            added += k;
            cn = filled(c, cn + k, &thr);
        }
        float lanes_sum[8], s = 0.0f;
        _mm256_storeu_ps(lanes_sum, acc);
        for (int j = 0; j < 8; ++j) s += lanes_sum[j];
        total += s;
    }
    c->n = cn;
    c->appended += added;
#endif
    for (; i < n; ++i) {
        const uint32_t key = key_of(x[i]);
        total += (double)x[i] * x[i];
        append(c, key, i);
    }
    return total;
}

/* A threshold about 1.5 k of the n keys reach, from a sample (0 = every entry is a candidate). */
static uint32_t sampled_threshold(const float *x, int64_t n, int64_t k)
{
    if (n <= SMALL) return 0;
    uint32_t sample[SAMPLE_RUNS * RUN];
    const int64_t s = SAMPLE_RUNS * RUN;
    for (int64_t j = 0; j < SAMPLE_RUNS; ++j) {
        const int64_t at = (int64_t)(splitmix64((uint64_t)n * 0x100000001b3ull + (uint64_t)j) % (uint64_t)(n - RUN + 1));
        for (int r = 0; r < RUN; ++r) sample[j * RUN + r] = key_of(x[at + r]);
    }
    const double expected = (double)s * (double)k / (double)n;
    const int64_t want = (int64_t)(expected + 3.0 * sqrt(expected)) + 2;
    return want >= s ? 0 : rth_largest(sample, s, want);
}

int hpcgan_topk(const float *restrict x, const int64_t *restrict sizes, const int64_t *restrict ks, int64_t T,
                float *restrict values, int32_t *restrict index, double *restrict stats)
{
    int64_t cap_max = 1;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t cap = sizes[t] <= SMALL ? sizes[t] : 2 * ks[t] + 64;
        if (cap > cap_max) cap_max = cap;
    }
    Cands c;
    c.key = malloc((size_t)(cap_max + SLACK) * sizeof *c.key);
    c.pos = malloc((size_t)(cap_max + SLACK) * sizeof *c.pos);
    if (!c.key || !c.pos) {
        free(c.key);
        free(c.pos);
        return -1;
    }
    int64_t start = 0, out = 0;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t n = sizes[t], k = ks[t];
        const float *xs = x + start;
        if (k >= n) {  /* keep everything */
            for (int64_t i = 0; i < n; ++i) {
                values[out + i] = xs[i];
                index[out + i] = (int32_t)(start + i);
                stats[0] += (double)xs[i] * xs[i];
                stats[1] += (double)xs[i] * xs[i];
            }
            out += n;
            start += n;
            continue;
        }
        c.k = k;
        c.cap = n <= SMALL ? n : 2 * k + 64;
        c.appended = 0;
        c.n = 0;
        c.thr = sampled_threshold(xs, n, k);
        stats[0] += scan(xs, n, &c);
        stats[3] += 1.0;
        if (c.n < k) {  /* the sample overestimated the k-th key: take every entry */
            c.n = 0;
            c.thr = 0;
            scan(xs, n, &c);
            stats[3] += 1.0;
        }
        if (c.n > k) cut(&c);
        stats[2] += (double)c.appended;
        for (int64_t j = 0; j < k; ++j) {
            const float v = xs[c.pos[j]];
            values[out + j] = v;
            index[out + j] = (int32_t)(start + c.pos[j]);
            stats[1] += (double)v * v;
        }
        out += k;
        start += n;
    }
    free(c.key);
    free(c.pos);
    return 0;
}
