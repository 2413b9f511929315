/* QSGD kernels for hpcgan.compress.qsgd: one pass over memory each way.

   x is a flat fp32 buffer of T tensors laid end to end (tensor t holds sizes[t] values). With s
   levels, norms[t] = ||x_t||_2 (computed by the caller), inv[t] = s / norms[t] in fp32 (0 for a zero
   tensor) and the uniform u_i of coordinate i:
     compress:   l_i = min(floor(|x_i| inv[t] + u_i), s),  code_i = s - l_i if x_i < 0 else s + l_i,
                 bit j of code_i -> bit (i mod 8) of byte i/8 of plane j (planes of ceil(n/8) bytes)
     decompress: out_i = (code_i - s) scale[t], or out_i += that when accumulating, with
                 scale[t] = fp32(fp64(norms[t]) / denom[t]), denom[t] = s (1 + omega_t) in fp64
   u_i = (h_i >> 8) 2^-24, h_i = mix32((i ^ k0) + k1) with mix32 = lowbias32: the counter-based
   generator of counter.py. Every product and sum is one IEEE fp32 operation in the order written
   (no contraction into FMA), the same as the torch fallback in qsgd.py, so both produce the same
   bits for finite x. compress writes every byte of the planes (a byte shared by two tensors is zeroed,
   then OR-ed together); codes fit a byte (s <= 127, at most 8 planes).

   With AVX-512 (F and BW) compress handles 64 values per step: 4 x 16 codes narrowed to 64 bytes,
   one test-into-mask per plane writes 8 bytes of it; decompress ORs one byte-masked move per plane
   into 64 codes and streams large outputs past the cache. With AVX2 (and for what is left), compress
   handles 32 values per step: 4 x 8 codes packed to 32 bytes, one movemask per plane writes 4 bytes;
   decompress spreads 4 bytes of each plane over 32 byte lanes (shuffle, and, compare) and ORs the
   planes into 32 codes. The portable loops assemble 8 codes per byte group with a table of spread
   bits. Every path computes the same codes and values. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF  /* gcc does not contract in ISO C mode (-std=c11) */
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define QSGD_AVX512 1
#endif
#define STREAM_BYTES (8u << 20)  /* decompressed outputs this large bypass the cache */

const char *hpcgan_qsgd_isa(void)
{
#if defined(QSGD_AVX512)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#else
    return "portable";
#endif
}

static inline uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static inline uint32_t code_of(float v, float inv, uint32_t i, uint32_t k0, uint32_t k1, int32_t s)
{
    const float u = (float)(mix32((i ^ k0) + k1) >> 8) * 0x1p-24f;
    const float a = fabsf(v) * inv;
    const float y = a + u;
    const int32_t l = (int32_t)fminf(floorf(y), (float)s);
    return (uint32_t)(v < 0.0f ? s - l : s + l);
}

static inline void put_bits(uint8_t *packed, int64_t plane_len, int planes, int64_t i, uint32_t code)
{
    for (int j = 0; j < planes; ++j)
        packed[j * plane_len + (i >> 3)] |= (uint8_t)(((code >> j) & 1u) << (i & 7));
}

#if defined(QSGD_AVX512)
static inline __m512i mix32x16(__m512i x)
{
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int32_t)0x846ca68bu));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

/* 16 codes (int32 lanes) of x[i..i+16) */
static inline __m512i codes16(const float *x, int64_t i, __m512 inv, __m512i k0, __m512i k1, __m512i s)
{
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(uint32_t)i),
                                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i h = mix32x16(_mm512_add_epi32(_mm512_xor_si512(idx, k0), k1));
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(h, 8)), _mm512_set1_ps(0x1p-24f));
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512 a = _mm512_mul_ps(_mm512_abs_ps(v), inv);
    const __m512 y = _mm512_add_ps(a, u);
    const __m512 f = _mm512_min_ps(_mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC),
                                   _mm512_cvtepi32_ps(s));
    const __m512i l = _mm512_cvttps_epi32(f);
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_epi32(neg, _mm512_add_epi32(s, l), _mm512_sub_epi32(s, l));
}
#endif

#if defined(__AVX2__)
static inline __m256i mix32x8(__m256i x)
{
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int32_t)0x846ca68bu));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

