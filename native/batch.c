/* Batch hashing: many tensors, one call, spread over a few threads; XXH3-64
 * alone, or XXH3-64 and CRC-32 in one pass (each piece read once, its CRC
 * taken while it is still in cache). */
#include "ctxbin_core.h"
#include "core_internal.h"

#include <stddef.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#define CB_RELEASE 1
#else
#define CB_RELEASE 0
#endif

/* Below this many bytes per thread, starting a thread costs more than it saves. */
#define CB_BYTES_PER_THREAD (1u << 20)
/* Lengths read to estimate a batch's size (rough_total). */
#define CB_SAMPLE 1024
/* XXH3 blocks (1 KiB) per step of the one-pass XXH3 + CRC: still in L2 for the CRC. */
#define CB_PASS_BLOCKS 256
/* With release, drop pages behind the read position every this many bytes. */
#define CB_DROP_STEP (4u << 20)

/* Items are mostly laid out in order; whenever the item being hashed reaches
 * a new 4 KiB page, the first lines of the page this far ahead are asked for,
 * which starts the hardware's stream prefetch on each page early (the stripe
 * loop's own prefetches, xxh3.c, come one line at a time). Measured on 100k
 * items of 0..1 KiB (51 MB): -10% time on one thread, -27% on two. */
#define CB_PAGE_AHEAD (8u << 10)

#if defined(__GNUC__) || defined(__clang__)
#define CB_SET_FLAG(x) __atomic_store_n(&(x), 1, __ATOMIC_RELAXED)
#else
#define CB_SET_FLAG(x) ((x) = 1) /* threadpool.c runs one thread there */
#endif

typedef struct {
    const uint8_t *base;     /* ranges are base + offsets[i] when set ... */
    const uint64_t *offsets;
    uint64_t base_len;       /* ... checked against this as they are hashed */
    int out_of_range;        /* set by any thread that met a range outside base */
    const void *const *ptrs; /* ... else ptrs[i] */
    const uint64_t *lengths;
    uint64_t seed;
    uint64_t *out;
    uint32_t *crcs;          /* set: CRC-32 too, seed 0 */
    const uint8_t *release;  /* with crcs: may drop pages of buffer i */
    int impl;                /* long inputs */
    int short_impl;          /* inputs up to CTXBIN_SHORT_MAX bytes (XXH3 alone) */
} hash_job;

size_t ctxbin_drop_pages(const uint8_t *p, size_t from, size_t to) {
#if CB_RELEASE
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || (page & (page - 1)) != 0) return from;
    uintptr_t mask = (uintptr_t)page - 1;
    uintptr_t lo = ((uintptr_t)p + from + mask) & ~mask, hi = ((uintptr_t)p + to) & ~mask;
    if (hi <= lo) return from;
    (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice only: a mapping that refuses keeps its pages */
    return (size_t)(hi - (uintptr_t)p);
#else
    (void)p; (void)to;
    return from;
#endif
}

static void hash_crc_one(const hash_job *job, size_t i, const uint8_t *p, size_t len) {
    int release = job->release != NULL && job->release[i] != 0;
    ctxbin_crc32_state crc = ctxbin_crc32_begin(0);
    if (job->out == NULL) { /* CRC-32 alone */
        size_t done = 0;
        while (done < len) {
            size_t step = len - done < CB_DROP_STEP ? len - done : CB_DROP_STEP;
            ctxbin_crc32_update(&crc, p + done, step);
            if (release) ctxbin_drop_pages(p, done, done + step);
            done += step;
        }
    } else if (len <= CTXBIN_XXH3_MID_MAX) {
        job->out[i] = ctxbin_xxh3_64_with(p, len, 0, job->impl);
        ctxbin_crc32_update(&crc, p, len);
    } else {
        ctxbin_xxh3_long st;
        ctxbin_xxh3_long_init(&st, 0, job->impl);
        size_t nblocks = (len - 1) / CTXBIN_XXH3_BLOCK_LEN, done = 0, dropped = 0;
        for (size_t b = 0; b < nblocks; b += CB_PASS_BLOCKS) {
            size_t nb = nblocks - b < CB_PASS_BLOCKS ? nblocks - b : CB_PASS_BLOCKS;
            ctxbin_xxh3_long_blocks(&st, p + done, nb);
            ctxbin_crc32_update(&crc, p + done, nb * CTXBIN_XXH3_BLOCK_LEN);
            done += nb * CTXBIN_XXH3_BLOCK_LEN;
            if (release && done - dropped >= CB_DROP_STEP) {
                dropped = ctxbin_drop_pages(p, dropped, done);
            }
        }
        ctxbin_crc32_update(&crc, p + done, len - done);
        job->out[i] = ctxbin_xxh3_long_finish(&st, p, len);
    }
    if (release) ctxbin_drop_pages(p, 0, len);
    job->crcs[i] = ctxbin_crc32_end(&crc);
}

