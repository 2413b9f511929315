/* 16-bit float casts for hpcgan.compress.cast: fp32 <-> fp16 and fp32 <-> bf16, one pass each way;
   and the elementwise 16-bit sums y = lowp(fp32(x) + fp32(y)) that the communicators' fp16/bf16
   allreduce applies to each pair of partial sums (hpcgan.comm.halfsum).

   A cast is bound by memory traffic, not arithmetic: compress reads 4 bytes and writes 2 per value,
   decompress reads 2 and writes 4. An ordinary store first reads the cache line it writes (a
   read-for-ownership), so a large output costs its size twice; outputs of STREAM_BYTES or more are
   written with streaming stores, which skip that read and the cache, as memcpy does for large
   copies. Smaller outputs stay in the cache for whoever reads them next.

   Rounding is IEEE round-to-nearest-even, as torch's casts on CPU and GPU: fp16 by the hardware
   conversion (F16C / AVX-512), bf16 by rounding the upper 16 bits of the fp32 encoding
   ((u + 0x7fff + ((u >> 16) & 1)) >> 16; a NaN becomes the quiet NaN 0x7fc0). Same bits as
   torch for every non-NaN value; NaN stays NaN.

   A 16-bit sum converts both operands to fp32 (exact), adds in fp32 and rounds once to 16 bits
   (nearest even). The fp32 sum of two values of p-bit precision rounded to 16 bits is the correctly
   rounded 16-bit sum, since fp32's 24 bits are >= 2p + 2 (p = 11 for fp16, 8 for bf16: double
   rounding is innocuous), so each pairwise sum is what exact arithmetic rounded once would give,
   and x + y = y + x bit for bit.

   Built for AVX-512F, or AVX2 + F16C; elsewhere hpcgan_cast_isa() says "none" and cast.py uses
   torch's casts. */
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__))
#include <immintrin.h>
#endif

#define STREAM_BYTES (8u << 20)   /* outputs this large bypass the cache */

const char *hpcgan_cast_isa(void)
{
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__) && defined(__F16C__)
    return "avx2";
#else
    return "none";
#endif
}

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__))

#if defined(__AVX512F__)
#define LANES 16
#else
#define LANES 8
#endif
#define ALIGN (LANES * 4)   /* bytes of one vector of fp32: the streaming stores' alignment */

