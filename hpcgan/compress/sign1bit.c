/* Scaled-sign (1-bit) kernels for hpcgan.compress.sign: one pass over memory each way.

   x is a flat fp32 buffer of T tensors laid end to end (tensor t holds sizes[t] values).
     compress:   scales[t] = sum_{i in t} |x_i| / sizes[t];  bit (i mod 8) of packed[i / 8] = sign bit of x_i
     decompress: out_i = scales[t(i)] * (bit i set ? -1 : +1), or out_i += that when accumulating
   The sign bit is read from the IEEE-754 encoding, except for exact zeros (+0.0 and -0.0): one bit
   cannot send 0, so a zero gets a pseudo-random bit, bit 0 of lowbias32((uint32)(i + key)), which
   averages to 0 over calls (``key`` changes every call) instead of always moving the coordinate one
   way. The torch fallback in sign.py computes the same hash, so both produce the same bits. compress needs ceil(n/8) zeroed
   bytes in packed (a byte shared by two tensors is OR-ed together). Sums run in fp32 over blocks of
   BLOCK values and are added up in fp64.

   With AVX2 (x86-64, built with -march=native on such a host) compress is one load, one movemask and
   one masked add per 8 values; decompress builds each group of 8 sign masks with one variable shift
   and streams large outputs past the cache, as memcpy does. Elsewhere a portable loop is used. */
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define BLOCK 1024                   /* values per fp32 partial sum */
#define STREAM_BYTES (8u << 20)      /* outputs this large bypass the cache */

/* Which loops this build uses: "avx2" or "portable". */
const char *hpcgan_sign_isa(void)
{
#if defined(__AVX2__)
    return "avx2";
#else
    return "portable";
#endif
}

static inline uint32_t bits_of(float v) { uint32_t u; memcpy(&u, &v, sizeof u); return u; }

/* lowbias32 (Chris Wellons' integer hash): the pseudo-random bit source for exact zeros. */
static inline uint32_t lowbias32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The bit sent for value bits u at index i: its sign bit, or a hashed bit for +-0. */
static inline uint32_t sign_bit(uint32_t u, int64_t i, uint32_t key)
{
    return (u & 0x7fffffffu) ? u >> 31 : lowbias32((uint32_t)i + key) & 1u;
}

static inline void pack_one(const float *x, int64_t i, uint8_t *packed, double *total, uint32_t key)
{
    const uint32_t u = bits_of(x[i]);
    packed[i >> 3] |= (uint8_t)(sign_bit(u, i, key) << (i & 7));
    const uint32_t a = u & 0x7fffffffu;
    float f;
    memcpy(&f, &a, sizeof f);
    *total += f;
}

#if defined(__AVX2__)
/* The hashed bits of the 8 indices base..base+7, as a movemask. */
static inline uint32_t hash_mask8(uint32_t base, uint32_t key)
{
    __m256i x = _mm256_add_epi32(_mm256_set1_epi32((int)(base + key)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846ca68bu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x, 31)));
}

static inline uint32_t zero_mask8(__m256 v)
{
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ));
}
#endif

/* Packs n values (n a multiple of 32, x 8-aligned in the buffer, x[0] at buffer index i0) and
   returns their sum |x|. */
static float pack_block(const float *restrict x, int64_t n, uint8_t *restrict packed, int64_t i0, uint32_t key)
{
#if defined(__AVX2__)
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < n; i += 32) {
        const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        const __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        uint32_t m = (uint32_t)_mm256_movemask_ps(v0) | (uint32_t)_mm256_movemask_ps(v1) << 8
                   | (uint32_t)_mm256_movemask_ps(v2) << 16 | (uint32_t)_mm256_movemask_ps(v3) << 24;
        const uint32_t z = zero_mask8(v0) | zero_mask8(v1) << 8 | zero_mask8(v2) << 16 | zero_mask8(v3) << 24;
        if (z) {
            const uint32_t b = (uint32_t)(i0 + i);
            const uint32_t h = hash_mask8(b, key) | hash_mask8(b + 8, key) << 8
                             | hash_mask8(b + 16, key) << 16 | hash_mask8(b + 24, key) << 24;
            m = (m & ~z) | (h & z);
        }
        memcpy(packed + (i >> 3), &m, sizeof m);
        a0 = _mm256_add_ps(a0, _mm256_and_ps(v0, absmask));
        a1 = _mm256_add_ps(a1, _mm256_and_ps(v1, absmask));
        a2 = _mm256_add_ps(a2, _mm256_and_ps(v2, absmask));
        a3 = _mm256_add_ps(a3, _mm256_and_ps(v3, absmask));
    }
    float lanes[8], acc = 0.0f;
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int j = 0; j < 8; ++j) acc += lanes[j];
    return acc;
