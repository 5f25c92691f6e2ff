/* Bounds-checked walk of an untrusted flatbuffer along a schema: every table
 * of every schema type, with the fields the caller asked for, in one call.
 *
 * The schema is a list of table types in an order where every child type
 * comes after its parents (a DAG: nesting depth is bounded by the type count).
 * Type 0 is the root. Types are processed in order, each type's fields in
 * order, each field over all rows of the type (field-major): the Python
 * fallback in ctxbin/flatbuf.py walks the same way with numpy, so both give the
 * same rows, strings and budget charges. Costs charged to the budget are those
 * of ctxbin/flatbuf.py: 32 per table, 4 + length per string, 4 + bytes per
 * vector. Children always have a higher type than their parent, so adding
 * rows never moves the rows of the type being walked.
 */
#include <stdlib.h>
#include <string.h>

#include "ctxbin_core.h"
#include "core_internal.h"

#define TABLE_WORK 32

/* the per-table and per-string steps are inlined into the field loop (CB_INLINE:
 * their calls cost ~13% of the walk) */

struct ctxbin_fb_result {
    uint32_t ntypes;
    size_t *nrows, *caprows, *width;
    int64_t **pos;    /* per type: where each row's table is, appended as parents find it */
    int64_t **rows;   /* per type, made when its turn comes: nrows x (1 + 2 * nfields) cells */
    int64_t *spans;   /* (position, length) per string */
    size_t nstr, capstr;
    uint8_t *pool;    /* every string's bytes, each followed by a NUL */
    size_t npool, cappool;
};

typedef struct {
    const uint8_t *buf;
    uint64_t size;
    int64_t budget;
    const ctxbin_fb_field *fields;
    const uint32_t *type_start;
    ctxbin_fb_result *res;
    ctxbin_fb_error *err;
} walker;

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* width is 1, 2, 4 or 8 (check_schema): fixed-size reads the compiler makes single loads */
static uint64_t rdn(const uint8_t *p, unsigned width) {
    switch (width) {
    case 1: return p[0];
    case 2: return rd16(p);
    case 4: return rd32(p);
    default: return rd32(p) | (uint64_t)rd32(p + 4) << 32;
    }
}

static int fail(walker *w, int code, uint32_t type, int64_t row, int32_t field, uint64_t at,
                int64_t v1, int64_t v2) {
    ctxbin_fb_error *e = w->err;
    e->code = code;
    e->type = type;
    e->row = row;
    e->field = field;
    e->at = (int64_t)at;
    e->value = v1;
    e->value2 = v2;
    return CTXBIN_ERANGE;
}

/* [at, at + n) inside the buffer (64-bit sums: at < 2^33, n < 2^36 here) */
static int inside(const walker *w, uint64_t at, uint64_t n) { return at <= w->size && n <= w->size - at; }

static int charge(walker *w, int64_t work, uint32_t type, int64_t row, int32_t field, uint64_t at) {
    w->budget -= work;
    return w->budget < 0 ? fail(w, CTXBIN_FB_BUDGET, type, row, field, at, 0, 0) : CTXBIN_OK;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return CTXBIN_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return CTXBIN_ENOMEM;
    *p = q;
    *cap = n;
    return CTXBIN_OK;
}

static size_t width_of(const walker *w, uint32_t type) {
    return 1 + 2 * (size_t)(w->type_start[type + 1] - w->type_start[type]);
}

