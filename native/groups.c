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
 *
 * ctxbin_hash_groups_write is the same pass for a linker that has already
 * laid out its output assuming every candidate equals the first member of its
 * group: each chunk of the first member is also written to the output file
 * right after it was compared and hashed, so the write copies from cache, not
 * from DRAM. The first member that differs stops the whole pass (the linker
 * then takes the slower path that handles differences).
 */
#include "ctxbin_core.h"
#include "core_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <pthread.h>
#include <unistd.h>
#define CB_PWRITE 1
#else
#define CB_PWRITE 0
#endif

/* Blocks (1 KiB each) compared then hashed per step: the first member's chunk
 * is still in L2 when it is hashed. */
#define CHUNK_BLOCKS 256
/* Drop pages behind the read position every this many bytes (one madvise per
 * member per step: few system calls, little resident memory). */
#define RELEASE_STEP (4u << 20)
/* Below this many bytes per thread, starting a thread costs more than it
 * saves; groups of at least this many bytes are scheduled one by one. */
#define BYTES_PER_THREAD (1u << 20)
/* Write mode: writes end on multiples of this in the output file (a page). */
#define WRITE_ALIGN 4096u
/* Write mode: while another thread writes (the kernel serializes writes to
 * one file), up to this many bytes wait, still in cache, for the next chunk. */
#define WRITE_DEFER_MAX (768u << 10)

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
    /* write mode (ctxbin_hash_groups_write): out_offsets != NULL */
    int fd;
    const uint64_t *out_offsets; /* file offset of each group's first member */
    int stop;                    /* set (atomically) when a member differs or a write fails */
    int differs;
    int err; /* errno of the first failed write */
#if CB_PWRITE
    pthread_mutex_t write_lock; /* taken around writes, so a thread can see another is writing */
#endif
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

/* Flags shared by the threads of one pass (threads only exist with the GCC
 * builtins: see threadpool.c). */
#if defined(__GNUC__) || defined(__clang__)
#define LOAD_FLAG(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE_FLAG(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#else
#define LOAD_FLAG(x) (x)
#define STORE_FLAG(x, v) ((x) = (v))
#endif

static int stopped(group_job *job) {
    return job->out_offsets != NULL && LOAD_FLAG(job->stop);
}

/* Write mode: end the pass early, because a write failed (err: its errno)
 * or a member differs from its group's first (err = 0). */
static void halt(group_job *job, int err) {
    if (err)
        STORE_FLAG(job->err, err);
    else
        STORE_FLAG(job->differs, 1);
    STORE_FLAG(job->stop, 1);
}

/* Write mode: write the group's first member from *written up to `upto`,
 * or, unless it is the end, only up to the output's last page boundary
 * before it: whole pages are cheaper to write into the page cache, and the
 * rest, still in cache, goes with the next chunk. Returns 0, or after a
 * failure stops the pass and returns -1. */