#else
    const uint32_t *restrict u = (const uint32_t *)x;
    float acc = 0.0f;
#pragma omp simd reduction(+:acc)
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t a = u[i] & 0x7fffffffu;
        float f;
        memcpy(&f, &a, sizeof f);
        acc += f;
    }
    for (int64_t k = 0; k < n / 8; ++k) {
        uint32_t b = 0;
        for (int j = 0; j < 8; ++j) b |= sign_bit(u[8 * k + j], i0 + 8 * k + j, key) << j;
        packed[k] = (uint8_t)b;
    }
    return acc;
#endif
}

void hpcgan_sign_compress(const float *restrict x, const int64_t *restrict sizes, int64_t T,
                          uint8_t *restrict packed, float *restrict scales, uint32_t key)
{
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t end = start + sizes[t];
        int64_t i = start;
        double total = 0.0;
        for (; i < end && (i & 7); ++i) pack_one(x, i, packed, &total, key);  /* byte shared with t - 1 */
        while (end - i >= 32) {
            const int64_t n = end - i >= BLOCK ? BLOCK : (end - i) / 32 * 32;
            total += pack_block(x + i, n, packed + (i >> 3), i, key);
            i += n;
        }
        for (; i < end; ++i) pack_one(x, i, packed, &total, key);
        scales[t] = sizes[t] ? (float)(total / (double)sizes[t]) : 0.0f;
        start = end;
    }
}

static inline uint32_t signed_bits(uint32_t s, const uint8_t *packed, int64_t i)
{
    return s ^ ((uint32_t)((packed[i >> 3] >> (i & 7)) & 1u) << 31);
}

static inline void put(float *out, int64_t i, uint32_t value, int accumulate)
{
    float f;
    memcpy(&f, &value, sizeof f);
    out[i] = accumulate ? out[i] + f : f;
}

void hpcgan_sign_decompress(const uint8_t *restrict packed, const int64_t *restrict sizes, int64_t T,
                            const float *restrict scales, float *restrict out, int accumulate)
{
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t end = start + sizes[t];
        const uint32_t s = bits_of(scales[t]);
        int64_t i = start;
        for (; i < end && (i & 7); ++i) put(out, i, signed_bits(s, packed, i), accumulate);
#if defined(__AVX2__)
        const __m256i sv = _mm256_set1_epi32((int)s), top = _mm256_set1_epi32((int)0x80000000u);
        const __m256i shift = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);  /* bit j -> bit 31 */
        const int stream = !accumulate && (uint64_t)(end - i) * 4 >= STREAM_BYTES && ((uintptr_t)(out + i) & 31) == 0;
        for (; i + 8 <= end; i += 8) {
            const __m256i m = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(packed[i >> 3]), shift), top);
            const __m256 v = _mm256_castsi256_ps(_mm256_xor_si256(sv, m));
            if (accumulate) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), v));
            else if (stream) _mm256_stream_ps(out + i, v);
            else _mm256_storeu_ps(out + i, v);
        }
        if (stream) _mm_sfence();
#else
        for (; i + 8 <= end; i += 8) {
            const uint32_t b = packed[i >> 3];
            for (int j = 0; j < 8; ++j) put(out, i + j, s ^ (((b >> j) & 1u) << 31), accumulate);
        }
#endif
        for (; i < end; ++i) put(out, i, signed_bits(s, packed, i), accumulate);
        start = end;
    }
}
