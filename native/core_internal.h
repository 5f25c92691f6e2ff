/* Declarations shared between the C core's translation units (not exported
 * to Python). */
#ifndef CTXBIN_CORE_INTERNAL_H
#define CTXBIN_CORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* CB_INLINE: static, and inlined even where the compiler would not (the hot
 * per-item steps of the hash, walk and check loops); CB_PREFETCH: a read
 * hint, never a fault. */
#if defined(__GNUC__) || defined(__clang__)
#define CB_INLINE static inline __attribute__((always_inline))
#define CB_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
/* CB_COLD: a rarely taken path (errors), kept out of the hot loops' code and registers */
#define CB_COLD __attribute__((cold, noinline))
/* CB_NOINLINE: kept a function of its own (its loop gets the registers to itself) */
#define CB_NOINLINE __attribute__((noinline))
#else
#define CB_NOINLINE
#define CB_INLINE static __inline
#define CB_PREFETCH(p) ((void)0)
#define CB_COLD
#endif

/* The CTXBIN_IMPL_* the CPU runs best on long inputs streamed from memory,
 * the one for short inputs (up to CTXBIN_SHORT_MAX bytes, often in cache), and the one AUTO
 * picks for an input of len bytes. */
#define CTXBIN_SHORT_MAX (16u << 10)
int ctxbin_best_impl(void);
int ctxbin_short_impl(void);
int ctxbin_auto_impl(size_t len);

/* XXH3-64 with a given accumulate implementation (assumed available). */
uint64_t ctxbin_xxh3_64_with(const uint8_t *p, size_t len, uint64_t seed, int impl);

/* XXH3-64 of long inputs (over CTXBIN_XXH3_MID_MAX bytes) in pieces: init, then
 * the input's (len - 1) / CTXBIN_XXH3_BLOCK_LEN full blocks in any number of
 * _blocks calls (in order, each given the address of its first block), then
 * _finish with the whole input. A state may be copied by value (two inputs
 * equal so far share it). */
#define CTXBIN_XXH3_MID_MAX 240
#define CTXBIN_XXH3_BLOCK_LEN 1024
#define CTXBIN_XXH3_SECRET_SIZE 192
typedef struct {
    uint64_t acc[8];
    uint8_t secret[CTXBIN_XXH3_SECRET_SIZE]; /* derived from the seed when seeded */
    int seeded;
    int impl;
} ctxbin_xxh3_long;
void ctxbin_xxh3_long_init(ctxbin_xxh3_long *st, uint64_t seed, int impl);
void ctxbin_xxh3_long_blocks(ctxbin_xxh3_long *st, const uint8_t *p, size_t nblocks);
uint64_t ctxbin_xxh3_long_finish(ctxbin_xxh3_long *st, const uint8_t *p, size_t len);

/* Calls fn(ctx, lo, hi) over [0, n) in slices of `chunk` items, taken in
 * order by up to nthreads threads (the caller's thread is one of them).
 * Falls back to the caller's thread alone when threads cannot be started. */
typedef void (*ctxbin_range_fn)(void *ctx, size_t lo, size_t hi);
void ctxbin_parallel_for(ctxbin_range_fn fn, void *ctx, size_t n, size_t chunk, int nthreads);

/* CRC-32 over pieces: begin(start), update with each piece in order, end
 * gives what ctxbin_crc32(start, whole) gives. */
typedef struct {
    uint32_t reg; /* the register, not inverted */
    int impl;
} ctxbin_crc32_state;
ctxbin_crc32_state ctxbin_crc32_begin(uint32_t crc);
void ctxbin_crc32_update(ctxbin_crc32_state *st, const void *data, size_t len);
uint32_t ctxbin_crc32_end(const ctxbin_crc32_state *st);

/* Drop the whole pages of [p + from, p + to) from this process's resident
 * memory (a shared file mapping: they come back from the file). Advice only.
 * Returns the offset from p up to which pages are now dropped (page aligned),
 * or `from` when no whole page lies in the range: pass it back as the next
 * `from`, so a page straddling `to` is dropped by the next call. */
size_t ctxbin_drop_pages(const uint8_t *p, size_t from, size_t to);

#endif /* CTXBIN_CORE_INTERNAL_H */
