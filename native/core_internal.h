/* Declarations shared between the C core's translation units (not exported
 * to Python). */
#ifndef CTXBIN_CORE_INTERNAL_H
#define CTXBIN_CORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The CTXBIN_IMPL_* the CPU runs best. */
int ctxbin_best_impl(void);

/* XXH3-64 with a given accumulate implementation (assumed available). */
uint64_t ctxbin_xxh3_64_with(const uint8_t *p, size_t len, uint64_t seed, int impl);

/* Calls fn(ctx, lo, hi) over [0, n) in slices of `chunk` items, taken in
 * order by up to nthreads threads (the caller's thread is one of them).
 * Falls back to the caller's thread alone when threads cannot be started. */
typedef void (*ctxbin_range_fn)(void *ctx, size_t lo, size_t hi);
void ctxbin_parallel_for(ctxbin_range_fn fn, void *ctx, size_t n, size_t chunk, int nthreads);

#endif /* CTXBIN_CORE_INTERNAL_H */
