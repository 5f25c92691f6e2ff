/* XXH3-64, written from the public algorithm description (xxHash's
 * doc/xxhash_spec.md). Inputs over 240 bytes run an 8-lane accumulate loop
 * with one implementation per instruction set: scalar everywhere, SSE2 as the
 * x86_64 baseline, AVX2 and AVX-512 picked at run time, NEON on aarch64.
 */
#include "ctxbin_core.h"
#include "core_internal.h"

#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define CB_GNU 1
#define CB_INLINE static inline __attribute__((always_inline))
#define CB_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#else
#define CB_GNU 0
#define CB_INLINE static __inline
#define CB_PREFETCH(p) ((void)0)
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define CB_X86_64 1
#include <emmintrin.h>
#if CB_GNU
#define CB_HAVE_AVX2 1
#include <immintrin.h>
#endif
#endif

/* (the NEON loop reads lanes in memory order: little-endian only) */
#if (defined(__aarch64__) || defined(_M_ARM64)) && \
    !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
#define CB_HAVE_NEON 1
#include <arm_neon.h>
#endif

#if defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
#endif

/* ---- constants (values fixed by the algorithm) ---- */

#define P32_1 0x9E3779B1U
#define P32_2 0x85EBCA77U
#define P32_3 0xC2B2AE3DU
#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL
#define PRIME_MX1 0x165667919E3779F9ULL
#define PRIME_MX2 0x9FB21C651E98DF25ULL

/* How far ahead of the current stripe to ask for input, in bytes. Measured
 * (benchmarks/bench_hash.py, Xeon/KVM): 4096 reads a 256 MiB buffer ~20% faster
 * than 384 and also speeds up runs of small tensors; 8192+ is slower again.
 * Prefetches never fault, so reaching past the end of the input is harmless. */
#ifndef CB_PREFETCH_DIST
#define CB_PREFETCH_DIST 4096
#endif

#define SECRET_SIZE 192
#define STRIPE_LEN 64
#define STRIPES_PER_BLOCK ((SECRET_SIZE - STRIPE_LEN) / 8)
#define BLOCK_LEN (STRIPE_LEN * STRIPES_PER_BLOCK)
_Static_assert(BLOCK_LEN == CTXBIN_XXH3_BLOCK_LEN, "block length");
_Static_assert(SECRET_SIZE == CTXBIN_XXH3_SECRET_SIZE, "secret size");

static const uint8_t k_secret[SECRET_SIZE] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c,
    0xf7, 0x21, 0xad, 0x1c, 0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb,
    0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f, 0xcb, 0x79, 0xe6, 0x4e,
    0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6,
    0x81, 0x3a, 0x26, 0x4c, 0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb,
    0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3, 0x71, 0x64, 0x48, 0x97,
    0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7,
    0xc7, 0x0b, 0x4f, 0x1d, 0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31,
    0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64, 0xea, 0xc5, 0xac, 0x83,
    0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26,
    0x29, 0xd4, 0x68, 0x9e, 0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc,
    0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, 0x45, 0xcb, 0x3a, 0x8f,
    0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* ---- primitives ---- */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define CB_BIG_ENDIAN 1
#else
#define CB_BIG_ENDIAN 0
#endif

CB_INLINE uint32_t bswap32(uint32_t x) {
    return ((x << 24) & 0xff000000U) | ((x << 8) & 0x00ff0000U) |
           ((x >> 8) & 0x0000ff00U) | ((x >> 24) & 0x000000ffU);
}

CB_INLINE uint64_t bswap64(uint64_t x) {
    return ((uint64_t)bswap32((uint32_t)x) << 32) | bswap32((uint32_t)(x >> 32));
}

/* The algorithm reads input and secret as little-endian words. */
CB_INLINE uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return CB_BIG_ENDIAN ? bswap32(v) : v;
}

CB_INLINE uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return CB_BIG_ENDIAN ? bswap64(v) : v;
}