static int put(group_job *job, uint64_t first, const uint8_t *p, size_t *written, size_t upto, int end) {
#if CB_PWRITE
    uint64_t base = job->out_offsets[first];
    if (!end) {
        uint64_t edge = (base + upto) & ~(uint64_t)(WRITE_ALIGN - 1);
        if (edge <= base + *written) return 0;
        upto = (size_t)(edge - base);
    }
    const uint8_t *q = p + *written;
    uint64_t at = base + *written;
    size_t n = upto - *written;
    if (!end && n < WRITE_DEFER_MAX) {
        if (pthread_mutex_trylock(&job->write_lock) != 0) return 0; /* busy: compare and hash on meanwhile */
    } else {
        pthread_mutex_lock(&job->write_lock);
    }
    int err = 0;
    while (n > 0) {
        ssize_t w = pwrite(job->fd, q, n, (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        q += w;
        at += (uint64_t)w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&job->write_lock);
    if (err) {
        halt(job, err);
        return -1;
    }
    *written = upto;
    return 0;
#else
    halt(job, ENOSYS);
    return -1;
#endif
}

/* Write mode: a member unlike the first ends the optimistic pass. */
static int any_differs(group_job *job, const member *m, size_t k) {
    for (size_t j = 1; j < k; j++)
        if (!m[j].same) {
            halt(job, 0);
            return 1;
        }
    return 0;
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

/* Returns 0, or -1 when the pass stopped (write mode) and h is incomplete. */
static int hash_group_long(group_job *job, member *m, size_t k, size_t len, uint64_t first, uint64_t *h) {
    size_t nblocks = (len - 1) / CTXBIN_XXH3_BLOCK_LEN;
    size_t since_release = 0, written = 0;
    int writing = job->out_offsets != NULL;
    ctxbin_xxh3_long_init(&m[0].st, job->seed, job->impl);
    for (size_t b = 0; b < nblocks; b += CHUNK_BLOCKS) {
        size_t nb = nblocks - b < CHUNK_BLOCKS ? nblocks - b : CHUNK_BLOCKS;
        size_t off = b * CTXBIN_XXH3_BLOCK_LEN, n = nb * CTXBIN_XXH3_BLOCK_LEN;
        compare_chunk(m, k, off, n, 1);
        if (writing && (stopped(job) || any_differs(job, m, k))) return -1;
        for (size_t j = 0; j < k; j++)
            if (j == 0 || !m[j].same) ctxbin_xxh3_long_blocks(&m[j].st, m[j].p + off, nb);
        if (writing && put(job, first, m[0].p, &written, off + n, 0) != 0) return -1;
        since_release += n;
        if (since_release >= RELEASE_STEP) {
            /* the first member's bytes not written yet stay */
            for (size_t j = 0; j < k; j++) release_to(&m[j], writing && j == 0 ? written : off + n);
            since_release = 0;
        }
    }
    size_t off = nblocks * CTXBIN_XXH3_BLOCK_LEN;
    compare_chunk(m, k, off, len - off, 1); /* the last block and the final stripe */
    if (writing && (any_differs(job, m, k) || put(job, first, m[0].p, &written, len, 1) != 0)) return -1;
    h[0] = ctxbin_xxh3_long_finish(&m[0].st, m[0].p, len);
    for (size_t j = 1; j < k; j++)
        h[j] = m[j].same ? h[0] : ctxbin_xxh3_long_finish(&m[j].st, m[j].p, len);
    return 0;
}

static void run_group(group_job *job, size_t g) {
    const uint64_t *idx = job->members + job->groups[g];
    size_t k = (size_t)(job->groups[g + 1] - job->groups[g]);
    size_t len = (size_t)job->lengths[idx[0]];
    int writing = job->out_offsets != NULL;
    member m[CTXBIN_GROUP_MAX];
    uint64_t h[CTXBIN_GROUP_MAX];
    if (k == 0 || stopped(job)) return; /* k >= 1 is checked before; said again for the compiler */
    for (size_t j = 0; j < k; j++) {
        const uint8_t *p = (const uint8_t *)job->ptrs[idx[j]];
        m[j].p = p ? p : k_empty;
        m[j].released = 0;
        m[j].release = job->release != NULL && job->release[idx[j]] != 0;
        m[j].same = 1;
    }
    int status = 0;
    if (len > CTXBIN_XXH3_MID_MAX) {
        status = hash_group_long(job, m, k, len, idx[0], h);
    } else {
        compare_chunk(m, k, 0, len, 0);
        h[0] = ctxbin_xxh3_64_with(m[0].p, len, job->seed, job->impl);
        for (size_t j = 1; j < k; j++)
            h[j] = m[j].same ? h[0] : ctxbin_xxh3_64_with(m[j].p, len, job->seed, job->impl);
        size_t written = 0;
        if (writing && (any_differs(job, m, k) || put(job, idx[0], m[0].p, &written, len, 1) != 0)) status = -1;
    }
    for (size_t j = 0; j < k; j++) release_to(&m[j], len);
    if (status != 0) return;
    if (writing) { /* every member equals the first */
        for (size_t j = 0; j < k; j++) job->hashes[idx[j]] = h[0];
        return;
    }
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
    group_job *job = (group_job *)ctx;
    for (size_t g = lo; g < hi; g++) run_group(job, job->first_group + g);
}

/* Checks the arguments both entry points share, then runs the groups. */
static int hash_groups(group_job *job, size_t n, size_t nmembers, size_t ngroups, int nthreads) {
    const uint64_t *lengths = job->lengths, *members = job->members, *groups = job->groups;
    if (nmembers == 0) return CTXBIN_OK;
    if (job->ptrs == NULL || lengths == NULL || members == NULL || groups == NULL || job->hashes == NULL ||
        ngroups == 0 || nmembers > n)
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
                (job->ptrs[i] == NULL && lengths[i] != 0)) { status = CTXBIN_EINVAL; break; }
            seen[i] = 1;
        }
        if (lengths[members[a]] > (uint64_t)SIZE_MAX) status = CTXBIN_ERANGE;
        /* saturating: the total only sizes the thread count */
        uint64_t len = lengths[members[a]];
        /* the first member's place in the output must be a valid file range */
        if (job->out_offsets != NULL && (job->out_offsets[members[a]] > (uint64_t)INT64_MAX ||
                                         len > (uint64_t)INT64_MAX - job->out_offsets[members[a]]))
            status = CTXBIN_ERANGE;
        uint64_t bytes = len > UINT64_MAX / (b - a) ? UINT64_MAX : len * (b - a);
        total = total > UINT64_MAX - bytes ? UINT64_MAX : total + bytes;
    }
    free(seen);
    if (status != CTXBIN_OK) return status;
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
    job->first_group = 0;
    ctxbin_parallel_for(run_groups, job, nbig, 1, nthreads);
    size_t rest = ngroups - nbig, chunk = rest / ((size_t)nthreads * 32);
    job->first_group = nbig;
    ctxbin_parallel_for(run_groups, job, rest, chunk < 1 ? 1 : chunk > 1024 ? 1024 : chunk, nthreads);
    return CTXBIN_OK;
}

