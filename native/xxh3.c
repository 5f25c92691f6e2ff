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
#else
#define CB_GNU 0
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
 * Lane swap: each stripe adds its input word i to accumulator i ^ 1. The
 * vector loops sum the input words in their own lanes instead and swap the
 * lanes of the sum once per call: the same 64-bit sums (the swap moves whole
 * lanes, and addition is lane-wise), one shuffle less per stripe.
 *
 * Each variant holds the 8 accumulators in its own state type acc_X (vector
 * registers), moved to and from uint64_t[8] by load_X / store_X;
 * accumulate_X(a, in, secret, n) runs n stripes of 64 bytes, stripe k using
 * the secret from byte 8k; scramble_X(a, secret) mixes the accumulators with
 * the last 64 secret bytes. DEFINE_HASH_LONG instantiates per variant the
 * block loop and the last-block driver behind ctxbin_xxh3_long_* (core_internal.h:
 * a long input hashed a chunk at a time while the chunk is also compared),
 * and hash_X, a whole input in one call. For inputs up to one block (the
 * many of a few hundred bytes of ctxbin_hash_many) hash_X keeps the state in
 * registers from its initial value to the merge: no store and reload between
 * dispatch layers, ~20% less time per input in cache than one call per layer.
 */

typedef struct {
    uint64_t v[8];
} acc_scalar;

CB_INLINE acc_scalar load_scalar(const uint64_t acc[8]) {
    acc_scalar a;
    memcpy(a.v, acc, sizeof a.v);
    return a;
}

CB_INLINE void store_scalar(uint64_t acc[8], acc_scalar a) { memcpy(acc, a.v, sizeof a.v); }

CB_INLINE void accumulate_scalar(acc_scalar *a, const uint8_t *in, const uint8_t *secret,
                                 size_t nstripes) {
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        for (int i = 0; i < 8; i++) {
            uint64_t v = rd64(p + 8 * i);
            uint64_t k = v ^ rd64(s + 8 * i);
            a->v[i ^ 1] += v;
            a->v[i] += (k & 0xffffffffULL) * (k >> 32);
        }
    }
}

CB_INLINE void scramble_scalar(acc_scalar *a, const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    for (int i = 0; i < 8; i++) {
        uint64_t x = a->v[i];
        x ^= x >> 47;
        x ^= rd64(s + 8 * i);
        a->v[i] = x * P32_1;
    }
}

#define CB_NO_ATTR

#define DEFINE_HASH_LONG(SUFFIX, ATTR)                                                    \
    ATTR CB_INLINE void run_blocks_##SUFFIX(acc_##SUFFIX *a, const uint8_t *p,           \
                                            size_t nblocks, const uint8_t *secret) {     \
        for (size_t b = 0; b < nblocks; b++) {                                           \
            accumulate_##SUFFIX(a, p + b * BLOCK_LEN, secret, STRIPES_PER_BLOCK);        \
            scramble_##SUFFIX(a, secret);                                                \
        }                                                                                \
    }                                                                                    \
    /* the last block, without its last stripe, then the final 64 bytes */              \
    ATTR CB_INLINE void run_tail_##SUFFIX(acc_##SUFFIX *a, const uint8_t *p, size_t len, \
                                          const uint8_t *secret) {                       \
        size_t nblocks = (len - 1) / BLOCK_LEN;                                          \
        size_t tail = ((len - 1) - nblocks * BLOCK_LEN) / STRIPE_LEN;                    \
        accumulate_##SUFFIX(a, p + nblocks * BLOCK_LEN, secret, tail);                   \
        accumulate_##SUFFIX(a, p + len - STRIPE_LEN,                                     \
                            secret + SECRET_SIZE - STRIPE_LEN - 7, 1);                   \
    }                                                                                    \
    ATTR static void blocks_##SUFFIX(uint64_t acc[8], const uint8_t *p, size_t len,      \
                                     const uint8_t *secret) {                            \
        acc_##SUFFIX a = load_##SUFFIX(acc);                                             \
        run_blocks_##SUFFIX(&a, p, len / BLOCK_LEN, secret);                             \
        store_##SUFFIX(acc, a);                                                          \
    }                                                                                    \
    ATTR static void tail_##SUFFIX(uint64_t acc[8], const uint8_t *p, size_t len,        \
                                   const uint8_t *secret) {                              \
        acc_##SUFFIX a = load_##SUFFIX(acc);                                             \
        run_tail_##SUFFIX(&a, p, len, secret);                                           \
        store_##SUFFIX(acc, a);                                                          \
    }                                                                                    \
    /* a whole input: blocks out of line, so their spills stay off the path of */        \
    /* inputs up to one block, which keep the state in registers */                     \
    ATTR static uint64_t hash_##SUFFIX(const uint8_t *p, size_t len, const uint8_t *secret) { \
        uint64_t acc[8];                                                                 \
        acc_##SUFFIX a = load_##SUFFIX(k_acc_init);                                      \
        if (len > BLOCK_LEN) {                                                           \
            memcpy(acc, k_acc_init, sizeof acc);                                         \
            blocks_##SUFFIX(acc, p, (len - 1) / BLOCK_LEN * BLOCK_LEN, secret);          \
            a = load_##SUFFIX(acc);                                                      \
        }                                                                                \
        run_tail_##SUFFIX(&a, p, len, secret);                                           \
        store_##SUFFIX(acc, a);                                                          \
        return merge_acc(acc, len, secret);                                              \
    }                                                                                    \
    static const long_fns k_long_##SUFFIX = {blocks_##SUFFIX, tail_##SUFFIX, hash_##SUFFIX};

