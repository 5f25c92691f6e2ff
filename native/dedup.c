/* The dedup plan: which tensors are byte-for-byte copies of an earlier one.
 *
 * An open-addressing table (linear probing) holds one representative per
 * distinct (key, length, hash, bytes) class, the first in input order. Each
 * tensor probes the slots of its (key, length, hash); a candidate matches only
 * after memcmp agrees, so hash collisions (even forged ones) never merge
 * different bytes: they just both become representatives.
 */
#include "ctxbin_core.h"

#include <stdlib.h>
#include <string.h>

static uint64_t slot_hash(int64_t key, uint64_t hash, uint64_t len) {
    uint64_t h = hash ^ ((uint64_t)key * 0x9E3779B185EBCA87ULL) ^ (len * 0xC2B2AE3D27D4EB4FULL);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL; /* keys and lengths are not random: remix */
    h ^= h >> 29;
    return h;
}

int ctxbin_dedup_plan(size_t n, const int64_t *keys, const uint64_t *hashes,
                      const void *const *ptrs, const uint64_t *lengths,
                      int64_t *canon) {
    if (n == 0) return CTXBIN_OK;
    if (keys == NULL || hashes == NULL || ptrs == NULL || lengths == NULL || canon == NULL)
        return CTXBIN_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (ptrs[i] == NULL && lengths[i] != 0) return CTXBIN_EINVAL;

    /* a power of two at least twice n keeps probe chains short */
    size_t cap = 16;
    while (cap < 2 * n) {
        if (cap > SIZE_MAX / 2 / sizeof(size_t)) return CTXBIN_ENOMEM;
        cap *= 2;
    }
    size_t *table = (size_t *)calloc(cap, sizeof(size_t)); /* index + 1; 0 = empty */
    if (table == NULL) return CTXBIN_ENOMEM;

    const size_t mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t slot = (size_t)slot_hash(keys[i], hashes[i], lengths[i]) & mask;
        for (;;) {
            size_t entry = table[slot];
            if (entry == 0) {
                table[slot] = i + 1;
                canon[i] = (int64_t)i;
                break;
            }
            size_t j = entry - 1;
            if (keys[j] == keys[i] && lengths[j] == lengths[i] && hashes[j] == hashes[i] &&
                (lengths[i] == 0 || ptrs[j] == ptrs[i] ||
                 memcmp(ptrs[j], ptrs[i], (size_t)lengths[i]) == 0)) {
                canon[i] = (int64_t)j;
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    free(table);
    return CTXBIN_OK;
}