CB_INLINE void wr64(uint8_t *p, uint64_t v) {
    if (CB_BIG_ENDIAN) v = bswap64(v);
    memcpy(p, &v, sizeof v);
}

CB_INLINE uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Full 64x64->128 product, folded to 64 bits by xoring its halves. */
CB_INLINE uint64_t mul128_fold64(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    __uint128_t p = (__uint128_t)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
#elif defined(_MSC_VER) && defined(_M_X64)
    uint64_t hi;
    uint64_t lo = _umul128(a, b, &hi);
    return lo ^ hi;
#else
    uint64_t al = a & 0xffffffffULL, ah = a >> 32;
    uint64_t bl = b & 0xffffffffULL, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffULL) + (hl & 0xffffffffULL);
    uint64_t lo = (mid << 32) | (ll & 0xffffffffULL);
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

CB_INLINE uint64_t avalanche_xxh64(uint64_t h) {
    h ^= h >> 33;
    h *= P64_2;
    h ^= h >> 29;
    h *= P64_3;
    h ^= h >> 32;
    return h;
}

CB_INLINE uint64_t avalanche(uint64_t h) {
    h ^= h >> 37;
    h *= PRIME_MX1;
    h ^= h >> 32;
    return h;
}

/* ---- 0..16 bytes ---- */

static uint64_t hash_0to16(const uint8_t *p, size_t len, const uint8_t *s, uint64_t seed) {
    if (len > 8) {
        uint64_t lo = rd64(p) ^ ((rd64(s + 24) ^ rd64(s + 32)) + seed);
        uint64_t hi = rd64(p + len - 8) ^ ((rd64(s + 40) ^ rd64(s + 48)) - seed);
        return avalanche((uint64_t)len + bswap64(lo) + hi + mul128_fold64(lo, hi));
    }
    if (len >= 4) {
        uint64_t mseed = seed ^ ((uint64_t)bswap32((uint32_t)seed) << 32);
        uint64_t combined = (uint64_t)rd32(p + len - 4) | ((uint64_t)rd32(p) << 32);
        uint64_t h = ((rd64(s + 8) ^ rd64(s + 16)) - mseed) ^ combined;
        h ^= rotl64(h, 49) ^ rotl64(h, 24);
        h *= PRIME_MX2;
        h ^= (h >> 35) + (uint64_t)len;
        h *= PRIME_MX2;
        return h ^ (h >> 28);
    }
    if (len > 0) {
        uint32_t combined = (uint32_t)p[len - 1] | ((uint32_t)len << 8) |
                            ((uint32_t)p[0] << 16) | ((uint32_t)p[len >> 1] << 24);
        uint64_t flip = (uint64_t)(rd32(s) ^ rd32(s + 4)) + seed;
        return avalanche_xxh64(flip ^ (uint64_t)combined);
    }
    return avalanche_xxh64(seed ^ rd64(s + 56) ^ rd64(s + 64));
}

/* ---- 17..240 bytes ---- */

CB_INLINE uint64_t mix16(const uint8_t *p, const uint8_t *s, uint64_t seed) {
    return mul128_fold64(rd64(p) ^ (rd64(s) + seed), rd64(p + 8) ^ (rd64(s + 8) - seed));
}

static uint64_t hash_17to128(const uint8_t *p, size_t len, const uint8_t *s, uint64_t seed) {
    uint64_t acc = (uint64_t)len * P64_1;
    size_t rounds = ((len - 1) >> 5) + 1;
    for (size_t i = 0; i < rounds; i++) {
        acc += mix16(p + 16 * i, s + 32 * i, seed);
        acc += mix16(p + len - 16 * i - 16, s + 32 * i + 16, seed);
    }
    return avalanche(acc);
}