static void hash_range(void *ctx, size_t lo, size_t hi) {
    hash_job *job = (hash_job *)ctx;
    static const uint8_t empty[1] = {0};
    uintptr_t page = 0; /* the last page asked for */
    for (size_t i = lo; i < hi; i++) {
        const uint8_t *p;
        size_t len;
        if (job->base) {
            uint64_t off = job->offsets[i], n = job->lengths[i];
            if (off > job->base_len || n > job->base_len - off) { /* no sum that can overflow */
                CB_SET_FLAG(job->out_of_range);
                continue;
            }
            p = job->base + off;
            len = (size_t)n; /* <= base_len <= SIZE_MAX */
        } else {
            p = (const uint8_t *)job->ptrs[i];
            len = p ? (size_t)job->lengths[i] : 0;
        }
        uintptr_t ahead = ((uintptr_t)p + CB_PAGE_AHEAD) & ~(uintptr_t)4095;
        if (ahead != page) { /* (prefetches never fault) */
            CB_PREFETCH(ahead);
            CB_PREFETCH(ahead + 64);
            page = ahead;
        }
        if (job->crcs != NULL)
            hash_crc_one(job, i, p ? p : empty, len);
        else
            job->out[i] = ctxbin_xxh3_64_with(p ? p : empty, len, job->seed,
                                              len <= CTXBIN_SHORT_MAX ? job->short_impl : job->impl);
    }
}

/* a + b, or UINT64_MAX when that overflows: total sizes only pick a thread count */
static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Roughly the bytes in n items: the sum of at most CB_SAMPLE of their lengths,
 * evenly spaced, scaled up. (A full pass over 100k small items, before the
 * threads start, was ~5% of the time of hashing them.) */
static uint64_t rough_total(const uint64_t *lengths, size_t n) {
    size_t step = n / CB_SAMPLE + 1;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += step) sum = add_sat(sum, lengths[i]);
    return sum > UINT64_MAX / step ? UINT64_MAX : sum * step;
}

static void run_job(hash_job *job, size_t n, uint64_t total, int nthreads) {
    uint64_t useful = total / CB_BYTES_PER_THREAD + 1;
    if (nthreads < 1) nthreads = 1;
    if ((uint64_t)nthreads > useful) nthreads = (int)useful;
    if ((size_t)nthreads > n) nthreads = (int)(n ? n : 1);
    /* small slices balance uneven tensor sizes; a cap bounds counter traffic */
    size_t chunk = n / ((size_t)nthreads * 32);
    if (chunk < 1) chunk = 1;
    if (chunk > 1024) chunk = 1024;
    job->impl = ctxbin_best_impl();
    job->short_impl = ctxbin_short_impl();
    ctxbin_parallel_for(hash_range, job, n, chunk, nthreads);
}

int ctxbin_hash_many(const void *base, uint64_t base_len,
                     const uint64_t *offsets, const uint64_t *lengths,
                     size_t n, uint64_t seed, uint64_t *out, int nthreads) {
    if (n == 0) return CTXBIN_OK;
    static const uint8_t empty[1] = {0};
    if (offsets == NULL || lengths == NULL || out == NULL) return CTXBIN_EINVAL;
    if (base == NULL) {
        if (base_len != 0) return CTXBIN_EINVAL;
        base = empty; /* an empty buffer may come without an address */
    }
    if (base_len > (uint64_t)SIZE_MAX) return CTXBIN_ERANGE; /* no such buffer */
    /* the threads check the ranges as they go: nothing outside base is read */
    hash_job job = {(const uint8_t *)base, offsets, base_len, 0, NULL, lengths,
                    seed, out, NULL, NULL, 0, 0};
    run_job(&job, n, rough_total(lengths, n), nthreads);
    return job.out_of_range ? CTXBIN_ERANGE : CTXBIN_OK;
}

/* The checks of the pointer-array entry points; sets *total to the bytes in all. */
static int check_ptrs(const void *const *ptrs, const uint64_t *lengths, size_t n, uint64_t *total) {
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (ptrs[i] == NULL && lengths[i] != 0) return CTXBIN_EINVAL;
        if (lengths[i] > (uint64_t)SIZE_MAX) return CTXBIN_ERANGE;
        sum = add_sat(sum, lengths[i]);
    }
    *total = sum;
    return CTXBIN_OK;
}

int ctxbin_hash_ptrs(const void *const *ptrs, const uint64_t *lengths,
                     size_t n, uint64_t seed, uint64_t *out, int nthreads) {
    if (n == 0) return CTXBIN_OK;
    if (ptrs == NULL || lengths == NULL || out == NULL) return CTXBIN_EINVAL;
    uint64_t total;
    int status = check_ptrs(ptrs, lengths, n, &total);
    if (status != CTXBIN_OK) return status;
    hash_job job = {NULL, NULL, 0, 0, ptrs, lengths, seed, out, NULL, NULL, 0, 0};
    run_job(&job, n, total, nthreads);
    return CTXBIN_OK;
}

int ctxbin_hash_crc_ptrs(const void *const *ptrs, const uint64_t *lengths, size_t n,
                         const uint8_t *release, uint64_t *hashes, uint32_t *crcs, int nthreads) {
    if (n == 0) return CTXBIN_OK;
    if (ptrs == NULL || lengths == NULL || crcs == NULL) return CTXBIN_EINVAL;
    uint64_t total;
    int status = check_ptrs(ptrs, lengths, n, &total);
    if (status != CTXBIN_OK) return status;
    hash_job job = {NULL, NULL, 0, 0, ptrs, lengths, 0, hashes, crcs, release, 0, 0};
    run_job(&job, n, total, nthreads);
    return CTXBIN_OK;
}