static inline uint16_t bf16_of(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float f32_of_bf16(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline int streamed(int64_t n, size_t out_bytes) { return (uint64_t)n * out_bytes >= STREAM_BYTES; }

/* values before out + head are done one by one, so that the vector stores are aligned */
static inline int64_t head(const void *out, size_t out_bytes, int64_t n)
{
    const int64_t h = (int64_t)(((ALIGN - (uintptr_t)out % ALIGN) % ALIGN) / out_bytes);
    return h < n ? h : n;
}

#if defined(__AVX512F__)
typedef __m512 vf;
typedef __m512i vi;
typedef __m256i vh;   /* LANES 16-bit values */
#define LOAD(p) _mm512_loadu_ps(p)
#define ADD(a, b) _mm512_add_ps(a, b)
#define STORE(p, v, s) ((s) ? _mm512_stream_ps(p, v) : _mm512_store_ps(p, v))
#define STORE_H(p, v, s) ((s) ? _mm256_stream_si256((__m256i *)(p), v) : _mm256_store_si256((__m256i *)(p), v))
#define LOAD_H(p) _mm256_loadu_si256((const __m256i *)(p))
#define STOREU_H(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define TO_F16(v) _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define FROM_F16(h) _mm512_cvtph_ps(h)
static inline vh to_bf16(vf v)
{
    const vi u = _mm512_castps_si512(v);
    const vi r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                   _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc0)));
}
static inline vf from_bf16(vh h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
#else
typedef __m256 vf;
typedef __m256i vi;
typedef __m128i vh;
#define LOAD(p) _mm256_loadu_ps(p)
#define ADD(a, b) _mm256_add_ps(a, b)
#define STORE(p, v, s) ((s) ? _mm256_stream_ps(p, v) : _mm256_store_ps(p, v))
#define STORE_H(p, v, s) ((s) ? _mm_stream_si128((__m128i *)(p), v) : _mm_store_si128((__m128i *)(p), v))
#define LOAD_H(p) _mm_loadu_si128((const __m128i *)(p))
#define STOREU_H(p, v) _mm_storeu_si128((__m128i *)(p), v)
#define TO_F16(v) _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define FROM_F16(h) _mm256_cvtph_ps(h)
static inline vh to_bf16(vf v)
{
    const vi u = _mm256_castps_si256(v);
    vi r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                             _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)))), 16);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    const vi packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);   /* lanes 0 and 2 */
    return _mm256_castsi256_si128(packed);
}
static inline vf from_bf16(vh h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
#endif

/* The output pointers are 16-bit or 32-bit aligned (torch's are 64-byte aligned), so the loops
   below reach an ALIGN-byte boundary after at most LANES - 1 values. */

void hpcgan_f32_to_f16(const float *restrict x, uint16_t *restrict y, int64_t n)
{
    const int s = streamed(n, 2);
    int64_t i = head(y, 2, n);
    for (int64_t j = 0; j < i; ++j) y[j] = _cvtss_sh(x[j], _MM_FROUND_TO_NEAREST_INT);
    for (; i + LANES <= n; i += LANES) STORE_H(y + i, TO_F16(LOAD(x + i)), s);
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
    if (s) _mm_sfence();
}

void hpcgan_f16_to_f32(const uint16_t *restrict x, float *restrict y, int64_t n)
{
    const int s = streamed(n, 4);
    int64_t i = head(y, 4, n);
    for (int64_t j = 0; j < i; ++j) y[j] = _cvtsh_ss(x[j]);
    for (; i + LANES <= n; i += LANES) STORE(y + i, FROM_F16(LOAD_H(x + i)), s);
    for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
    if (s) _mm_sfence();
}

void hpcgan_f32_to_bf16(const float *restrict x, uint16_t *restrict y, int64_t n)
{
    const int s = streamed(n, 2);
    int64_t i = head(y, 2, n);
    for (int64_t j = 0; j < i; ++j) y[j] = bf16_of(x[j]);
    for (; i + LANES <= n; i += LANES) STORE_H(y + i, to_bf16(LOAD(x + i)), s);
    for (; i < n; ++i) y[i] = bf16_of(x[i]);
    if (s) _mm_sfence();
}

void hpcgan_bf16_to_f32(const uint16_t *restrict x, float *restrict y, int64_t n)
{
    const int s = streamed(n, 4);
    int64_t i = head(y, 4, n);
    for (int64_t j = 0; j < i; ++j) y[j] = f32_of_bf16(x[j]);
    for (; i + LANES <= n; i += LANES) STORE(y + i, from_bf16(LOAD_H(x + i)), s);
    for (; i < n; ++i) y[i] = f32_of_bf16(x[i]);
    if (s) _mm_sfence();
}

/* y = lowp(fp32(x) + fp32(y)) elementwise, in place on y (x and y do not overlap). Outputs are
   read right before they are written, so ordinary stores; no alignment needed. */

void hpcgan_f16_add(const uint16_t *restrict x, uint16_t *restrict y, int64_t n)
{
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        STOREU_H(y + i, TO_F16(ADD(FROM_F16(LOAD_H(x + i)), FROM_F16(LOAD_H(y + i)))));
    for (; i < n; ++i) y[i] = _cvtss_sh(_cvtsh_ss(x[i]) + _cvtsh_ss(y[i]), _MM_FROUND_TO_NEAREST_INT);
}

void hpcgan_bf16_add(const uint16_t *restrict x, uint16_t *restrict y, int64_t n)
{
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        STOREU_H(y + i, to_bf16(ADD(from_bf16(LOAD_H(x + i)), from_bf16(LOAD_H(y + i)))));
    for (; i < n; ++i) y[i] = bf16_of(f32_of_bf16(x[i]) + f32_of_bf16(y[i]));
}

#endif