static uint64_t hash_129to240(const uint8_t *p, size_t len, const uint8_t *s, uint64_t seed) {
    uint64_t acc = (uint64_t)len * P64_1;
    size_t chunks = len >> 4;
    for (size_t i = 0; i < 8; i++) acc += mix16(p + 16 * i, s + 16 * i, seed);
    acc = avalanche(acc);
    /* later chunks reuse the secret from byte 3; the last 16 bytes use 119 */
    for (size_t i = 8; i < chunks; i++) acc += mix16(p + 16 * i, s + 16 * (i - 8) + 3, seed);
    acc += mix16(p + len - 16, s + 119, seed);
    return avalanche(acc);
}

/* ---- over 240 bytes: accumulate / scramble, one variant per ISA ----
 *
 * accumulate_X(acc, in, secret, n) runs n stripes of 64 bytes, stripe k using
 * the secret from byte 8k; scramble_X(acc, secret) mixes the accumulators with
 * the last 64 secret bytes. The block loop and the last-block driver are
 * instantiated once per variant by DEFINE_HASH_LONG so each one keeps its loop
 * inlined; ctxbin_xxh3_long_* (core_internal.h) run them in pieces, so a long
 * input can be hashed a chunk at a time while the chunk is also compared.
 */

CB_INLINE void accumulate_scalar(uint64_t acc[8], const uint8_t *in, const uint8_t *secret,
                                 size_t nstripes) {
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        for (int i = 0; i < 8; i++) {
            uint64_t v = rd64(p + 8 * i);
            uint64_t k = v ^ rd64(s + 8 * i);
            acc[i ^ 1] += v;
            acc[i] += (k & 0xffffffffULL) * (k >> 32);
        }
    }
}

CB_INLINE void scramble_scalar(uint64_t acc[8], const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= rd64(s + 8 * i);
        acc[i] = a * P32_1;
    }
}

#define CB_NO_ATTR

#define DEFINE_HASH_LONG(SUFFIX, ATTR)                                                    \
    ATTR static void blocks_##SUFFIX(uint64_t acc[8], const uint8_t *p, size_t nblocks,  \
                                     const uint8_t *secret) {                            \
        for (size_t b = 0; b < nblocks; b++) {                                           \
            accumulate_##SUFFIX(acc, p + b * BLOCK_LEN, secret, STRIPES_PER_BLOCK);      \
            scramble_##SUFFIX(acc, secret);                                              \
        }                                                                                \
    }                                                                                    \
    /* the last block, without its last stripe, then the final 64 bytes */              \
    ATTR static void tail_##SUFFIX(uint64_t acc[8], const uint8_t *p, size_t len,        \
                                   const uint8_t *secret) {                              \
        size_t nblocks = (len - 1) / BLOCK_LEN;                                          \
        size_t tail = ((len - 1) - nblocks * BLOCK_LEN) / STRIPE_LEN;                    \
        accumulate_##SUFFIX(acc, p + nblocks * BLOCK_LEN, secret, tail);                 \
        accumulate_##SUFFIX(acc, p + len - STRIPE_LEN,                                   \
                            secret + SECRET_SIZE - STRIPE_LEN - 7, 1);                   \
    }

DEFINE_HASH_LONG(scalar, CB_NO_ATTR)

#if defined(CB_X86_64)

CB_INLINE void accumulate_sse2(uint64_t acc[8], const uint8_t *in, const uint8_t *secret,
                               size_t nstripes) {
    __m128i a[4];
    for (int j = 0; j < 4; j++) a[j] = _mm_loadu_si128((const __m128i *)(acc + 2 * j));
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        for (int j = 0; j < 4; j++) {
            __m128i d = _mm_loadu_si128((const __m128i *)(p + 16 * j));
            __m128i k = _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(s + 16 * j)));
            /* low 32 bits times high 32 bits of each 64-bit lane */
            __m128i prod = _mm_mul_epu32(k, _mm_srli_epi64(k, 32));
            /* each lane's input goes to its neighbour accumulator (i ^ 1) */
            __m128i swapped = _mm_shuffle_epi32(d, _MM_SHUFFLE(1, 0, 3, 2));
            a[j] = _mm_add_epi64(a[j], _mm_add_epi64(prod, swapped));
        }
    }
    for (int j = 0; j < 4; j++) _mm_storeu_si128((__m128i *)(acc + 2 * j), a[j]);
}