int ctxbin_hash_groups(size_t n, const void *const *ptrs, const uint64_t *lengths,
                       const uint64_t *members, size_t nmembers,
                       const uint64_t *groups, size_t ngroups, const uint8_t *release,
                       uint64_t seed, uint64_t *hashes, int64_t *canon, int nthreads) {
    if (canon == NULL && nmembers != 0) return CTXBIN_EINVAL;
    group_job job = {.ptrs = ptrs, .lengths = lengths, .members = members, .groups = groups, .release = release,
                     .seed = seed, .hashes = hashes, .canon = canon, .impl = ctxbin_best_impl(), .fd = -1};
    return hash_groups(&job, n, nmembers, ngroups, nthreads);
}

int ctxbin_hash_groups_write(size_t n, const void *const *ptrs, const uint64_t *lengths,
                             const uint64_t *members, size_t nmembers,
                             const uint64_t *groups, size_t ngroups, const uint8_t *release,
                             int fd, const uint64_t *out_offsets, uint64_t *hashes,
                             int *differs, int *err, int nthreads) {
    if (out_offsets == NULL || differs == NULL || err == NULL || fd < 0) return CTXBIN_EINVAL;
    group_job job = {.ptrs = ptrs, .lengths = lengths, .members = members, .groups = groups, .release = release,
                     .hashes = hashes, .impl = ctxbin_best_impl(), .fd = fd, .out_offsets = out_offsets};
#if CB_PWRITE
    if (pthread_mutex_init(&job.write_lock, NULL) != 0) return CTXBIN_ENOMEM;
    int status = hash_groups(&job, n, nmembers, ngroups, nthreads);
    pthread_mutex_destroy(&job.write_lock);
    *differs = job.differs;
    *err = job.err;
    return status;
#else
    return CTXBIN_EUNSUPPORTED;
#endif
}