/* One variant's entry points. blocks and tail take the accumulators, input,
 * a length and the secret: blocks hashes len / BLOCK_LEN whole blocks, tail
 * the rest of an input of len bytes; hash is the XXH3-64 of a whole input. */
typedef void (*long_fn)(uint64_t acc[8], const uint8_t *p, size_t len, const uint8_t *secret);
typedef struct {
    long_fn blocks, tail;
    uint64_t (*hash)(const uint8_t *p, size_t len, const uint8_t *secret);
} long_fns;

static const uint64_t k_acc_init[8] = {P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1};

CB_INLINE uint64_t merge_acc(const uint64_t acc[8], size_t len, const uint8_t *secret) {
    uint64_t h = (uint64_t)len * P64_1;
    for (int i = 0; i < 4; i++)
        h += mul128_fold64(acc[2 * i] ^ rd64(secret + 11 + 16 * i),
                           acc[2 * i + 1] ^ rd64(secret + 19 + 16 * i));
    return avalanche(h);
}

DEFINE_HASH_LONG(scalar, CB_NO_ATTR)

#if defined(CB_X86_64)

typedef struct {
    __m128i v[4];
} acc_sse2;

CB_INLINE acc_sse2 load_sse2(const uint64_t acc[8]) {
    acc_sse2 a;
    for (int j = 0; j < 4; j++) a.v[j] = _mm_loadu_si128((const __m128i *)(acc + 2 * j));
    return a;
}

CB_INLINE void store_sse2(uint64_t acc[8], acc_sse2 a) {
    for (int j = 0; j < 4; j++) _mm_storeu_si128((__m128i *)(acc + 2 * j), a.v[j]);
}

CB_INLINE void accumulate_sse2(acc_sse2 *a, const uint8_t *in, const uint8_t *secret,
                               size_t nstripes) {
    __m128i sum[4]; /* of the input: see "Lane swap" above */
    for (int j = 0; j < 4; j++) sum[j] = _mm_setzero_si128();
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        for (int j = 0; j < 4; j++) {
            __m128i d = _mm_loadu_si128((const __m128i *)(p + 16 * j));
            __m128i k = _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(s + 16 * j)));
            /* low 32 bits times high 32 bits of each 64-bit lane */
            a->v[j] = _mm_add_epi64(a->v[j], _mm_mul_epu32(k, _mm_srli_epi64(k, 32)));
            sum[j] = _mm_add_epi64(sum[j], d);
        }
    }
    for (int j = 0; j < 4; j++)
        a->v[j] = _mm_add_epi64(a->v[j], _mm_shuffle_epi32(sum[j], _MM_SHUFFLE(1, 0, 3, 2)));
}

CB_INLINE void scramble_sse2(acc_sse2 *a, const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const __m128i prime = _mm_set1_epi32((int)P32_1);
    for (int j = 0; j < 4; j++) {
        __m128i x = a->v[j];
        x = _mm_xor_si128(x, _mm_srli_epi64(x, 47));
        x = _mm_xor_si128(x, _mm_loadu_si128((const __m128i *)(s + 16 * j)));
        /* 64x32-bit multiply from two 32x32->64 products */
        __m128i lo = _mm_mul_epu32(x, prime);
        __m128i hi = _mm_mul_epu32(_mm_srli_epi64(x, 32), prime);
        a->v[j] = _mm_add_epi64(lo, _mm_slli_epi64(hi, 32));
    }
}

DEFINE_HASH_LONG(sse2, CB_NO_ATTR)

#endif /* CB_X86_64 */

#if defined(CB_HAVE_AVX2)

#define CB_AVX2 __attribute__((target("avx2")))

typedef struct {
    __m256i v[2];
} acc_avx2;

CB_AVX2 CB_INLINE acc_avx2 load_avx2(const uint64_t acc[8]) {
    acc_avx2 a;
    a.v[0] = _mm256_loadu_si256((const __m256i *)acc);
    a.v[1] = _mm256_loadu_si256((const __m256i *)(acc + 4));
    return a;
}

