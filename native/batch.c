/* Batch hashing: many tensors, one call, spread over a few threads. */
#include "ctxbin_core.h"
#include "core_internal.h"

#include <stddef.h>

/* Below this many bytes per thread, starting a thread costs more than it saves. */
#define CB_BYTES_PER_THREAD (1u << 20)

typedef struct {
    const uint8_t *base;     /* ranges are base + offsets[i] when set ... */
    const uint64_t *offsets;
    const void *const *ptrs; /* ... else ptrs[i] */
    const uint64_t *lengths;
    uint64_t seed;
    uint64_t *out;
    int impl;
} hash_job;

static void hash_range(void *ctx, size_t lo, size_t hi) {
    const hash_job *job = (const hash_job *)ctx;
    static const uint8_t empty[1] = {0};
    for (size_t i = lo; i < hi; i++) {
        const uint8_t *p = job->base ? job->base + job->offsets[i] : (const uint8_t *)job->ptrs[i];
        size_t len = (size_t)job->lengths[i];
        job->out[i] = ctxbin_xxh3_64_with(p ? p : empty, p ? len : 0, job->seed, job->impl);
    }
}

static int run_job(hash_job *job, size_t n, int nthreads) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = job->lengths[i];
        total = total > UINT64_MAX - len ? UINT64_MAX : total + len; /* only a heuristic */
    }
    uint64_t useful = total / CB_BYTES_PER_THREAD + 1;
    if (nthreads < 1) nthreads = 1;
    if ((uint64_t)nthreads > useful) nthreads = (int)useful;
    if ((size_t)nthreads > n) nthreads = (int)(n ? n : 1);
    /* small slices balance uneven tensor sizes; a cap bounds counter traffic */
    size_t chunk = n / ((size_t)nthreads * 32);
    if (chunk < 1) chunk = 1;
    if (chunk > 1024) chunk = 1024;
    job->impl = ctxbin_best_impl();
    ctxbin_parallel_for(hash_range, job, n, chunk, nthreads);
    return CTXBIN_OK;
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
    for (size_t i = 0; i < n; i++) {
        /* written so that no sum can overflow */
        if (offsets[i] > base_len || lengths[i] > base_len - offsets[i]) return CTXBIN_ERANGE;
        if (lengths[i] > (uint64_t)SIZE_MAX) return CTXBIN_ERANGE;
    }
    hash_job job = {(const uint8_t *)base, offsets, NULL, lengths, seed, out, 0};
    return run_job(&job, n, nthreads);
}

int ctxbin_hash_ptrs(const void *const *ptrs, const uint64_t *lengths,
                     size_t n, uint64_t seed, uint64_t *out, int nthreads) {
    if (n == 0) return CTXBIN_OK;
    if (ptrs == NULL || lengths == NULL || out == NULL) return CTXBIN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (ptrs[i] == NULL && lengths[i] != 0) return CTXBIN_EINVAL;
        if (lengths[i] > (uint64_t)SIZE_MAX) return CTXBIN_ERANGE;
    }
    hash_job job = {NULL, NULL, ptrs, lengths, seed, out, 0};
    return run_job(&job, n, nthreads);
}
