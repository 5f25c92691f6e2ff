/* The ZIP central directory scan of ctxbin/ziparchive.py, for the common case.
 *
 * ctxbin/ziparchive.py (ZipArchive._parse) is the reference: this makes the
 * same checks but only says whether they all pass and, when they do, gives
 * each entry's fields. When one fails, or the archive is unusual (ZIP64,
 * non-ASCII names, local sizes in a ZIP64 field), the caller runs the Python
 * parser, which decides and raises the error naming the entry and offset; so
 * the two can never disagree on a message. Duplicate names are left to the
 * caller (it builds the name table anyway). The hypothesis tests check that
 * whatever passes here passes there with the same entries. ctxbin_zip_open
 * reads the parts of a file the scan needs (pread) and scans them, so that
 * ZipArchive.open is one call.
 */
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "ctxbin_core.h"

enum { EOCD = 22, CENTRAL = 46, LOCAL = 30, LOCATOR = 20, MAX_COMMENT = 0xFFFF };
enum { FLAG_ENCRYPTED = 0x0001, FLAG_DESCRIPTOR = 0x0008, FLAG_STRONG = 0x0040 };

static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32(const uint8_t *p) { return u16(p) | u16(p + 2) << 16; }

/* The name rules of ZipArchive._name, for ASCII names (others: slow path). */
static int safe_name(const uint8_t *p, uint64_t n) {
    if (n == 0 || p[0] == '/' || (n >= 2 && p[1] == ':')) return 0;
    uint64_t part = 0; /* start of the current '/'-separated part */
    for (uint64_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            uint64_t len = i - part;
            if ((len == 1 && p[part] == '.') || (len == 2 && p[part] == '.' && p[part + 1] == '.')) return 0;
            part = i + 1;
            continue;
        }
        if (p[i] == 0 || p[i] == '\\' || p[i] >= 0x80) return 0;
    }
    return 1;
}

/* Extra fields must tile their area, as ZipArchive._extra_block reads them. */
static int extra_ok(const uint8_t *p, uint64_t n) {
    uint64_t pos = 0;
    while (pos + 4 <= n) {
        uint64_t size = u16(p + pos + 2);
        pos += 4;
        if (pos + size > n) return 0;
        pos += size;
    }
    return 1;
}

typedef struct {
    uint64_t start, end;
} span;

static int by_start(const void *a, const void *b) {
    uint64_t x = ((const span *)a)->start, y = ((const span *)b)->start;
    return (x > y) - (x < y);
}

/* The archive as far as the caller read it: bytes [0, head_len) and
 * [tail_at, size) of a size-byte file. */
typedef struct {
    const uint8_t *head, *tail;
    uint64_t head_len, tail_at, size;
} file_part;

/* n bytes at file offset off when one part holds them all, else NULL
 * (off + n <= size: the callers check it first). */
static const uint8_t *bytes_at(const file_part *f, uint64_t off, uint64_t n) {
    if (off + n <= f->head_len) return f->head + off;
    if (off >= f->tail_at) return f->tail + (off - f->tail_at);
    return NULL;
}