CB_AVX2 CB_INLINE void store_avx2(uint64_t acc[8], acc_avx2 a) {
    _mm256_storeu_si256((__m256i *)acc, a.v[0]);
    _mm256_storeu_si256((__m256i *)(acc + 4), a.v[1]);
}

CB_AVX2 CB_INLINE void accumulate_avx2(acc_avx2 *a, const uint8_t *in,
                                       const uint8_t *secret, size_t nstripes) {
    __m256i a0 = a->v[0], a1 = a->v[1];
    __m256i s0 = _mm256_setzero_si256(), s1 = s0; /* sums of the input: see "Lane swap" above */
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        __m256i d0 = _mm256_loadu_si256((const __m256i *)p);
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(p + 32));
        __m256i k0 = _mm256_xor_si256(d0, _mm256_loadu_si256((const __m256i *)s));
        __m256i k1 = _mm256_xor_si256(d1, _mm256_loadu_si256((const __m256i *)(s + 32)));
        a0 = _mm256_add_epi64(a0, _mm256_mul_epu32(k0, _mm256_srli_epi64(k0, 32)));
        a1 = _mm256_add_epi64(a1, _mm256_mul_epu32(k1, _mm256_srli_epi64(k1, 32)));
        s0 = _mm256_add_epi64(s0, d0);
        s1 = _mm256_add_epi64(s1, d1);
    }
    a->v[0] = _mm256_add_epi64(a0, _mm256_shuffle_epi32(s0, _MM_SHUFFLE(1, 0, 3, 2)));
    a->v[1] = _mm256_add_epi64(a1, _mm256_shuffle_epi32(s1, _MM_SHUFFLE(1, 0, 3, 2)));
}

CB_AVX2 CB_INLINE void scramble_avx2(acc_avx2 *a, const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const __m256i prime = _mm256_set1_epi32((int)P32_1);
    for (int j = 0; j < 2; j++) {
        __m256i x = a->v[j];
        x = _mm256_xor_si256(x, _mm256_srli_epi64(x, 47));
        x = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(s + 32 * j)));
        __m256i lo = _mm256_mul_epu32(x, prime);
        __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), prime);
        a->v[j] = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
    }
}

DEFINE_HASH_LONG(avx2, CB_AVX2)

/* One stripe is one 512-bit register: in cache this runs ~1.3x the AVX2 loop
 * (the xxhash package's speed), but streaming from DRAM it was 5-35% slower
 * than AVX2 on the Xeon of benchmarks/RESULTS.md, so AUTO uses it only for
 * inputs up to CTXBIN_SHORT_MAX (ctxbin_auto_impl). */
#define CB_AVX512 __attribute__((target("avx512f")))

typedef struct {
    __m512i v;
} acc_avx512;

CB_AVX512 CB_INLINE acc_avx512 load_avx512(const uint64_t acc[8]) {
    acc_avx512 a = {_mm512_loadu_si512((const void *)acc)};
    return a;
}

CB_AVX512 CB_INLINE void store_avx512(uint64_t acc[8], acc_avx512 a) {
    _mm512_storeu_si512((void *)acc, a.v);
}

CB_AVX512 CB_INLINE void accumulate_avx512(acc_avx512 *a, const uint8_t *in,
                                           const uint8_t *secret, size_t nstripes) {
    __m512i x = a->v, sum = _mm512_setzero_si512(); /* of the input: see "Lane swap" above */
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        __m512i d = _mm512_loadu_si512((const void *)p);
        __m512i k = _mm512_xor_si512(d, _mm512_loadu_si512((const void *)(secret + n * 8)));
        x = _mm512_add_epi64(x, _mm512_mul_epu32(k, _mm512_srli_epi64(k, 32)));
        sum = _mm512_add_epi64(sum, d);
    }
    a->v = _mm512_add_epi64(x, _mm512_shuffle_epi32(sum, (_MM_PERM_ENUM)_MM_SHUFFLE(1, 0, 3, 2)));
}

CB_AVX512 CB_INLINE void scramble_avx512(acc_avx512 *a, const uint8_t *secret) {
    const __m512i prime = _mm512_set1_epi32((int)P32_1);
    __m512i x = a->v;
    x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 47));
    x = _mm512_xor_si512(x, _mm512_loadu_si512((const void *)(secret + SECRET_SIZE - STRIPE_LEN)));
    __m512i lo = _mm512_mul_epu32(x, prime);
    __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), prime);
    a->v = _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32));
}

DEFINE_HASH_LONG(avx512, CB_AVX512)

#endif /* CB_HAVE_AVX2 */

#if defined(CB_HAVE_NEON)

typedef struct {
    uint64x2_t v[4];
} acc_neon;

CB_INLINE acc_neon load_neon(const uint64_t acc[8]) {
    acc_neon a;
    for (int j = 0; j < 4; j++) a.v[j] = vld1q_u64(acc + 2 * j);
    return a;
}