CB_INLINE void scramble_sse2(uint64_t acc[8], const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const __m128i prime = _mm_set1_epi32((int)P32_1);
    for (int j = 0; j < 4; j++) {
        __m128i a = _mm_loadu_si128((const __m128i *)(acc + 2 * j));
        a = _mm_xor_si128(a, _mm_srli_epi64(a, 47));
        a = _mm_xor_si128(a, _mm_loadu_si128((const __m128i *)(s + 16 * j)));
        /* 64x32-bit multiply from two 32x32->64 products */
        __m128i lo = _mm_mul_epu32(a, prime);
        __m128i hi = _mm_mul_epu32(_mm_srli_epi64(a, 32), prime);
        _mm_storeu_si128((__m128i *)(acc + 2 * j), _mm_add_epi64(lo, _mm_slli_epi64(hi, 32)));
    }
}

DEFINE_HASH_LONG(sse2, CB_NO_ATTR)

#endif /* CB_X86_64 */

#if defined(CB_HAVE_AVX2)

#define CB_AVX2 __attribute__((target("avx2")))

CB_AVX2 CB_INLINE void accumulate_avx2(uint64_t acc[8], const uint8_t *in,
                                       const uint8_t *secret, size_t nstripes) {
    __m256i a0 = _mm256_loadu_si256((const __m256i *)acc);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(acc + 4));
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        __m256i d0 = _mm256_loadu_si256((const __m256i *)p);
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(p + 32));
        __m256i k0 = _mm256_xor_si256(d0, _mm256_loadu_si256((const __m256i *)s));
        __m256i k1 = _mm256_xor_si256(d1, _mm256_loadu_si256((const __m256i *)(s + 32)));
        __m256i p0 = _mm256_mul_epu32(k0, _mm256_srli_epi64(k0, 32));
        __m256i p1 = _mm256_mul_epu32(k1, _mm256_srli_epi64(k1, 32));
        __m256i w0 = _mm256_shuffle_epi32(d0, _MM_SHUFFLE(1, 0, 3, 2));
        __m256i w1 = _mm256_shuffle_epi32(d1, _MM_SHUFFLE(1, 0, 3, 2));
        a0 = _mm256_add_epi64(a0, _mm256_add_epi64(p0, w0));
        a1 = _mm256_add_epi64(a1, _mm256_add_epi64(p1, w1));
    }
    _mm256_storeu_si256((__m256i *)acc, a0);
    _mm256_storeu_si256((__m256i *)(acc + 4), a1);
}

CB_AVX2 CB_INLINE void scramble_avx2(uint64_t acc[8], const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const __m256i prime = _mm256_set1_epi32((int)P32_1);
    for (int j = 0; j < 2; j++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 4 * j));
        a = _mm256_xor_si256(a, _mm256_srli_epi64(a, 47));
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(s + 32 * j)));
        __m256i lo = _mm256_mul_epu32(a, prime);
        __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), prime);
        _mm256_storeu_si256((__m256i *)(acc + 4 * j),
                            _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32)));
    }
}

DEFINE_HASH_LONG(avx2, CB_AVX2)

#endif /* CB_HAVE_AVX2 */

#if defined(CB_HAVE_AVX2)

/* One stripe is one 512-bit register: in cache this runs ~1.3x the AVX2 loop
 * (the xxhash package's speed), but streaming from DRAM it was 5-35% slower
 * than AVX2 on the Xeon of benchmarks/RESULTS.md, so AUTO uses it only for
 * inputs up to CTXBIN_SHORT_MAX (ctxbin_auto_impl). */