/* 8 codes (int32 lanes) of x[i..i+8) */
static inline __m256i codes8(const float *x, int64_t i, __m256 inv, __m256i k0, __m256i k1, __m256i s)
{
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int32_t)(uint32_t)i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i h = mix32x8(_mm256_add_epi32(_mm256_xor_si256(idx, k0), k1));
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h, 8)), _mm256_set1_ps(0x1p-24f));
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 a = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), inv);
    const __m256 y = _mm256_add_ps(a, u);
    const __m256i l = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_floor_ps(y), _mm256_cvtepi32_ps(s)));
    const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_blendv_epi8(_mm256_add_epi32(s, l), _mm256_sub_epi32(s, l), neg);
}
#endif

void hpcgan_qsgd_compress(const float *restrict x, const int64_t *restrict sizes, int64_t T,
                          const float *restrict norms, int32_t s, uint32_t k0, uint32_t k1, int32_t planes,
                          uint8_t *restrict packed)
{
    int64_t total = 0;
    for (int64_t t = 0; t < T; ++t) total += sizes[t];
    const int64_t plane_len = (total + 7) / 8;
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {  /* zero the bytes that are OR-ed into: shared or padded ones */
        const int64_t end = start + sizes[t];
        for (int j = 0; j < planes; ++j) {
            if (start & 7) packed[j * plane_len + (start >> 3)] = 0;
            if (end & 7) packed[j * plane_len + (end >> 3)] = 0;
        }
        start = end;
    }
    start = 0;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t end = start + sizes[t];
        const float inv = norms[t] > 0.0f ? (float)s / norms[t] : 0.0f;
        int64_t i = start;
        for (; i < end && (i & 7); ++i) put_bits(packed, plane_len, planes, i, code_of(x[i], inv, (uint32_t)i, k0, k1, s));
#if defined(QSGD_AVX512)
        {
            const __m512 vinv = _mm512_set1_ps(inv);
            const __m512i vk0 = _mm512_set1_epi32((int32_t)k0), vk1 = _mm512_set1_epi32((int32_t)k1);
            const __m512i vs = _mm512_set1_epi32(s);
            for (; i + 64 <= end; i += 64) {
                __m512i bytes = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(codes16(x, i, vinv, vk0, vk1, vs)));
                bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(codes16(x, i + 16, vinv, vk0, vk1, vs)), 1);
                bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(codes16(x, i + 32, vinv, vk0, vk1, vs)), 2);
                bytes = _mm512_inserti32x4(bytes, _mm512_cvtepi32_epi8(codes16(x, i + 48, vinv, vk0, vk1, vs)), 3);
                for (int j = 0; j < planes; ++j) {
                    const uint64_t m = _mm512_test_epi8_mask(bytes, _mm512_set1_epi8((char)(1 << j)));
                    memcpy(packed + j * plane_len + (i >> 3), &m, sizeof m);
                }
            }
        }
#endif
#if defined(__AVX2__)
        const __m256 vinv = _mm256_set1_ps(inv);
        const __m256i vk0 = _mm256_set1_epi32((int32_t)k0), vk1 = _mm256_set1_epi32((int32_t)k1), vs = _mm256_set1_epi32(s);
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= end; i += 32) {
            const __m256i c0 = codes8(x, i, vinv, vk0, vk1, vs), c1 = codes8(x, i + 8, vinv, vk0, vk1, vs);
            const __m256i c2 = codes8(x, i + 16, vinv, vk0, vk1, vs), c3 = codes8(x, i + 24, vinv, vk0, vk1, vs);
            const __m256i bytes = _mm256_permutevar8x32_epi32(
                _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3)), order);
            for (int j = 0; j < planes; ++j) {
                const uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 7 - j));
                memcpy(packed + j * plane_len + (i >> 3), &m, sizeof m);
            }
        }
#endif
        for (; i + 8 <= end; i += 8) {
            uint64_t w = 0;
            for (int b = 0; b < 8; ++b) w |= (uint64_t)code_of(x[i + b], inv, (uint32_t)(i + b), k0, k1, s) << (8 * b);
            for (int j = 0; j < planes; ++j)
                packed[j * plane_len + (i >> 3)] = (uint8_t)((((w >> j) & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56);
        }
        for (; i < end; ++i) put_bits(packed, plane_len, planes, i, code_of(x[i], inv, (uint32_t)i, k0, k1, s));
        start = end;
    }
}

/* SPREAD[b]: byte j of the word = bit j of b */
static uint64_t SPREAD[256];
static int spread_ready;