int ctxbin_zip_scan(const uint8_t *head, uint64_t head_len, const uint8_t *tail, uint64_t tail_len,
                    uint64_t size, uint64_t max_entries, uint64_t max_inflated_size, uint64_t ratio_floor,
                    double max_ratio, int64_t *out, uint64_t cap) {
    if ((!head && head_len) || !tail || !out || head_len > size || tail_len > size) return CTXBIN_EINVAL;
    if (size < EOCD) return CTXBIN_ERANGE;
    const file_part f = {head, tail, head_len, size - tail_len, size};
    /* the last end record whose comment ends exactly at the end of the file;
     * the search stays in the tail, so one found there is the one a search of
     * the whole file finds */
    uint64_t lo = size > EOCD + MAX_COMMENT ? size - EOCD - MAX_COMMENT : 0, eocd = size - EOCD + 1;
    for (;;) {
        if (eocd == lo) return CTXBIN_ERANGE;
        if (eocd <= f.tail_at) return out[1] = (int64_t)lo, CTXBIN_EMORE;
        eocd--;
        const uint8_t *e = f.tail + (eocd - f.tail_at);
        if (memcmp(e, "PK\x05\x06", 4) == 0 && eocd + EOCD + u16(e + 20) == size) break;
    }
    const uint8_t *e = f.tail + (eocd - f.tail_at);
    if (eocd >= LOCATOR) { /* ZIP64 */
        const uint8_t *z = bytes_at(&f, eocd - LOCATOR, 4);
        if (!z) return out[1] = (int64_t)(eocd - LOCATOR), CTXBIN_EMORE;
        if (memcmp(z, "PK\x06\x07", 4) == 0) return CTXBIN_ERANGE;
    }
    uint64_t n = u16(e + 10), cd_size = u32(e + 12), cd_off = u32(e + 16);
    if (u16(e + 4) != 0 || u16(e + 6) != 0 || cd_off + cd_size > eocd || n > cd_size / CENTRAL ||
        n > max_entries)
        return CTXBIN_ERANGE;
    if (cd_off < f.tail_at) return out[1] = (int64_t)cd_off, CTXBIN_EMORE;
    out[0] = (int64_t)n, out[1] = (int64_t)cd_off, out[2] = (int64_t)(cd_off + cd_size);
    if (n > cap) return CTXBIN_EINVAL;
    span *spans = malloc((n ? n : 1) * sizeof *spans);
    if (!spans) return CTXBIN_ENOMEM;
    int st = CTXBIN_ERANGE;
    uint64_t at = cd_off, cd_end = cd_off + cd_size, need = size; /* need: lowest local header not at hand */
    for (uint64_t i = 0; i < n; i++) {
        if (at + CENTRAL > cd_end) goto done;
        const uint8_t *c = f.tail + (at - f.tail_at), *name = c + CENTRAL;
        if (memcmp(c, "PK\x01\x02", 4) != 0) goto done;
        uint64_t flags = u16(c + 8), method = u16(c + 10), crc = u32(c + 16), csize = u32(c + 20),
                 usize = u32(c + 24), nlen = u16(c + 28), elen = u16(c + 30), clen = u16(c + 32),
                 disk = u16(c + 34), hoff = u32(c + 42);
        uint64_t name_at = at + CENTRAL, next = name_at + nlen + elen + clen;
        if (next > cd_end || !safe_name(name, nlen) || !extra_ok(name + nlen, elen)) goto done;
        if (usize == 0xFFFFFFFF || csize == 0xFFFFFFFF || hoff == 0xFFFFFFFF || disk != 0) goto done;
        if (flags & (FLAG_ENCRYPTED | FLAG_STRONG) || (method != 0 && method != 8)) goto done;
        if (method == 0 && csize != usize) goto done;
        if (method == 8 && (usize > max_inflated_size ||
                            (usize > ratio_floor && (double)usize > max_ratio * (double)(csize ? csize : 1))))
            goto done;
        at = next;
        /* its local header */
        if (hoff + LOCAL + nlen > size) goto done;
        const uint8_t *l = bytes_at(&f, hoff, LOCAL + nlen);
        if (!l) { /* the central records after it may still fail: look at them first */
            need = hoff < need ? hoff : need;
            continue;
        }
        uint64_t data_at = hoff + LOCAL + u16(l + 26) + u16(l + 28);
        if (memcmp(l, "PK\x03\x04", 4) != 0 || data_at > size || u16(l + 26) != nlen ||
            memcmp(l + LOCAL, name, nlen) != 0 || u16(l + 8) != method)
            goto done;
        if (!(u16(l + 6) & FLAG_DESCRIPTOR)) {
            uint64_t lcsize = u32(l + 18), lusize = u32(l + 22);
            if (lcsize == 0xFFFFFFFF || lusize == 0xFFFFFFFF) goto done; /* sizes in a ZIP64 field */
            if (lcsize != csize || lusize != usize || u32(l + 14) != crc) goto done;
        }
        if (data_at + csize > size) goto done;
        int64_t *o = out + 3 + 9 * i;
        o[0] = (int64_t)(name_at - cd_off), o[1] = (int64_t)(name_at - cd_off + nlen);
        o[2] = (int64_t)method, o[3] = (int64_t)flags, o[4] = (int64_t)crc, o[5] = (int64_t)csize, o[6] = (int64_t)usize, o[7] = (int64_t)hoff;
        o[8] = (int64_t)data_at;
        spans[i].start = hoff, spans[i].end = data_at + csize;
    }
    if (at != cd_end) goto done;
    if (need < size) {
        out[1] = (int64_t)need, st = CTXBIN_EMORE;
        goto done;
    }
    /* no two entries share bytes; none reaches into the central directory */
    qsort(spans, n, sizeof *spans, by_start);
    for (uint64_t i = 0; i + 1 < n; i++)
        if (spans[i].end > spans[i + 1].start) goto done;
    if (n && spans[n - 1].end > cd_off) goto done;
    st = CTXBIN_OK;
done:
    free(spans);
    return st;
}