#define CB_AVX512 __attribute__((target("avx512f")))

CB_AVX512 CB_INLINE void accumulate_avx512(uint64_t acc[8], const uint8_t *in,
                                           const uint8_t *secret, size_t nstripes) {
    __m512i a = _mm512_loadu_si512((const void *)acc);
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        __m512i d = _mm512_loadu_si512((const void *)p);
        __m512i k = _mm512_xor_si512(d, _mm512_loadu_si512((const void *)(secret + n * 8)));
        __m512i prod = _mm512_mul_epu32(k, _mm512_srli_epi64(k, 32));
        __m512i swapped = _mm512_shuffle_epi32(d, (_MM_PERM_ENUM)_MM_SHUFFLE(1, 0, 3, 2));
        a = _mm512_add_epi64(a, _mm512_add_epi64(prod, swapped));
    }
    _mm512_storeu_si512((void *)acc, a);
}

CB_AVX512 CB_INLINE void scramble_avx512(uint64_t acc[8], const uint8_t *secret) {
    const __m512i prime = _mm512_set1_epi32((int)P32_1);
    __m512i a = _mm512_loadu_si512((const void *)acc);
    a = _mm512_xor_si512(a, _mm512_srli_epi64(a, 47));
    a = _mm512_xor_si512(a, _mm512_loadu_si512((const void *)(secret + SECRET_SIZE - STRIPE_LEN)));
    __m512i lo = _mm512_mul_epu32(a, prime);
    __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), prime);
    _mm512_storeu_si512((void *)acc, _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32)));
}

DEFINE_HASH_LONG(avx512, CB_AVX512)

#endif /* CB_HAVE_AVX2 */

#if defined(CB_HAVE_NEON)

CB_INLINE void accumulate_neon(uint64_t acc[8], const uint8_t *in, const uint8_t *secret,
                               size_t nstripes) {
    uint64x2_t a[4];
    for (int j = 0; j < 4; j++) a[j] = vld1q_u64(acc + 2 * j);
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        for (int j = 0; j < 4; j++) {
            uint64x2_t d = vreinterpretq_u64_u8(vld1q_u8(p + 16 * j));
            uint64x2_t k = veorq_u64(d, vreinterpretq_u64_u8(vld1q_u8(s + 16 * j)));
            uint64x2_t prod = vmull_u32(vmovn_u64(k), vshrn_n_u64(k, 32));
            uint64x2_t swapped = vextq_u64(d, d, 1);
            a[j] = vaddq_u64(a[j], vaddq_u64(prod, swapped));
        }
    }
    for (int j = 0; j < 4; j++) vst1q_u64(acc + 2 * j, a[j]);
}

CB_INLINE void scramble_neon(uint64_t acc[8], const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const uint32x2_t prime = vdup_n_u32(P32_1);
    for (int j = 0; j < 4; j++) {
        uint64x2_t a = vld1q_u64(acc + 2 * j);
        a = veorq_u64(a, vshrq_n_u64(a, 47));
        a = veorq_u64(a, vreinterpretq_u64_u8(vld1q_u8(s + 16 * j)));
        uint64x2_t lo = vmull_u32(vmovn_u64(a), prime);
        uint64x2_t hi = vmull_u32(vshrn_n_u64(a, 32), prime);
        vst1q_u64(acc + 2 * j, vaddq_u64(lo, vshlq_n_u64(hi, 32)));
    }
}

DEFINE_HASH_LONG(neon, CB_NO_ATTR)

#endif /* CB_HAVE_NEON */

/* ---- dispatch ---- */

