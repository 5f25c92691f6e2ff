/* Hash and confirm in one pass: groups of same-length candidate tensors.
 *
 * Linking mostly finds tensors whose bytes are equal (the same weight in two
 * compiled variants). Hashing both and then comparing them reads every byte
 * three times; here each group is read in chunks of a few hundred KiB: the
 * chunk of every member still equal to the first member is compared with the
 * first member's chunk, then the first member's chunk is hashed while it is in
 * cache. A member equal all the way has the same bytes, hence the same hash,
 * and was read once. A member that differs takes a copy of the hash state at
 * the start of the chunk where it diverged and is hashed on its own from there.
 * Pages of members in shared file mappings are dropped behind the read
 * position, so resident memory stays at a few chunks whatever the tensor size.
 */
#include "ctxbin_core.h"
#include "core_internal.h"

#include <stdlib.h>
#include <string.h>

/* Blocks (1 KiB each) compared then hashed per step: the first member's chunk
 * is still in L2 when it is hashed. */
#define CHUNK_BLOCKS 256
/* Drop pages behind the read position every this many bytes (one madvise per
 * member per step: few system calls, little resident memory). */
#define RELEASE_STEP (4u << 20)
/* Below this many bytes per thread, starting a thread costs more than it
 * saves; groups of at least this many bytes are scheduled one by one. */
#define BYTES_PER_THREAD (1u << 20)

typedef struct {
    const void *const *ptrs;
    const uint64_t *lengths;
    const uint64_t *members;
    const uint64_t *groups;
    const uint8_t *release;
    uint64_t seed;
    uint64_t *hashes;
    int64_t *canon;
    int impl;
    size_t first_group; /* of the current parallel_for */
} group_job;

typedef struct {
    const uint8_t *p;
    size_t released; /* bytes from p whose whole pages were dropped */
    int release;
    int same; /* equal to the first member so far */
    ctxbin_xxh3_long st; /* own hash state once it differs */
} member;

static const uint8_t k_empty[1] = {0};

static void release_to(member *m, size_t upto) {
    if (m->release) m->released = ctxbin_drop_pages(m->p, m->released, upto);
}

/* Compare [off, off + n) of every member still equal to the first one; one
 * that differs takes the first member's hash state (long inputs) from before
 * this chunk, when their bytes were still equal. */
static void compare_chunk(member *m, size_t k, size_t off, size_t n, int long_input) {
    for (size_t j = 1; j < k; j++) {
        if (m[j].same && m[j].p != m[0].p && memcmp(m[j].p + off, m[0].p + off, n) != 0) {
            m[j].same = 0;
            if (long_input) m[j].st = m[0].st;
        }
    }
}

static void hash_group_long(const group_job *job, member *m, size_t k, size_t len, uint64_t *h) {
    size_t nblocks = (len - 1) / CTXBIN_XXH3_BLOCK_LEN;
    size_t since_release = 0;
    ctxbin_xxh3_long_init(&m[0].st, job->seed, job->impl);
    for (size_t b = 0; b < nblocks; b += CHUNK_BLOCKS) {
        size_t nb = nblocks - b < CHUNK_BLOCKS ? nblocks - b : CHUNK_BLOCKS;
        size_t off = b * CTXBIN_XXH3_BLOCK_LEN, n = nb * CTXBIN_XXH3_BLOCK_LEN;
        compare_chunk(m, k, off, n, 1);
        for (size_t j = 0; j < k; j++)
            if (j == 0 || !m[j].same) ctxbin_xxh3_long_blocks(&m[j].st, m[j].p + off, nb);
        since_release += n;
        if (since_release >= RELEASE_STEP) {
            for (size_t j = 0; j < k; j++) release_to(&m[j], off + n);
            since_release = 0;
        }
    }
    size_t off = nblocks * CTXBIN_XXH3_BLOCK_LEN;
    compare_chunk(m, k, off, len - off, 1); /* the last block and the final stripe */
    h[0] = ctxbin_xxh3_long_finish(&m[0].st, m[0].p, len);
    for (size_t j = 1; j < k; j++)
        h[j] = m[j].same ? h[0] : ctxbin_xxh3_long_finish(&m[j].st, m[j].p, len);
}

