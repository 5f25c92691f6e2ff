/* A per-call pool of worker threads sharing one atomic work counter.
 *
 * Threads live only for the duration of one call: no global state, nothing
 * to shut down, and the cost (tens of microseconds) is paid only by calls
 * large enough to be split (the callers decide the thread count).
 */
#include "core_internal.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#define CB_THREADS 1
#include <pthread.h>
#else
#define CB_THREADS 0
#endif

#define CB_MAX_THREADS 64

typedef struct {
    ctxbin_range_fn fn;
    void *ctx;
    size_t n;
    size_t chunk;
    size_t next; /* first item not yet taken; shared, updated atomically */
} pool_work;

static void drain(pool_work *w) {
    for (;;) {
#if CB_THREADS
        size_t lo = __atomic_fetch_add(&w->next, w->chunk, __ATOMIC_RELAXED);
#else
        size_t lo = w->next;
        w->next += w->chunk;
#endif
        if (lo >= w->n) return;
        size_t hi = w->n - lo > w->chunk ? lo + w->chunk : w->n;
        w->fn(w->ctx, lo, hi);
    }
}

#if CB_THREADS
static void *worker_main(void *arg) {
    drain((pool_work *)arg);
    return NULL;
}
#endif

void ctxbin_parallel_for(ctxbin_range_fn fn, void *ctx, size_t n, size_t chunk, int nthreads) {
    pool_work w = {fn, ctx, n, chunk ? chunk : 1, 0};
    if (nthreads > CB_MAX_THREADS) nthreads = CB_MAX_THREADS;
#if CB_THREADS
    pthread_t tids[CB_MAX_THREADS];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        /* a thread that cannot start just leaves more work to the others */
        if (pthread_create(&tids[started], NULL, worker_main, &w) != 0) break;
        started++;
    }
    drain(&w);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
#else
    (void)nthreads;
    drain(&w);
#endif
}