#if defined(_WIN32)
int ctxbin_zip_open(const char *path, ctxbin_zip_file *f, int64_t *out, uint64_t cap) {
    (void)path, (void)f, (void)out, (void)cap;
    return CTXBIN_EUNSUPPORTED;
}
#else
/* All n bytes at offset off, else 0 (an error, or the file ended first). */
static int read_all(int fd, uint8_t *buf, uint64_t n, uint64_t off) {
    while (n) {
        ssize_t got = pread(fd, buf, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        buf += got, n -= (uint64_t)got, off += (uint64_t)got;
    }
    return 1;
}

/* Where the first entry's data ends, as its local header in head says (0 when
 * it cannot tell): ziparchive._after_first. */
static uint64_t after_first(const uint8_t *head, uint64_t n) {
    if (n < LOCAL || memcmp(head, "PK\x03\x04", 4) != 0) return 0;
    uint64_t csize = u32(head + 18);
    if (u16(head + 6) & FLAG_DESCRIPTOR || csize == 0xFFFFFFFF) return 0;
    return LOCAL + u16(head + 26) + u16(head + 28) + csize;
}

int ctxbin_zip_open(const char *path, ctxbin_zip_file *f, int64_t *out, uint64_t cap) {
    if (!path || !f || !out) return CTXBIN_EINVAL;
    f->fd = -1, f->size = f->tail_at = 0, f->tail = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return CTXBIN_ERANGE;
    uint8_t *head = NULL, *tail = NULL;
    int st = CTXBIN_ERANGE;
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size <= 0) goto fail;
    uint64_t size = (uint64_t)info.st_size, head_len = size < f->head ? size : f->head;
    head = malloc(head_len);
    if (!head) goto nomem;
    if (!read_all(fd, head, head_len, 0)) goto fail;
    uint64_t tail_at = after_first(head, head_len);
    if (!(size >= EOCD && f->head <= tail_at && tail_at <= size - EOCD) || size - tail_at > f->tail_max)
        tail_at = size > f->tail_guess ? size - f->tail_guess : 0;
    for (int round = 0; round < 2; round++) { /* the guess, then what the scan asked for */
        tail = malloc(size - tail_at);
        if (!tail) goto nomem;
        if (!read_all(fd, tail, size - tail_at, tail_at)) goto fail;
        st = ctxbin_zip_scan(head, head_len, tail, size - tail_at, size, f->max_entries, f->max_inflated_size,
                             f->ratio_floor, f->max_ratio, out, cap);
        if (st == CTXBIN_OK) {
            free(head);
            f->fd = fd, f->size = size, f->tail_at = tail_at, f->tail = tail;
            return CTXBIN_OK;
        }
        if (st != CTXBIN_EMORE) goto fail;
        uint64_t need = (uint64_t)out[1];
        if (need >= tail_at || size - need > f->tail_max) break;
        tail_at = need;
        free(tail), tail = NULL;
    }
    st = CTXBIN_ERANGE;
    goto fail;
nomem:
    st = CTXBIN_ENOMEM;
fail:
    free(head), free(tail);
    close(fd);
    return st;
}
#endif