/* Check the table at pos (vtable and body in bounds) and append it as a row of type. */
CB_INLINE int add_table(walker *w, uint32_t type, uint64_t pos, int64_t *row_out) {
    ctxbin_fb_result *r = w->res;
    int64_t row = (int64_t)r->nrows[type];
    if (!inside(w, pos, 4)) return fail(w, CTXBIN_FB_RANGE, type, row, -1, pos, 4, 0);
    int st = charge(w, TABLE_WORK, type, row, -1, pos);
    if (st) return st;
    int64_t vt = (int64_t)pos - (int32_t)rd32(w->buf + pos);
    if (vt < 0 || !inside(w, (uint64_t)vt, 4))
        return fail(w, CTXBIN_FB_VTABLE_AT, type, row, -1, pos, (int32_t)rd32(w->buf + pos), 0);
    uint32_t vs = rd16(w->buf + vt), ts = rd16(w->buf + vt + 2);
    if (vs < 4 || vs % 2) return fail(w, CTXBIN_FB_VTABLE, type, row, -1, (uint64_t)vt, vs, 0);
    if (!inside(w, (uint64_t)vt, vs)) return fail(w, CTXBIN_FB_RANGE, type, row, -1, (uint64_t)vt, vs, 0);
    if (!inside(w, pos, ts < 4 ? 4 : ts)) return fail(w, CTXBIN_FB_RANGE, type, row, -1, pos, ts < 4 ? 4 : ts, 0);
    if (r->nrows[type] == r->caprows[type]) { /* only positions grow: cells are made once, at the type's turn */
        void *p = r->pos[type];
        st = grow(&p, &r->caprows[type], r->nrows[type] + 1, sizeof(int64_t));
        r->pos[type] = p;
        if (st) return st;
    }
    r->pos[type][r->nrows[type]++] = (int64_t)pos;
    *row_out = row;
    return CTXBIN_OK;
}

CB_INLINE int add_string(walker *w, uint64_t at, uint32_t type, int64_t row, int32_t field, int64_t *index) {
    ctxbin_fb_result *r = w->res;
    if (!inside(w, at, 4)) return fail(w, CTXBIN_FB_RANGE, type, row, field, at, 4, 0);
    uint64_t n = rd32(w->buf + at);
    if (!inside(w, at + 4, n + 1)) return fail(w, CTXBIN_FB_RANGE, type, row, field, at + 4, (int64_t)n + 1, 0);
    int st = charge(w, (int64_t)(4 + n), type, row, field, at);
    if (st) return st;
    if (w->buf[at + 4 + n] != 0) return fail(w, CTXBIN_FB_NUL, type, row, field, at + 4 + n, (int64_t)n, 0);
    void *p;
    if (r->nstr == r->capstr) {
        p = r->spans;
        st = grow(&p, &r->capstr, r->nstr + 1, 2 * sizeof(int64_t));
        r->spans = p;
        if (st) return st;
    }
    if (r->npool + n + 1 > r->cappool) {
        p = r->pool;
        st = grow(&p, &r->cappool, r->npool + n + 1, 1);
        r->pool = p;
        if (st) return st;
    }
    memcpy(r->pool + r->npool, w->buf + at + 4, n + 1);
    r->npool += n + 1;
    r->spans[2 * r->nstr] = (int64_t)(at + 4);
    r->spans[2 * r->nstr + 1] = (int64_t)n;
    *index = (int64_t)r->nstr++;
    return CTXBIN_OK;
}

/* Follow the u32 offset at `at` (inside the table, so at + 4 <= size). */
static uint64_t deref(const walker *w, uint64_t at) { return at + rd32(w->buf + at); }

/* A vector at `vec` of n elements of `elem` bytes: bounds and budget. */
CB_INLINE int vector(walker *w, uint64_t vec, unsigned elem, uint32_t type, int64_t row, int32_t field, uint64_t *n) {
    if (!inside(w, vec, 4)) return fail(w, CTXBIN_FB_RANGE, type, row, field, vec, 4, 0);
    *n = rd32(w->buf + vec);
    if (!inside(w, vec + 4, *n * elem)) return fail(w, CTXBIN_FB_RANGE, type, row, field, vec + 4, (int64_t)(*n * elem), 0);
    return charge(w, (int64_t)(4 + *n * elem), type, row, field, vec);
}