CB_INLINE void store_neon(uint64_t acc[8], acc_neon a) {
    for (int j = 0; j < 4; j++) vst1q_u64(acc + 2 * j, a.v[j]);
}

CB_INLINE void accumulate_neon(acc_neon *a, const uint8_t *in, const uint8_t *secret,
                               size_t nstripes) {
    uint64x2_t sum[4]; /* of the input: see "Lane swap" above */
    for (int j = 0; j < 4; j++) sum[j] = vdupq_n_u64(0);
    for (size_t n = 0; n < nstripes; n++) {
        const uint8_t *p = in + n * STRIPE_LEN;
        const uint8_t *s = secret + n * 8;
        CB_PREFETCH(p + CB_PREFETCH_DIST);
        for (int j = 0; j < 4; j++) {
            uint64x2_t d = vreinterpretq_u64_u8(vld1q_u8(p + 16 * j));
            uint64x2_t k = veorq_u64(d, vreinterpretq_u64_u8(vld1q_u8(s + 16 * j)));
            a->v[j] = vaddq_u64(a->v[j], vmull_u32(vmovn_u64(k), vshrn_n_u64(k, 32)));
            sum[j] = vaddq_u64(sum[j], d);
        }
    }
    for (int j = 0; j < 4; j++) a->v[j] = vaddq_u64(a->v[j], vextq_u64(sum[j], sum[j], 1));
}

CB_INLINE void scramble_neon(acc_neon *a, const uint8_t *secret) {
    const uint8_t *s = secret + SECRET_SIZE - STRIPE_LEN;
    const uint32x2_t prime = vdup_n_u32(P32_1);
    for (int j = 0; j < 4; j++) {
        uint64x2_t x = a->v[j];
        x = veorq_u64(x, vshrq_n_u64(x, 47));
        x = veorq_u64(x, vreinterpretq_u64_u8(vld1q_u8(s + 16 * j)));
        uint64x2_t lo = vmull_u32(vmovn_u64(x), prime);
        uint64x2_t hi = vmull_u32(vshrn_n_u64(x, 32), prime);
        a->v[j] = vaddq_u64(lo, vshlq_n_u64(hi, 32));
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

static const long_fns *long_impl(int impl) {
    switch (impl) {
#if defined(CB_HAVE_AVX2)
    case CTXBIN_IMPL_AVX512: return &k_long_avx512;
    case CTXBIN_IMPL_AVX2: return &k_long_avx2;
#endif
#if defined(CB_X86_64)
    case CTXBIN_IMPL_SSE2: return &k_long_sse2;
#endif
#if defined(CB_HAVE_NEON)
    case CTXBIN_IMPL_NEON: return &k_long_neon;
#endif
    default: return &k_long_scalar;
    }
}

/* Seeded long inputs use the default secret with the seed added to its even
 * 64-bit words and subtracted from its odd ones. */
static void derive_secret(uint8_t secret[SECRET_SIZE], uint64_t seed) {
    for (int i = 0; i < SECRET_SIZE / 16; i++) {
        wr64(secret + 16 * i, rd64(k_secret + 16 * i) + seed);
        wr64(secret + 16 * i + 8, rd64(k_secret + 16 * i + 8) - seed);
    }
}

void ctxbin_xxh3_long_init(ctxbin_xxh3_long *st, uint64_t seed, int impl) {
    memcpy(st->acc, k_acc_init, sizeof k_acc_init);
    st->seeded = seed != 0;
    st->impl = impl;
    if (st->seeded) derive_secret(st->secret, seed);
}

void ctxbin_xxh3_long_blocks(ctxbin_xxh3_long *st, const uint8_t *p, size_t nblocks) {
    const uint8_t *secret = st->seeded ? st->secret : k_secret;
    long_impl(st->impl)->blocks(st->acc, p, nblocks * BLOCK_LEN, secret);
}

uint64_t ctxbin_xxh3_long_finish(ctxbin_xxh3_long *st, const uint8_t *p, size_t len) {
    const uint8_t *secret = st->seeded ? st->secret : k_secret;
    uint64_t acc[8];
    memcpy(acc, st->acc, sizeof acc); /* finishing leaves the state reusable */
    long_impl(st->impl)->tail(acc, p, len, secret);
    return merge_acc(acc, len, secret);
}

static uint64_t hash_long(const uint8_t *p, size_t len, uint64_t seed, int impl) {
    if (seed == 0) return long_impl(impl)->hash(p, len, k_secret);
    uint8_t secret[SECRET_SIZE];
    derive_secret(secret, seed);
    return long_impl(impl)->hash(p, len, secret);
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
    case CTXBIN_EMORE: return "the input holds too little of the file";
    default: return "unknown ctxbin status code";
    }
}