static void run_group(const group_job *job, size_t g) {
    const uint64_t *idx = job->members + job->groups[g];
    size_t k = (size_t)(job->groups[g + 1] - job->groups[g]);
    size_t len = (size_t)job->lengths[idx[0]];
    member m[CTXBIN_GROUP_MAX];
    uint64_t h[CTXBIN_GROUP_MAX];
    for (size_t j = 0; j < k; j++) {
        const uint8_t *p = (const uint8_t *)job->ptrs[idx[j]];
        m[j].p = p ? p : k_empty;
        m[j].released = 0;
        m[j].release = job->release != NULL && job->release[idx[j]] != 0;
        m[j].same = 1;
    }
    if (len > CTXBIN_XXH3_MID_MAX) {
        hash_group_long(job, m, k, len, h);
    } else {
        compare_chunk(m, k, 0, len, 0);
        h[0] = ctxbin_xxh3_64_with(m[0].p, len, job->seed, job->impl);
        for (size_t j = 1; j < k; j++)
            h[j] = m[j].same ? h[0] : ctxbin_xxh3_64_with(m[j].p, len, job->seed, job->impl);
    }
    for (size_t j = 0; j < k; j++) release_to(&m[j], len);
    /* Members unlike the first may still equal each other: equal hashes are
     * candidates, confirmed by a full compare (rare, so read again). */
    size_t rep[CTXBIN_GROUP_MAX];
    for (size_t j = 0; j < k; j++) {
        rep[j] = m[j].same ? 0 : j;
        for (size_t i = 1; i < j && !m[j].same; i++) {
            if (!m[i].same && rep[i] == i && h[i] == h[j] &&
                (m[i].p == m[j].p || memcmp(m[i].p, m[j].p, len) == 0)) {
                rep[j] = i;
                m[i].released = m[j].released = 0;
                release_to(&m[i], len);
                release_to(&m[j], len);
                break;
            }
        }
        job->hashes[idx[j]] = h[j];
        job->canon[idx[j]] = (int64_t)idx[rep[j]];
    }
}

static void run_groups(void *ctx, size_t lo, size_t hi) {
    const group_job *job = (const group_job *)ctx;
    for (size_t g = lo; g < hi; g++) run_group(job, job->first_group + g);
}

int ctxbin_hash_groups(size_t n, const void *const *ptrs, const uint64_t *lengths,
                       const uint64_t *members, size_t nmembers,
                       const uint64_t *groups, size_t ngroups, const uint8_t *release,
                       uint64_t seed, uint64_t *hashes, int64_t *canon, int nthreads) {
    if (nmembers == 0) return CTXBIN_OK;
    if (ptrs == NULL || lengths == NULL || members == NULL || groups == NULL || hashes == NULL ||
        canon == NULL || ngroups == 0 || nmembers > n)
        return CTXBIN_EINVAL;
    if (groups[0] != 0 || groups[ngroups] != nmembers) return CTXBIN_EINVAL;
    /* each tensor at most once: two groups must never write the same outputs */
    uint8_t *seen = (uint8_t *)calloc(n, 1);
    if (seen == NULL) return CTXBIN_ENOMEM;
    int status = CTXBIN_OK;
    uint64_t total = 0;
    for (size_t g = 0; g < ngroups && status == CTXBIN_OK; g++) {
        uint64_t a = groups[g], b = groups[g + 1];
        if (b <= a || b > nmembers || b - a > CTXBIN_GROUP_MAX) { status = CTXBIN_EINVAL; break; }
        for (uint64_t j = a; j < b; j++) {
            uint64_t i = members[j];
            if (i >= n || seen[i] || lengths[i] != lengths[members[a]] ||
                (ptrs[i] == NULL && lengths[i] != 0)) { status = CTXBIN_EINVAL; break; }
            seen[i] = 1;
        }
        if (lengths[members[a]] > (uint64_t)SIZE_MAX) status = CTXBIN_ERANGE;
        /* saturating: the total only sizes the thread count */
        uint64_t len = lengths[members[a]];
        uint64_t bytes = len > UINT64_MAX / (b - a) ? UINT64_MAX : len * (b - a);
        total = total > UINT64_MAX - bytes ? UINT64_MAX : total + bytes;
    }
    free(seen);
    if (status != CTXBIN_OK) return status;
    group_job job = {ptrs, lengths, members, groups, release, seed, hashes, canon, ctxbin_best_impl(), 0};
    uint64_t useful = total / BYTES_PER_THREAD + 1;
    if (nthreads < 1) nthreads = 1;
    if ((uint64_t)nthreads > useful) nthreads = (int)useful;
    if ((size_t)nthreads > ngroups) nthreads = (int)ngroups;
    /* Large groups (callers put them first, largest first) go one at a time
     * so the threads finish together; small ones in slices, which saves
     * contention on the shared counter. */
    size_t nbig = 0;
    while (nbig < ngroups && lengths[members[groups[nbig]]] * (groups[nbig + 1] - groups[nbig]) >=
                                 BYTES_PER_THREAD)
        nbig++;
    ctxbin_parallel_for(run_groups, &job, nbig, 1, nthreads);
    size_t rest = ngroups - nbig, chunk = rest / ((size_t)nthreads * 32);
    job.first_group = nbig;
    ctxbin_parallel_for(run_groups, &job, rest, chunk < 1 ? 1 : chunk > 1024 ? 1024 : chunk, nthreads);
    return CTXBIN_OK;
}