static int walk_field(walker *w, uint32_t type, uint32_t fi) {
    const ctxbin_fb_field *f = &w->fields[w->type_start[type] + fi];
    ctxbin_fb_result *r = w->res;
    size_t wd = width_of(w, type);
    unsigned need = f->kind == CTXBIN_FB_SCALAR ? f->width : 4;
    /* locals: the stores below may alias the walker and result (no strict aliasing);
     * this type's rows neither grow nor move while its fields are walked */
    const uint8_t *buf = w->buf;
    int64_t *cells = r->rows[type] + 1 + 2 * fi;
    const size_t nrows = r->nrows[type];
    const uint32_t vo = 4 + 2 * (uint32_t)f->index;
    const int64_t absent = f->kind == CTXBIN_FB_SCALAR ? 0 : -1;
    int st;
    for (size_t row = 0; row < nrows; row++, cells += wd) {
        int64_t *a = cells, *b = a + 1;
        uint64_t pos = (uint64_t)cells[-1 - 2 * (int64_t)fi];
        uint64_t vt = pos - (int32_t)rd32(buf + pos);
        uint32_t vs = rd16(buf + vt), ts = rd16(buf + vt + 2);
        uint32_t off = vo + 2 <= vs ? rd16(buf + vt + vo) : 0;
        *a = absent;
        *b = 0;
        if (off == 0) continue;
        if (off + need > ts) return fail(w, CTXBIN_FB_FIELD, type, (int64_t)row, (int32_t)fi, pos, off, ts);
        uint64_t at = pos + off, n, target;
        int64_t child = -1;
        switch (f->kind) {
        case CTXBIN_FB_SCALAR:
            *a = (int64_t)rdn(buf + at, f->width);
            *b = 1;
            break;
        case CTXBIN_FB_STRING:
            if ((st = add_string(w, deref(w, at), type, (int64_t)row, (int32_t)fi, a))) return st;
            break;
        case CTXBIN_FB_VECTOR:
            target = deref(w, at);
            if ((st = vector(w, target, f->width, type, (int64_t)row, (int32_t)fi, &n))) return st;
            *a = (int64_t)(target + 4);
            *b = (int64_t)n;
            break;
        case CTXBIN_FB_STRINGS:
        case CTXBIN_FB_TABLES:
            target = deref(w, at);
            if ((st = vector(w, target, 4, type, (int64_t)row, (int32_t)fi, &n))) return st;
            *a = f->kind == CTXBIN_FB_STRINGS ? (int64_t)r->nstr : (int64_t)r->nrows[f->child];
            *b = (int64_t)n;
            for (uint64_t i = 0; i < n; i++) {
                uint64_t e = target + 4 + 4 * i;
                st = f->kind == CTXBIN_FB_STRINGS
                         ? add_string(w, deref(w, e), type, (int64_t)row, (int32_t)fi, &child)
                         : add_table(w, f->child, deref(w, e), &child);
                if (st) return st;
            }
            break;
        case CTXBIN_FB_TABLE:
            if ((st = add_table(w, f->child, deref(w, at), &child))) return st;
            *a = child;
            break;
        default:
            return CTXBIN_EINVAL;
        }
    }
    return CTXBIN_OK;
}

void ctxbin_fb_free(ctxbin_fb_result *r) {
    if (!r) return;
    for (uint32_t t = 0; t < r->ntypes; t++) {
        free(r->rows[t]);
        free(r->pos[t]);
    }
    free(r->rows);
    free(r->pos);
    free(r->nrows);
    free(r->caprows);
    free(r->width);
    free(r->spans);
    free(r->pool);
    free(r);
}

static int check_schema(const ctxbin_fb_field *fields, const uint32_t *type_start, uint32_t ntypes) {
    if (!fields || !type_start || ntypes == 0) return CTXBIN_EINVAL;
    for (uint32_t t = 0; t < ntypes; t++) {
        if (type_start[t + 1] < type_start[t]) return CTXBIN_EINVAL;
        for (uint32_t i = type_start[t]; i < type_start[t + 1]; i++) {
            const ctxbin_fb_field *f = &fields[i];
            int child = f->kind == CTXBIN_FB_TABLE || f->kind == CTXBIN_FB_TABLES;
            if (f->kind > CTXBIN_FB_TABLES || (child && (f->child <= t || f->child >= ntypes)) ||
                ((f->kind == CTXBIN_FB_SCALAR || f->kind == CTXBIN_FB_VECTOR) &&
                 f->width != 1 && f->width != 2 && f->width != 4 && f->width != 8))
                return CTXBIN_EINVAL;
        }
    }
    return CTXBIN_OK;
}