static void init_spread(void)
{
    if (spread_ready) return;
    for (int b = 0; b < 256; ++b) {
        uint64_t w = 0;
        for (int j = 0; j < 8; ++j) w |= (uint64_t)((b >> j) & 1) << (8 * j);
        SPREAD[b] = w;
    }
    spread_ready = 1;
}

static inline uint32_t code_at(const uint8_t *packed, int64_t plane_len, int planes, int64_t i)
{
    uint32_t c = 0;
    for (int j = 0; j < planes; ++j) c |= (uint32_t)((packed[j * plane_len + (i >> 3)] >> (i & 7)) & 1u) << j;
    return c;
}

static inline void put(float *out, int64_t i, float v, int accumulate)
{
    out[i] = accumulate ? out[i] + v : v;
}

void hpcgan_qsgd_decompress(const uint8_t *restrict packed, const int64_t *restrict sizes, int64_t T,
                            const float *restrict norms, const double *restrict denom, int32_t s, int32_t planes,
                            float *restrict out, int accumulate)
{
    init_spread();
    int64_t total = 0;
    for (int64_t t = 0; t < T; ++t) total += sizes[t];
    const int64_t plane_len = (total + 7) / 8;
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t end = start + sizes[t];
        const float sc = (float)((double)norms[t] / denom[t]);
        int64_t i = start;
        for (; i < end && (i & 7); ++i) put(out, i, (float)((int32_t)code_at(packed, plane_len, planes, i) - s) * sc, accumulate);
#if defined(QSGD_AVX512)
        {
            const __m512 vsc = _mm512_set1_ps(sc);
            const __m512i vs = _mm512_set1_epi32(s);
            const int stream = !accumulate && (uint64_t)(end - i) * 4 >= STREAM_BYTES && ((uintptr_t)(out + i) & 63) == 0;
            for (; i + 64 <= end; i += 64) {
                __m512i codes = _mm512_setzero_si512();
                for (int j = 0; j < planes; ++j) {
                    uint64_t b;
                    memcpy(&b, packed + j * plane_len + (i >> 3), sizeof b);
                    codes = _mm512_or_si512(codes, _mm512_maskz_mov_epi8((__mmask64)b, _mm512_set1_epi8((char)(1 << j))));
                }
                for (int q = 0; q < 4; ++q) {
                    const __m512i c = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(codes, q));
                    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c, vs)), vsc);
                    float *o = out + i + 16 * q;
                    if (accumulate) _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), v));
                    else if (stream) _mm512_stream_ps(o, v);
                    else _mm512_storeu_ps(o, v);
                }
            }
            if (stream) _mm_sfence();
        }
#endif
#if defined(__AVX2__)
        const __m256 vsc = _mm256_set1_ps(sc);
        const __m256i vs = _mm256_set1_epi32(s);
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
        for (; i + 32 <= end; i += 32) {
            __m256i codes = _mm256_setzero_si256();
            for (int j = 0; j < planes; ++j) {
                int32_t b;
                memcpy(&b, packed + j * plane_len + (i >> 3), sizeof b);
                const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(b), spread), bit);
                codes = _mm256_or_si256(codes, _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8((char)(1 << j))));
            }
            const __m128i halves[2] = {_mm256_castsi256_si128(codes), _mm256_extracti128_si256(codes, 1)};
            for (int q = 0; q < 4; ++q) {
                const __m128i c8 = (q & 1) ? _mm_srli_si128(halves[q >> 1], 8) : halves[q >> 1];
                const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(c8), vs)), vsc);
                float *o = out + i + 8 * q;
                if (accumulate) _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), v));
                else _mm256_storeu_ps(o, v);
            }
        }
#endif
        for (; i + 8 <= end; i += 8) {
            uint64_t w = 0;
            for (int j = 0; j < planes; ++j) w |= SPREAD[packed[j * plane_len + (i >> 3)]] << j;
#if defined(__AVX2__)
            const __m256i c = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)w));
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, vs)), vsc);
            if (accumulate) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), v));
            else _mm256_storeu_ps(out + i, v);
#else
            for (int b = 0; b < 8; ++b) put(out, i + b, (float)((int32_t)((w >> (8 * b)) & 255u) - s) * sc, accumulate);
#endif
        }
        for (; i < end; ++i) put(out, i, (float)((int32_t)code_at(packed, plane_len, planes, i) - s) * sc, accumulate);
        start = end;
    }
}