static int cpu_has_avx2(void) {
#if defined(CB_HAVE_AVX2)
    __builtin_cpu_init(); /* idempotent; needed before constructors have run */
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

/* (libgcc also checks that the OS saves the 512-bit state) */
static int cpu_has_avx512(void) {
#if defined(CB_HAVE_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

unsigned ctxbin_impls_available(void) {
    unsigned mask = 1u << CTXBIN_IMPL_SCALAR;
#if defined(CB_X86_64)
    mask |= 1u << CTXBIN_IMPL_SSE2;
#endif
    if (cpu_has_avx2()) mask |= 1u << CTXBIN_IMPL_AVX2;
    if (cpu_has_avx512()) mask |= 1u << CTXBIN_IMPL_AVX512;
#if defined(CB_HAVE_NEON)
    mask |= 1u << CTXBIN_IMPL_NEON;
#endif
    return mask;
}

int ctxbin_best_impl(void) {
    if (cpu_has_avx2()) return CTXBIN_IMPL_AVX2;
#if defined(CB_X86_64)
    return CTXBIN_IMPL_SSE2;
#elif defined(CB_HAVE_NEON)
    return CTXBIN_IMPL_NEON;
#else
    return CTXBIN_IMPL_SCALAR;
#endif
}

/* Short inputs (CTXBIN_SHORT_MAX): equal from DRAM, AVX-512 ahead in cache (they often are). */
int ctxbin_short_impl(void) {
    return cpu_has_avx512() ? CTXBIN_IMPL_AVX512 : ctxbin_best_impl();
}

int ctxbin_auto_impl(size_t len) {
    if (len <= CTXBIN_XXH3_MID_MAX) return CTXBIN_IMPL_SCALAR; /* no accumulate loop */
    return len <= CTXBIN_SHORT_MAX ? ctxbin_short_impl() : ctxbin_best_impl();
}

const char *ctxbin_impl_name(int impl) {
    if (impl == CTXBIN_IMPL_AUTO && ctxbin_short_impl() != ctxbin_best_impl())
        return "avx2+avx512"; /* AVX-512 up to CTXBIN_SHORT_MAX bytes, AVX2 beyond */
    switch (impl == CTXBIN_IMPL_AUTO ? ctxbin_best_impl() : impl) {
    case CTXBIN_IMPL_SCALAR: return "scalar";
    case CTXBIN_IMPL_SSE2: return "sse2";
    case CTXBIN_IMPL_AVX2: return "avx2";
    case CTXBIN_IMPL_AVX512: return "avx512";
    case CTXBIN_IMPL_NEON: return "neon";
    default: return "unknown";
    }
}

void ctxbin_xxh3_long_init(ctxbin_xxh3_long *st, uint64_t seed, int impl) {
    static const uint64_t init[8] = {P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1};
    memcpy(st->acc, init, sizeof init);
    st->seeded = seed != 0;
    st->impl = impl;
    if (st->seeded) {
        /* seeded long inputs use the default secret with the seed added to
         * its even 64-bit words and subtracted from its odd ones */
        for (int i = 0; i < SECRET_SIZE / 16; i++) {
            wr64(st->secret + 16 * i, rd64(k_secret + 16 * i) + seed);
            wr64(st->secret + 16 * i + 8, rd64(k_secret + 16 * i + 8) - seed);
        }
    }
}

void ctxbin_xxh3_long_blocks(ctxbin_xxh3_long *st, const uint8_t *p, size_t nblocks) {
    const uint8_t *secret = st->seeded ? st->secret : k_secret;
    switch (st->impl) {
#if defined(CB_HAVE_AVX2)
    case CTXBIN_IMPL_AVX512: blocks_avx512(st->acc, p, nblocks, secret); return;
    case CTXBIN_IMPL_AVX2: blocks_avx2(st->acc, p, nblocks, secret); return;
#endif
#if defined(CB_X86_64)
    case CTXBIN_IMPL_SSE2: blocks_sse2(st->acc, p, nblocks, secret); return;
#endif
#if defined(CB_HAVE_NEON)
    case CTXBIN_IMPL_NEON: blocks_neon(st->acc, p, nblocks, secret); return;
#endif
    default: blocks_scalar(st->acc, p, nblocks, secret); return;
    }
}

uint64_t ctxbin_xxh3_long_finish(ctxbin_xxh3_long *st, const uint8_t *p, size_t len) {
    const uint8_t *secret = st->seeded ? st->secret : k_secret;
    uint64_t acc[8];
    memcpy(acc, st->acc, sizeof acc); /* finishing leaves the state reusable */
    switch (st->impl) {
#if defined(CB_HAVE_AVX2)
    case CTXBIN_IMPL_AVX512: tail_avx512(acc, p, len, secret); break;
    case CTXBIN_IMPL_AVX2: tail_avx2(acc, p, len, secret); break;
#endif
#if defined(CB_X86_64)
    case CTXBIN_IMPL_SSE2: tail_sse2(acc, p, len, secret); break;
#endif
#if defined(CB_HAVE_NEON)
    case CTXBIN_IMPL_NEON: tail_neon(acc, p, len, secret); break;
#endif
    default: tail_scalar(acc, p, len, secret); break;
    }
    uint64_t h = (uint64_t)len * P64_1;
    for (int i = 0; i < 4; i++)
        h += mul128_fold64(acc[2 * i] ^ rd64(secret + 11 + 16 * i),
                           acc[2 * i + 1] ^ rd64(secret + 19 + 16 * i));
    return avalanche(h);
}

static uint64_t hash_long(const uint8_t *p, size_t len, uint64_t seed, int impl) {
    ctxbin_xxh3_long st;
    ctxbin_xxh3_long_init(&st, seed, impl);
    ctxbin_xxh3_long_blocks(&st, p, (len - 1) / BLOCK_LEN);
    return ctxbin_xxh3_long_finish(&st, p, len);
}

uint64_t ctxbin_xxh3_64_with(const uint8_t *p, size_t len, uint64_t seed, int impl) {
    if (len <= 16) return hash_0to16(p, len, k_secret, seed);
    if (len <= 128) return hash_17to128(p, len, k_secret, seed);
    if (len <= CTXBIN_XXH3_MID_MAX) return hash_129to240(p, len, k_secret, seed);
    return hash_long(p, len, seed, impl);
}

uint64_t ctxbin_xxh3_64(const void *data, size_t len, uint64_t seed) {
    static const uint8_t empty[1] = {0};
    if (data == NULL) return ctxbin_xxh3_64_with(empty, 0, seed, CTXBIN_IMPL_SCALAR);
    return ctxbin_xxh3_64_with((const uint8_t *)data, len, seed, ctxbin_auto_impl(len));
}

int ctxbin_xxh3_64_impl(const void *data, size_t len, uint64_t seed, int impl,
                        uint64_t *out) {
    if (out == NULL || (data == NULL && len != 0)) return CTXBIN_EINVAL;
    if (impl < CTXBIN_IMPL_AUTO || impl > CTXBIN_IMPL_AVX512) return CTXBIN_EINVAL;
    if (impl == CTXBIN_IMPL_AUTO) impl = ctxbin_auto_impl(len);
    if (!(ctxbin_impls_available() & (1u << impl))) return CTXBIN_EUNSUPPORTED;
    static const uint8_t empty[1] = {0};
    *out = ctxbin_xxh3_64_with(data ? (const uint8_t *)data : empty, len, seed, impl);
    return CTXBIN_OK;
}

const char *ctxbin_strerror(int status) {
    switch (status) {
    case CTXBIN_OK: return "success";
    case CTXBIN_EINVAL: return "invalid argument (NULL pointer or impossible value)";
    case CTXBIN_ERANGE: return "a byte range lies outside its buffer";
    case CTXBIN_ENOMEM: return "out of memory";
    case CTXBIN_EUNSUPPORTED: return "the requested SIMD implementation is not available on this CPU";
    default: return "unknown ctxbin status code";
    }
}