int ctxbin_fb_walk(const uint8_t *buf, uint64_t size, const ctxbin_fb_field *fields,
                   const uint32_t *type_start, uint32_t ntypes, int64_t *budget,
                   ctxbin_fb_result **out, ctxbin_fb_error *err) {
    if (!buf || !out || !err || !budget) return CTXBIN_EINVAL;
    *out = NULL;
    memset(err, 0, sizeof *err);
    int st = check_schema(fields, type_start, ntypes);
    if (st) return st;
    ctxbin_fb_result *r = calloc(1, sizeof *r);
    if (!r) return CTXBIN_ENOMEM;
    r->ntypes = ntypes;
    r->nrows = calloc(ntypes, sizeof *r->nrows);
    r->caprows = calloc(ntypes, sizeof *r->caprows);
    r->rows = calloc(ntypes, sizeof *r->rows);
    r->pos = calloc(ntypes, sizeof *r->pos);
    r->width = calloc(ntypes, sizeof *r->width);
    if (!r->nrows || !r->caprows || !r->rows || !r->pos || !r->width) {
        ctxbin_fb_free(r);
        return CTXBIN_ENOMEM;
    }
    for (uint32_t t = 0; t < ntypes; t++) r->width[t] = 1 + 2 * (size_t)(type_start[t + 1] - type_start[t]);
    /* room for the strings of a buffer without shared references (their bytes; one
     * span per 16 bytes, real names take more), so honest walks rarely regrow these;
     * capped, so a huge buffer costs nothing up front */
    void *pool = NULL, *spans = NULL;
    st = grow(&pool, &r->cappool, (size < (1 << 20) ? size : (1 << 20)) + 1, 1);
    r->pool = pool;
    if (!st) st = grow(&spans, &r->capstr, (size < (1 << 20) ? size : (1 << 20)) / 16 + 1, 2 * sizeof(int64_t));
    r->spans = spans;
    if (st) {
        ctxbin_fb_free(r);
        return st;
    }
    walker w = {buf, size, *budget, fields, type_start, r, err};
    int64_t root;
    if (!inside(&w, 0, 4)) {
        st = fail(&w, CTXBIN_FB_RANGE, 0, 0, -1, 0, 4, 0);
    } else {
        st = add_table(&w, 0, rd32(buf), &root);
    }
    for (uint32_t t = 0; !st && t < ntypes; t++) {
        /* every row of type t is known now (its parents were walked): its cells, once
         * (walk_field writes both cells of its field in every row: no zeroing) */
        size_t n = r->nrows[t], wd = r->width[t];
        r->rows[t] = malloc((n ? n * wd : 1) * sizeof(int64_t));
        if (!r->rows[t]) {
            st = CTXBIN_ENOMEM;
            break;
        }
        for (size_t row = 0; row < n; row++) r->rows[t][row * wd] = r->pos[t][row];
        for (uint32_t fi = 0; !st && fi < type_start[t + 1] - type_start[t]; fi++) st = walk_field(&w, t, fi);
    }
    *budget = w.budget;
    if (st) {
        ctxbin_fb_free(r);
        return st;
    }
    *out = r;
    return CTXBIN_OK;
}

void ctxbin_fb_sizes(const ctxbin_fb_result *r, uint64_t *nrows, uint64_t *nstr, uint64_t *npool) {
    for (uint32_t t = 0; t < r->ntypes; t++) nrows[t] = r->nrows[t];
    *nstr = r->nstr;
    *npool = r->npool;
}

void ctxbin_fb_detach(ctxbin_fb_result *r, int64_t **rows, int64_t **spans, uint8_t **pool) {
    for (uint32_t t = 0; t < r->ntypes; t++) {
        rows[t] = r->rows[t];
        r->rows[t] = NULL;
    }
    /* down to what they hold (room for a buffer's strings was made up front): the caller keeps them */
    void *p = realloc(r->spans, (r->nstr ? r->nstr : 1) * 2 * sizeof(int64_t));
    if (p) r->spans = p;
    p = realloc(r->pool, r->npool ? r->npool : 1);
    if (p) r->pool = p;
    *spans = r->spans, *pool = r->pool;
    r->spans = NULL, r->pool = NULL;
}

void ctxbin_free(void *p) { free(p); }
