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
 *
 * A walk is first made a faster way that gives the same result when it
 * passes (tables checked at their type's turn, some types row by row: see
 * walk_all; strings charged as a sum: charge_added); when it fails, the walk
 * above is made again, for its error.
 */
#include <stdlib.h>
#include <string.h>

#include "ctxbin_core.h"
#include "core_internal.h"

#define TABLE_WORK 32
#define SHORT_STRING 32

/* the per-table and per-string steps are inlined into the field loops (CB_INLINE:
 * their calls cost ~13% of the walk) */

/* A checked table: where it is, and its vtable's entry in its type's list. */
typedef struct {
    uint64_t pos;
    uint32_t vt;
} table_at;

/* Writers share vtables (a type's thousands of tables have a handful): each
 * distinct one is read once, into an entry of 1 + nfields words: the table
 * size it declares (with VT_BAD set when some field has it set: shape_rows
 * then leaves the row to the walk field by field), then per field its offset
 * in the table (0: absent), with VT_BAD set when the field runs past the
 * table (an error once a row with it is walked). A small cache by vtable
 * position finds the entry again. */
#define VT_BAD 0x10000u
#define VT_SIZE(word) ((word) & (VT_BAD - 1)) /* the table size in an entry's first word */
#define VT_CACHE 16

/* What adding a table to a type reads and writes each time: a field's loop
 * works on a local copy (in registers: stores to cells cannot touch it). */
typedef struct {
    table_at *tabs;            /* where each row's table is, appended as parents find it */
    size_t n, cap;
    int own;                   /* tabs is an allocation of its own (else a piece of a block) */
    int64_t last_at;           /* the vtable of the type's last table (INT64_MIN: none yet), */
    uint32_t last, last_ts;    /* its entry and table size (at least 4): most tables share it */
} rows_end;

typedef struct {
    rows_end end;
    int64_t *rows;  /* its cells (n x (1 + 2 * nfields)) in the walk's cell block, while its turn lasts */
    uint32_t *vts;  /* the entries of its distinct vtables */
    size_t nvts, capvts;
    int vts_own;    /* vts is an allocation of its own (else a piece of a block) */
    int64_t seen_at[VT_CACHE]; /* vtable positions with an entry (INT64_MIN: none) */
    uint32_t seen[VT_CACHE];   /* and that entry */
    /* shape_rows' last two vtables (their tables often take turns: a Param of a
     * scalar, one of a tensor): the entry of the one in use, and the vtable,
     * entry and table size of the one before it (here, not in the loop's registers) */
    uint32_t now, before, before_ts;
    int64_t before_at;
} type_rows;

/* The walk only checks its strings and notes where they are (no copy, no call
 * in the field loops: they keep their counters in registers); the pool is
 * made in one piece when the walk is done. */
typedef struct {
    int64_t *spans; /* (position, length) per string */
    size_t nstr, capstr;
    uint8_t *pool; /* every string's bytes, each followed by a NUL (made by fill_pool) */
    size_t npool;  /* their bytes so far, NULs included */
} string_list;

/* Each type's first room for rows and vtable entries is a piece of a few big
 * blocks, freed with the result: a walk makes a few allocations instead of
 * two per type (most types never outgrow their first room; one that does
 * moves to an allocation of its own, its piece staying in the block). */
#define BLOCK_BYTES ((size_t)64 << 10)
typedef struct block {
    struct block *next;
    size_t used, cap, pad; /* 32 bytes: the pieces that follow stay 16-aligned */
} block;

struct ctxbin_fb_result {
    uint32_t ntypes;
    type_rows *types;
    block *blocks;
    /* every type's cells, one type after the other, each added at its turn (when
     * its rows are all known): one block, so the caller takes over one array */
    int64_t *cells;
    size_t ncells, capcells;
    string_list strs;
};

/* The walk's state, a local of ctxbin_fb_walk (its strings go back into the
 * result when the walk ends). */
typedef struct {
    const uint8_t *buf;
    uint64_t size;
    int64_t budget;
    const ctxbin_fb_field *fields;
    const uint32_t *type_start;
    type_rows *types;
    string_list strs; /* back in the result when the walk ends */
    ctxbin_fb_error *err;
    size_t first_rows; /* room made for a type's first table */
    block **blocks;    /* the result's */
} walker;

/* little-endian loads at any alignment (the compiler makes each one load) */
static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

CB_COLD static int fail(ctxbin_fb_error *e, int code, uint32_t type, int64_t row, int32_t field, uint64_t at,
                int64_t v1, int64_t v2) {
    e->code = code;
    e->type = type;
    e->row = row;
    e->field = field;
    e->at = (int64_t)at;
    e->value = v1;
    e->value2 = v2;
    return CTXBIN_ERANGE;
}

/* [at, at + n) inside the buffer: one sum, as at < 2^33 + size and n < 2^36 here
 * (offsets are u32 from inside the buffer, counts u32 times an item of <= 8 bytes) */
static int inside(const walker *w, uint64_t at, uint64_t n) { return at + n <= w->size; }

/* A row of the type being walked, by where its table_at is: its number is
 * computed on error paths only (as a number, computed up front, it took a
 * register in the field loops). */
typedef struct {
    const table_at *at, *first;
} row_ref;
#define ROW(r) ((int64_t)((r).at - (r).first))

static int charge(walker *w, int64_t work, uint32_t type, row_ref row, int32_t field, uint64_t at) {
    w->budget -= work;
    return w->budget < 0 ? fail(w->err, CTXBIN_FB_BUDGET, type, ROW(row), field, at, 0, 0) : CTXBIN_OK;
}

CB_INLINE int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return CTXBIN_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return CTXBIN_ENOMEM;
    *p = q;
    *cap = n;
    return CTXBIN_OK;
}

/* A piece of `bytes` from the blocks (NULL: out of memory). */
static void *piece(block **blocks, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    block *b = *blocks;
    if (!b || b->cap - b->used < bytes) {
        const int big = bytes > BLOCK_BYTES / 4; /* a block of its own, behind the one in use (which keeps its room) */
        const size_t cap = big ? bytes : BLOCK_BYTES;
        if (!(b = malloc(sizeof *b + cap))) return NULL;
        b->used = 0;
        b->cap = cap;
        if (big && *blocks) {
            b->next = (*blocks)->next;
            (*blocks)->next = b;
        } else {
            b->next = *blocks;
            *blocks = b;
        }
    }
    void *p = (char *)(b + 1) + b->used;
    b->used += bytes;
    return p;
}

/* grow, for a type's rows and vtable entries: the first room a piece, more room an allocation of its own. */
static int grow_room(block **blocks, void **p, size_t *cap, int *own, size_t need, size_t elem) {
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q;
    if (!*cap)
        q = piece(blocks, n * elem);
    else if (!*own) {
        if ((q = malloc(n * elem))) memcpy(q, *p, *cap * elem);
    } else
        q = realloc(*p, n * elem);
    if (!q) return CTXBIN_ENOMEM;
    *own = *cap != 0;
    *p = q;
    *cap = n;
    return CTXBIN_OK;
}

/* Read the vtable at vt (of a table at pos, row of type) into a new entry of the type's list. */
static int add_vtable(const walker *w, uint32_t type, size_t row, uint64_t pos, int32_t soff, int64_t vt, uint32_t *id) {
    type_rows *tr = &w->types[type];
    if (vt < 0 || !inside(w, (uint64_t)vt, 4))
        return fail(w->err, CTXBIN_FB_VTABLE_AT, type, (int64_t)row, -1, pos, soff, 0);
    const uint8_t *v = w->buf + vt;
    uint32_t vs = rd16(v), ts = rd16(v + 2);
    if (vs < 4 || vs % 2) return fail(w->err, CTXBIN_FB_VTABLE, type, (int64_t)row, -1, (uint64_t)vt, vs, 0);
    if (!inside(w, (uint64_t)vt, vs)) return fail(w->err, CTXBIN_FB_RANGE, type, (int64_t)row, -1, (uint64_t)vt, vs, 0);
    const ctxbin_fb_field *f = w->fields + w->type_start[type];
    const uint32_t nf = w->type_start[type + 1] - w->type_start[type];
    if (tr->nvts + 1 + nf > UINT32_MAX) return CTXBIN_ENOMEM; /* rows name an entry in 32 bits */
    if (tr->nvts + 1 + nf > tr->capvts) {
        void *p = tr->vts;
        int st = grow_room(w->blocks, &p, &tr->capvts, &tr->vts_own, tr->nvts + 1 + nf, sizeof(uint32_t));
        tr->vts = p;
        if (st) return st;
    }
    uint32_t *e = tr->vts + tr->nvts;
    e[0] = ts;
    for (uint32_t fi = 0; fi < nf; fi++) {
        uint32_t vo = 4 + 2 * (uint32_t)f[fi].index, need = f[fi].kind == CTXBIN_FB_SCALAR ? f[fi].width : 4;
        uint32_t off = vo + 2 <= vs ? rd16(v + vo) : 0;
        e[1 + fi] = off && off + need > ts ? off | VT_BAD : off;
        e[0] |= e[1 + fi] & VT_BAD;
    }
    *id = (uint32_t)tr->nvts;
    tr->nvts += 1 + nf;
    return CTXBIN_OK;
}

/* Room in e (type's end) for k more tables: made before a field's or a vector's
 * tables, so add_table checks none. */
CB_INLINE int reserve_tables(const walker *w, rows_end *e, uint64_t k) {
    if (e->n + k <= e->cap) return CTXBIN_OK;
    void *p = e->tabs;
    size_t cap = e->cap;
    int own = e->own;
    int st = grow_room(w->blocks, &p, &cap, &own, e->n + k > w->first_rows ? e->n + k : w->first_rows, sizeof(table_at));
    e->tabs = p;
    e->cap = cap;
    e->own = own;
    return st;
}

/* The entry of the vtable at vt, of the table at pos (row of type), not in
 * the type's cache: read, and then in the cache (-status when that fails). */
CB_NOINLINE static int64_t new_vtable(walker *w, uint32_t type, size_t row, uint64_t pos, int64_t vt, unsigned slot) {
    type_rows *tr = &w->types[type];
    uint32_t id = 0;
    int st = add_vtable(w, type, row, pos, (int32_t)(pos - vt), vt, &id);
    if (st) return -st;
    tr->seen_at[slot] = vt;
    tr->seen[slot] = id;
    return id;
}

/* The entry of the vtable at vt, of the table at pos (row of type): found in
 * the type's cache of the vtables seen lately, or read (-status when that fails). */
CB_INLINE int64_t vtable_id(const walker *w, uint32_t type, size_t row, uint64_t pos, int64_t vt) {
    const type_rows *tr = &w->types[type];
    const unsigned slot = (unsigned)(((uint64_t)vt * 0x9e3779b97f4a7c15ull) >> 60); /* of VT_CACHE = 16 */
    if (tr->seen_at[slot] == vt) return tr->seen[slot];
    walker copy = *w; /* w's address stays with its caller (see FIELD_LOOP) */
    return new_vtable(&copy, type, row, pos, vt, slot);
}

/* The table size of vtable entry id of type (at least 4: its vtable offset). */
static uint32_t table_size(const walker *w, uint32_t type, int64_t id) {
    const uint32_t ts = VT_SIZE(w->types[type].vts[id]);
    return ts < 4 ? 4 : ts;
}

/* Check the table at pos (vtable and body in bounds) and append it as row
 * e->n of type, whose end is e (room made by reserve_tables). */
CB_INLINE int add_table(walker *w, uint32_t type, rows_end *e, uint64_t pos) {
    size_t row = e->n;
    if (!inside(w, pos, 4)) return fail(w->err, CTXBIN_FB_RANGE, type, (int64_t)row, -1, pos, 4, 0);
    int st = charge(w, TABLE_WORK, type, (row_ref){e->tabs + row, e->tabs}, -1, pos);
    if (st) return st;
    int64_t vt = (int64_t)pos - (int32_t)rd32(w->buf + pos);
    uint32_t id = e->last, ts = e->last_ts;
    if (vt != e->last_at) {
        const int64_t got = vtable_id(w, type, row, pos, vt);
        if (got < 0) return (int)-got;
        id = (uint32_t)got;
        ts = table_size(w, type, id);
        e->last_at = vt;
        e->last = id;
        e->last_ts = ts;
    }
    if (!inside(w, pos, ts)) return fail(w->err, CTXBIN_FB_RANGE, type, (int64_t)row, -1, pos, ts, 0);
    e->tabs[row] = (table_at){pos, id};
    e->n = row + 1;
    return CTXBIN_OK;
}

/* Room for k more strings' spans (made before a field's or a vector's strings:
 * add_string then checks no room). */
CB_INLINE int reserve_strings(walker *w, uint64_t k) {
    string_list *r = &w->strs;
    if (r->nstr + k <= r->capstr) return CTXBIN_OK;
    void *p = r->spans;
    int st = grow(&p, &r->capstr, r->nstr + k, 2 * sizeof(int64_t));
    r->spans = p;
    return st;
}

/* Check the string at `at` and append it as string w->strs.nstr (room made by
 * reserve_strings). charged: its cost goes to the budget here (else the caller
 * charges it, from nstr and npool: see shape_rows). */
CB_INLINE int add_string(walker *w, uint64_t at, uint32_t type, row_ref row, int32_t field, int charged) {
    string_list *r = &w->strs;
    if (!inside(w, at, 4)) return fail(w->err, CTXBIN_FB_RANGE, type, ROW(row), field, at, 4, 0);
    uint64_t n = rd32(w->buf + at);
    if (!inside(w, at + 4, n + 1)) return fail(w->err, CTXBIN_FB_RANGE, type, ROW(row), field, at + 4, (int64_t)n + 1, 0);
    if (charged && (w->budget -= (int64_t)(4 + n)) < 0)
        return fail(w->err, CTXBIN_FB_BUDGET, type, ROW(row), field, at, 0, 0);
    if (w->buf[at + 4 + n] != 0) return fail(w->err, CTXBIN_FB_NUL, type, ROW(row), field, at + 4 + n, (int64_t)n, 0);
    int64_t *span = r->spans + 2 * r->nstr;
    span[0] = (int64_t)(at + 4);
    span[1] = (int64_t)n;
    r->nstr++;
    r->npool += n + 1;
    return CTXBIN_OK;
}

/* The pool: every string's bytes and NUL, in order (the walk checked them). */
CB_NOINLINE static int fill_pool(const walker *w, string_list *r) {
    /* SHORT_STRING bytes of slack: most names are short, and one fixed 32-byte
     * copy where the buffer has room (two that overlap up to 63 bytes) is
     * cheaper than a libc call; the bytes a copy puts past a NUL are overwritten
     * by the next string, or lie past npool */
    uint8_t *dst = malloc(r->npool + SHORT_STRING);
    if (!dst) return CTXBIN_ENOMEM;
    r->pool = dst;
    const uint8_t *buf = w->buf;
    const uint64_t room_end = w->size < SHORT_STRING ? 0 : w->size - SHORT_STRING + 1; /* at < room_end: 32 bytes at at */
    for (const int64_t *span = r->spans, *end = span + 2 * r->nstr; span != end; span += 2) {
        const uint64_t at = (uint64_t)span[0], n = (uint64_t)span[1];
        if (n < SHORT_STRING && at < room_end)
            memcpy(dst, buf + at, SHORT_STRING);
        else if (n >= SHORT_STRING && n < 2 * SHORT_STRING) { /* two copies that overlap */
            memcpy(dst, buf + at, SHORT_STRING);
            memcpy(dst + n + 1 - SHORT_STRING, buf + at + n + 1 - SHORT_STRING, SHORT_STRING);
        } else
            memcpy(dst, buf + at, n + 1);
        dst += n + 1;
    }
    return CTXBIN_OK;
}

/* one_field's `later` in the loops that charge their strings and TABLE tables
 * themselves, when they are done (charge_added) */
#define LATER_UNCHARGED 2

/* Follow the u32 offset at `at` (inside the table, so at + 4 <= size). */
static uint64_t deref(const walker *w, uint64_t at) { return at + rd32(w->buf + at); }

/* A vector at `vec` of n elements of `elem` bytes: bounds and budget. */
CB_INLINE int vector(walker *w, uint64_t vec, unsigned elem, uint32_t type, row_ref row, int32_t field, uint64_t *n) {
    if (!inside(w, vec, 4)) return fail(w->err, CTXBIN_FB_RANGE, type, ROW(row), field, vec, 4, 0);
    *n = rd32(w->buf + vec);
    if (!inside(w, vec + 4, *n * elem))
        return fail(w->err, CTXBIN_FB_RANGE, type, ROW(row), field, vec + 4, (int64_t)(*n * elem), 0);
    w->budget -= (int64_t)(4 + *n * elem);
    return w->budget < 0 ? fail(w->err, CTXBIN_FB_BUDGET, type, ROW(row), field, vec, 0, 0) : CTXBIN_OK;
}

/* A row without field fi (off 0: both its cells say absent) or with it past
 * its table (VT_BAD: an error; entry: the row's vtable entry). */
CB_INLINE int gap(walker *w, uint32_t type, uint32_t fi, row_ref here, uint64_t pos, uint32_t off, uint32_t entry,
                  int64_t *a, int kind) {
    if (off) return fail(w->err, CTXBIN_FB_FIELD, type, ROW(here), (int32_t)fi, pos, off & ~VT_BAD, VT_SIZE(entry));
    a[0] = kind == CTXBIN_FB_SCALAR ? 0 : -1;
    a[1] = 0;
    return CTXBIN_OK;
}

/* Field fi of a row (its table at pos, the field at offset off in it): its two
 * cells at a, and what it holds checked and added (ce: the end of its child
 * type, for TABLE and TABLES; room made for a TABLE's table and a STRING).
 * later: a child table is only charged and noted (its type's turn checks it:
 * check_rows, shape_rows); LATER_UNCHARGED: a TABLE's table and a STRING
 * are not charged either (shape_rows charges them, as a sum). */
CB_INLINE int one_field(walker *w, uint32_t type, uint32_t fi, row_ref here, uint64_t pos, uint32_t off, int64_t *a,
                        rows_end *ce, uint32_t child_type, int kind, unsigned width, int later) {
    const uint8_t *buf = w->buf;
    uint64_t at = pos + off, n = 0, target;
    int st;
    switch (kind) {
    case CTXBIN_FB_SCALAR:
        a[0] = (int64_t)(width == 1 ? buf[at] : width == 2 ? rd16(buf + at) : width == 4 ? rd32(buf + at) : rd64(buf + at));
        a[1] = 1;
        return CTXBIN_OK;
    case CTXBIN_FB_STRING:
        a[0] = (int64_t)w->strs.nstr; /* the string it adds */
        a[1] = 0;
        return add_string(w, deref(w, at), type, here, (int32_t)fi, later != LATER_UNCHARGED);
    case CTXBIN_FB_VECTOR:
        target = deref(w, at);
        if ((st = vector(w, target, width, type, here, (int32_t)fi, &n))) return st;
        a[0] = (int64_t)(target + 4);
        a[1] = (int64_t)n;
        return CTXBIN_OK;
    case CTXBIN_FB_STRINGS:
    case CTXBIN_FB_TABLES:
        target = deref(w, at);
        if ((st = vector(w, target, 4, type, here, (int32_t)fi, &n))) return st;
        /* tables noted for later are charged now: what is noted stays within the budget
         * (charged at their turn, a vector shared by many fields noted 8x as much) */
        if (later && kind == CTXBIN_FB_TABLES &&
            (st = charge(w, TABLE_WORK * (int64_t)n, type, here, (int32_t)fi, target)))
            return st;
        if ((st = kind == CTXBIN_FB_STRINGS ? reserve_strings(w, n) : reserve_tables(w, ce, n))) return st;
        a[0] = kind == CTXBIN_FB_STRINGS ? (int64_t)w->strs.nstr : (int64_t)ce->n;
        a[1] = (int64_t)n;
        for (uint64_t e = target + 4; e < target + 4 + 4 * n; e += 4) {
            if (later && kind == CTXBIN_FB_TABLES)
                ce->tabs[ce->n++].pos = deref(w, e);
            else if ((st = kind == CTXBIN_FB_STRINGS ? add_string(w, deref(w, e), type, here, (int32_t)fi,
                                                                  later != LATER_UNCHARGED)
                                                     : add_table(w, child_type, ce, deref(w, e))))
                return st;
        }
        return CTXBIN_OK;
    default: /* CTXBIN_FB_TABLE */
        a[0] = (int64_t)ce->n; /* the row it adds */
        a[1] = 0;
        if (!later) return add_table(w, child_type, ce, deref(w, at));
        if (later != LATER_UNCHARGED && (st = charge(w, TABLE_WORK, type, here, (int32_t)fi, at))) return st;
        ce->tabs[ce->n++].pos = deref(w, at);
        return CTXBIN_OK;
    }
}

/* One field over every row of its type (ce: the end of its child type, for
 * TABLE and TABLES); kind and width are constants where walk_field calls it,
 * so each kind gets its own loop without a per-row switch; dense (a constant
 * too): every vtable of the type has the field, in bounds, so no row needs a
 * test; 2: all at offset off0, so no row needs a lookup either. */
CB_INLINE int field_rows(walker *w, uint32_t type, uint32_t fi, rows_end *ce, int kind, unsigned width, int dense,
                         uint32_t off0, int later) {
    const type_rows *tr = &w->types[type];
    /* locals: this type's rows neither grow nor move while its fields are walked */
    const table_at *tab = tr->end.tabs;
    const size_t nrows = tr->end.n, wd = 1 + 2 * (size_t)(w->type_start[type + 1] - w->type_start[type]);
    int64_t *a = tr->rows + 1 + 2 * fi;
    const uint32_t *vts = tr->vts + 1 + fi; /* this field's word of each vtable entry */
    const uint32_t child_type = w->fields[w->type_start[type] + fi].child;
    int st;
    if (kind == CTXBIN_FB_STRING && (st = reserve_strings(w, nrows))) return st;
    if (kind == CTXBIN_FB_TABLE && (st = reserve_tables(w, ce, nrows))) return st;
    for (const table_at *row_at = tab, *end = tab + nrows; row_at != end; row_at++, a += wd) {
        const table_at t = *row_at;
        const row_ref here = {row_at, tab};
        uint32_t off = dense == 2 ? off0 : vts[t.vt];
        if (!dense && off - 1 >= VT_BAD - 1) { /* one test for both: absent (0) or past its table (VT_BAD set) */
            if ((st = gap(w, type, fi, here, t.pos, off, tr->vts[t.vt], a, kind))) return st;
            continue;
        }
        if ((st = one_field(w, type, fi, here, t.pos, off, a, ce, child_type, kind, width, later))) return st;
    }
    return CTXBIN_OK;
}

/* field_rows, after a look at the field's word in each of the type's vtables
 * (each is some row's): absent from all, no lookups; present in all, no
 * tests; and at one offset in all, no lookups. */
CB_INLINE int field_kind_rows(walker *w, uint32_t type, uint32_t fi, rows_end *ce, int kind, unsigned width,
                                int later) {
    const type_rows *tr = &w->types[type];
    const size_t step = 1 + (size_t)(w->type_start[type + 1] - w->type_start[type]); /* 1 + nfields words an entry */
    int present = 0, gaps = 0, uneven = 0;
    for (size_t v = 1 + fi; v < tr->nvts; v += step) {
        present |= tr->vts[v] != 0;
        gaps |= tr->vts[v] == 0 || (tr->vts[v] & VT_BAD);
        uneven |= tr->vts[v] != tr->vts[1 + fi];
    }
    if (!present) {
        int64_t *a = tr->rows + 1 + 2 * fi;
        for (size_t row = 0, wd = 2 * step - 1; row < tr->end.n; row++, a += wd) {
            a[0] = kind == CTXBIN_FB_SCALAR ? 0 : -1;
            a[1] = 0;
        }
        return CTXBIN_OK;
    }
    if (gaps) return field_rows(w, type, fi, ce, kind, width, 0, 0, later);
    return uneven ? field_rows(w, type, fi, ce, kind, width, 1, 0, later)
                  : field_rows(w, type, fi, ce, kind, width, 2, tr->vts[1 + fi], later);
}

/* The strings (nstr and npool were nstr0 and npool0) and the TABLE tables
 * (`tables` of them) a loop added uncharged (LATER_UNCHARGED), charged when it
 * is done, as a sum: a walk that passes ends with the same budget, and one
 * that goes below zero on the way still ends below it (no charge is
 * negative). Memory stays bounded: room for a TABLE's tables is made before
 * the loop, and a vector (of strings, or of tables) is charged, and checked,
 * before room is made for its items; a string left uncharged costs the loop
 * O(1) work. */
static int charge_added(walker *w, uint32_t type, size_t nstr0, size_t npool0, size_t tables) {
    /* a string costs 4 + its length, and its length + 1 bytes of the pool */
    w->budget -= (int64_t)(3 * (w->strs.nstr - nstr0) + (w->strs.npool - npool0)) + TABLE_WORK * (int64_t)tables;
    return w->budget < 0 ? fail(w->err, CTXBIN_FB_BUDGET, type, -1, -1, 0, 0, 0) : CTXBIN_OK; /* walked again, for the error */
}

/* One field of a type, on a copy of the walker: a local whose address stays
 * here, so its budget, sizes and counts live in registers, where the stores
 * to cells, tables and strings cannot touch them (through the caller's they
 * could: its fields were reloaded after each store). One function per kind
 * and width (not inlined into one another), so each loop gets the registers
 * to itself: inlined together, the string loop's counters went to the stack. */
#define FIELD_LOOP(name, kind, width, later)                                                  \
    CB_NOINLINE static int name(walker *w, uint32_t type, uint32_t fi, const ctxbin_fb_field *f) { \
        walker local = *w;                                                                    \
        rows_end ce = {0};                                                                    \
        int tables = kind == CTXBIN_FB_TABLE || kind == CTXBIN_FB_TABLES;                     \
        if (tables) ce = w->types[f->child].end;                                              \
        const size_t nstr0 = local.strs.nstr, npool0 = local.strs.npool;                      \
        int st = field_kind_rows(&local, type, fi, &ce, kind, width, later);                  \
        if (!st && later == LATER_UNCHARGED) st = charge_added(&local, type, nstr0, npool0, 0); \
        if (tables) w->types[f->child].end = ce;                                              \
        *w = local;                                                                           \
        return st;                                                                            \
    }
FIELD_LOOP(scalar1_rows, CTXBIN_FB_SCALAR, 1, 0)
FIELD_LOOP(scalar2_rows, CTXBIN_FB_SCALAR, 2, 0)
FIELD_LOOP(scalar4_rows, CTXBIN_FB_SCALAR, 4, 0)
FIELD_LOOP(scalar8_rows, CTXBIN_FB_SCALAR, 8, 0)
FIELD_LOOP(string_rows, CTXBIN_FB_STRING, 4, 0)
FIELD_LOOP(vector_rows, CTXBIN_FB_VECTOR, f->width, 0)
FIELD_LOOP(strings_rows, CTXBIN_FB_STRINGS, 4, 0)
FIELD_LOOP(table_rows, CTXBIN_FB_TABLE, 4, 0)
FIELD_LOOP(tables_rows, CTXBIN_FB_TABLES, 4, 0)
/* the fields whose tables are checked later (see walk_all) */
FIELD_LOOP(table_rows_later, CTXBIN_FB_TABLE, 4, 1)
FIELD_LOOP(tables_rows_later, CTXBIN_FB_TABLES, 4, 1)
/* and those whose strings are charged when the loop is done */
FIELD_LOOP(string_rows_later, CTXBIN_FB_STRING, 4, LATER_UNCHARGED)
FIELD_LOOP(strings_rows_later, CTXBIN_FB_STRINGS, 4, LATER_UNCHARGED)
#undef FIELD_LOOP

static int walk_field(walker *w, uint32_t type, uint32_t fi, int later) {
    const ctxbin_fb_field *f = &w->fields[w->type_start[type] + fi];
    if (later) switch (f->kind) {
        case CTXBIN_FB_TABLE: return table_rows_later(w, type, fi, f);
        case CTXBIN_FB_TABLES: return tables_rows_later(w, type, fi, f);
        case CTXBIN_FB_STRING: return string_rows_later(w, type, fi, f);
        case CTXBIN_FB_STRINGS: return strings_rows_later(w, type, fi, f);
        default: break; /* scalars and vectors: walked alike either way */
        }
    switch (f->kind) {
    case CTXBIN_FB_SCALAR:
        switch (f->width) {
        case 1: return scalar1_rows(w, type, fi, f);
        case 2: return scalar2_rows(w, type, fi, f);
        case 4: return scalar4_rows(w, type, fi, f);
        default: return scalar8_rows(w, type, fi, f); /* check_schema: 1, 2, 4 or 8 */
        }
    case CTXBIN_FB_STRING: return string_rows(w, type, fi, f);
    case CTXBIN_FB_VECTOR: return vector_rows(w, type, fi, f);
    case CTXBIN_FB_STRINGS: return strings_rows(w, type, fi, f);
    case CTXBIN_FB_TABLE: return table_rows(w, type, fi, f);
    default: return tables_rows(w, type, fi, f); /* check_schema: no other kind */
    }
}

/* The rows of type t, found by its parents and checked later (charged when
 * noted): each table's vtable and bounds, and its position in its first cell. */
CB_NOINLINE static int check_rows(walker *w, uint32_t t, int64_t *cells, size_t wd) {
    type_rows *tr = &w->types[t];
    table_at *tab = tr->end.tabs;
    const size_t n = tr->end.n;
    const uint8_t *buf = w->buf;
    const uint64_t size = w->size;
    int64_t last_at = INT64_MIN; /* the vtable of the row before (none yet) */
    uint32_t id = 0, ts = 4;     /* its entry and table size */
    for (size_t row = 0; row < n; row++, cells += wd) {
        const uint64_t pos = tab[row].pos;
        if (pos + 4 > size) return fail(w->err, CTXBIN_FB_RANGE, t, (int64_t)row, -1, pos, 4, 0);
        const int64_t vt = (int64_t)pos - (int32_t)rd32(buf + pos);
        if (vt != last_at) {
            const int64_t got = vtable_id(w, t, row, pos, vt);
            if (got < 0) return (int)-got;
            id = (uint32_t)got;
            ts = table_size(w, t, id);
            last_at = vt;
        }
        if (pos + ts > size) return fail(w->err, CTXBIN_FB_RANGE, t, (int64_t)row, -1, pos, ts, 0);
        tab[row].vt = id;
        *cells = (int64_t)pos;
    }
    return CTXBIN_OK;
}

/* Row by row: the types of the schemas ctxbin walks most (the DLC tables of
 * ctxbin/formats/dlc.py: Tensor, Param, Scalar, Quant, TensorData, ...) have
 * one of a few shapes (their fields' kinds and widths). A type of such a shape
 * is walked a row at a time, every field in turn, with kinds and widths
 * constants: the row's table and vtable entry are read once, not once per
 * field. A shape has at most one field that adds strings, and the type's
 * TABLE and TABLES fields must have distinct child types: then strings and
 * child rows come in the same order as the field-major walk's, so a walk
 * that passes gives the same rows, cells, strings and budget. One that fails
 * fails first elsewhere (another error, another budget): ctxbin_fb_walk then
 * walks again field by field, for the field-major walk's error. */
#define SHAPE_MAX 6
typedef struct {
    uint8_t n, kind[SHAPE_MAX], width[SHAPE_MAX];
} row_shape;

#define S_ CTXBIN_FB_SCALAR
static const row_shape SHAPES[] = {
    {0, {0}, {0}}, /* 0: none (field by field) */
    {5, {CTXBIN_FB_STRING, S_, CTXBIN_FB_VECTOR, CTXBIN_FB_TABLE, S_}, {0, 4, 4, 0, 4}}, /* 1: Tensor */
    {4, {CTXBIN_FB_STRING, S_, CTXBIN_FB_TABLE, CTXBIN_FB_TABLE}, {0, 4, 0, 0}},      /* 2: Param */
    {4, {S_, S_, S_, CTXBIN_FB_STRING}, {4, 8, 8, 0}},                                /* 3: Scalar */
    {4, {S_, CTXBIN_FB_TABLE, CTXBIN_FB_TABLE, CTXBIN_FB_TABLE}, {4, 0, 0, 0}},       /* 4: Quant */
    {2, {S_, CTXBIN_FB_TABLES}, {4, 0}},                                              /* 5: Axis */
    {6, {S_, CTXBIN_FB_TABLES, S_, S_, S_, CTXBIN_FB_VECTOR}, {4, 0, 4, 4, 1, 1}},     /* 6: Blockwise */
    {4, {S_, S_, S_, S_}, {4, 4, 4, 1}},                                              /* 7: ScaleOffset */
    {3, {CTXBIN_FB_STRING, CTXBIN_FB_VECTOR, CTXBIN_FB_TABLE}, {0, 1, 0}},            /* 8: TensorData */
    {2, {S_, S_}, {8, 8}},                                                            /* 9: BinRef */
};
#undef S_
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* The shape of type t's fields (0: none, or its table fields share a child type). */
static uint8_t shape_of(const ctxbin_fb_field *f, uint32_t nf) {
    for (uint32_t i = 0; i < nf; i++)
        for (uint32_t j = 0; j < i; j++)
            if ((f[i].kind == CTXBIN_FB_TABLE || f[i].kind == CTXBIN_FB_TABLES) &&
                (f[j].kind == CTXBIN_FB_TABLE || f[j].kind == CTXBIN_FB_TABLES) && f[i].child == f[j].child)
                return 0;
    for (uint8_t s = 1; s < NSHAPES; s++) {
        uint32_t i = 0;
        if (SHAPES[s].n != nf) continue;
        for (; i < nf && f[i].kind == SHAPES[s].kind[i] &&
               ((f[i].kind != CTXBIN_FB_SCALAR && f[i].kind != CTXBIN_FB_VECTOR) || f[i].width == SHAPES[s].width[i]);
             i++) {
        }
        if (i == nf) return s;
    }
    return 0;
}

/* Every row of a type of shape s (a constant: each field's step is inlined with its kind and width). */
CB_INLINE int shape_rows(walker *w, uint32_t type, const row_shape s) {
    walker local = *w; /* in registers, as in FIELD_LOOP */
    type_rows *tr = &w->types[type];
    const ctxbin_fb_field *f = w->fields + w->type_start[type];
    const table_at *tab = tr->end.tabs;
    const size_t nrows = tr->end.n, wd = 1 + 2 * (size_t)s.n;
    rows_end ce[SHAPE_MAX];
    uint32_t child[SHAPE_MAX];
    int st = CTXBIN_OK;
    for (unsigned i = 0; i < s.n; i++) {
        child[i] = f[i].child;
        if (s.kind[i] == CTXBIN_FB_TABLE || s.kind[i] == CTXBIN_FB_TABLES) ce[i] = w->types[child[i]].end;
        if (!st && s.kind[i] == CTXBIN_FB_STRING) st = reserve_strings(&local, nrows);
        if (!st && s.kind[i] == CTXBIN_FB_TABLE) st = reserve_tables(&local, &ce[i], nrows);
    }
    int64_t *a = tr->rows + 1;
    int64_t last_at = INT64_MIN;    /* the vtable of the row before (none yet) */
    const uint32_t *e = NULL;       /* its entry: its table size, then its fields' offsets */
    uint32_t ts = 4;                /* that size, at least 4 */
    /* the strings and TABLE tables added here are charged when the loop is done
     * (charge_added: the budget left out of the loop's registers) */
    const size_t nstr0 = local.strs.nstr, npool0 = local.strs.npool;
    size_t tables0 = 0;
    for (unsigned i = 0; i < s.n; i++)
        if (s.kind[i] == CTXBIN_FB_TABLE) tables0 += ce[i].n;
    if (st) goto done;
    for (const table_at *row_at = tab, *end = tab + nrows; row_at != end; row_at++, a += wd) {
        /* the row's table checked as check_rows checks the other types' (written out
         * here: through a helper shared with it, the row loops kept less in registers), then its fields */
        const table_at t = *row_at;
        const row_ref here = {row_at, tab};
        if (t.pos + 4 > local.size) {
            st = fail(w->err, CTXBIN_FB_RANGE, type, ROW(here), -1, t.pos, 4, 0);
            goto done;
        }
        const int64_t vt = (int64_t)t.pos - (int32_t)rd32(local.buf + t.pos);
        if (vt != last_at) {
            const uint32_t was = tr->now, was_ts = ts;
            if (vt == tr->before_at) {
                tr->now = tr->before;
                ts = tr->before_ts;
            } else {
                const int64_t id = vtable_id(&local, type, ROW(here), t.pos, vt);
                if (id < 0) {
                    st = (int)-id;
                    goto done;
                }
                tr->now = (uint32_t)id;
                ts = table_size(&local, type, id);
            }
            tr->before_at = last_at;
            tr->before = was;
            tr->before_ts = was_ts;
            e = tr->vts + tr->now;
            last_at = vt;
            if (e[0] & VT_BAD) { /* a field past its table: an error, named by the walk field by field */
                st = fail(w->err, CTXBIN_FB_FIELD, type, ROW(here), -1, t.pos, 0, 0);
                goto done;
            }
        }
        if (t.pos + ts > local.size) {
            st = fail(w->err, CTXBIN_FB_RANGE, type, ROW(here), -1, t.pos, ts, 0);
            goto done;
        }
        a[-1] = (int64_t)t.pos;
#define SHAPE_FIELD(i)                                                                                            \
        if (s.n > i) {                                                                                            \
            const uint32_t off = e[1 + i]; /* no VT_BAD here (see above) */                                       \
            if (!off ? (st = gap(&local, type, i, here, t.pos, off, e[0], a + 2 * i, s.kind[i]))                  \
                                      : (st = one_field(&local, type, i, here, t.pos, off, a + 2 * i, &ce[i],     \
                                                        child[i], s.kind[i], s.width[i], LATER_UNCHARGED)))          \
                goto done;                                                                                        \
        }
        SHAPE_FIELD(0)
        SHAPE_FIELD(1)
        SHAPE_FIELD(2)
        SHAPE_FIELD(3)
        SHAPE_FIELD(4)
        SHAPE_FIELD(5)
#undef SHAPE_FIELD
    }
    size_t tables = 0;
    for (unsigned i = 0; i < s.n; i++)
        if (s.kind[i] == CTXBIN_FB_TABLE) tables += ce[i].n;
    st = charge_added(&local, type, nstr0, npool0, tables - tables0);
done:
    for (unsigned i = 0; i < s.n; i++)
        if (s.kind[i] == CTXBIN_FB_TABLE || s.kind[i] == CTXBIN_FB_TABLES) w->types[child[i]].end = ce[i];
    *w = local;
    return st;
}

/* one function per shape, so each gets its own registers (as FIELD_LOOP's) */
#define SHAPE_LOOP(name, s) \
    CB_NOINLINE static int name(walker *w, uint32_t type) { return shape_rows(w, type, SHAPES[s]); }
SHAPE_LOOP(shape1_rows, 1)
SHAPE_LOOP(shape2_rows, 2)
SHAPE_LOOP(shape3_rows, 3)
SHAPE_LOOP(shape4_rows, 4)
SHAPE_LOOP(shape5_rows, 5)
SHAPE_LOOP(shape6_rows, 6)
SHAPE_LOOP(shape7_rows, 7)
SHAPE_LOOP(shape8_rows, 8)
SHAPE_LOOP(shape9_rows, 9)
#undef SHAPE_LOOP
static int (*const SHAPE_ROWS[NSHAPES])(walker *, uint32_t) = {
    NULL, shape1_rows, shape2_rows, shape3_rows, shape4_rows, shape5_rows, shape6_rows, shape7_rows, shape8_rows,
    shape9_rows};

void ctxbin_fb_free(ctxbin_fb_result *r) {
    if (!r) return;
    for (uint32_t t = 0; r->types && t < r->ntypes; t++) {
        if (r->types[t].end.own) free(r->types[t].end.tabs);
        if (r->types[t].vts_own) free(r->types[t].vts);
    }
    for (block *b = r->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(r->cells);
    free(r->types);
    free(r->strs.spans);
    free(r->strs.pool);
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

/* The walk of a checked schema. later: each table is checked when its type's
 * turn comes, not where its parent finds it (the field loops only charge it
 * and note where it is, in fewer registers), and the types of a shape
 * (shape[t], NULL: none) are walked a row at a time. A walk that passes so
 * makes the same checks and charges (in another order), so it gives the same
 * result; one that fails may fail first elsewhere: ctxbin_fb_walk then walks
 * again without either, for the error (and budget) of the first failure. */
static int walk_all(const uint8_t *buf, uint64_t size, const ctxbin_fb_field *fields, const uint32_t *type_start,
                    uint32_t ntypes, int later, const uint8_t *shape, int64_t *budget, ctxbin_fb_result **out,
                    ctxbin_fb_error *err) {
    int st;
    ctxbin_fb_result *r = calloc(1, sizeof *r);
    if (!r) return CTXBIN_ENOMEM;
    r->ntypes = ntypes;
    r->types = malloc(ntypes * sizeof *r->types); /* no overflow: ntypes < 2^32 */
    if (!r->types) {
        ctxbin_fb_free(r);
        return CTXBIN_ENOMEM;
    }
    for (uint32_t t = 0; t < ntypes; t++) { /* all but seen, read only where seen_at says it was written */
        type_rows *tr = &r->types[t];
        tr->end = (rows_end){.last_at = INT64_MIN}; /* no vtable is there (vt = pos - i32 > INT64_MIN) */
        tr->rows = NULL;
        tr->vts = NULL;
        tr->nvts = tr->capvts = 0;
        tr->vts_own = 0;
        tr->now = 0;
        tr->before_at = INT64_MIN;
        for (unsigned i = 0; i < VT_CACHE; i++) tr->seen_at[i] = INT64_MIN;
    }
    /* room for the strings of a buffer without shared references (one span per 16
     * bytes, real names take more), so honest walks rarely regrow it; capped, so a
     * huge buffer costs nothing up front */
    /* a type's first room: one table per 128 bytes (real tables take 16+, most
     * buffers hold one or two big types), so honest walks rarely regrow it */
    size_t first_rows = (size < (1 << 20) ? size : (1 << 20)) / 128 + 1;
    walker w = {buf, size, *budget, fields, type_start, r->types, {NULL, 0, 0, NULL, 0}, err, first_rows, &r->blocks};
    void *spans = NULL;
    st = grow(&spans, &w.strs.capstr, (size < (1 << 20) ? size : (1 << 20)) / 16 + 1, 2 * sizeof(int64_t));
    w.strs.spans = spans;
    /* room for a word of cells per 4 bytes of buffer (real tables take about one per 8), capped */
    void *cells = NULL;
    if (!st) st = grow(&cells, &r->capcells, (size < (1 << 20) ? size : (1 << 20)) / 4 + 1, sizeof(int64_t));
    r->cells = cells;
    if (!st && !inside(&w, 0, 4)) st = fail(err, CTXBIN_FB_RANGE, 0, 0, -1, 0, 4, 0);
    if (!st && !(st = reserve_tables(&w, &r->types[0].end, 1))) {
        const table_at *first = r->types[0].end.tabs;
        if (later && !(st = charge(&w, TABLE_WORK, 0, (row_ref){first, first}, -1, 0)))
            r->types[0].end.tabs[r->types[0].end.n++].pos = rd32(buf);
        else if (!later)
            st = add_table(&w, 0, &r->types[0].end, rd32(buf));
    }
    for (uint32_t t = 0; !st && t < ntypes; t++) {
        /* every row of type t is known now (its parents were walked): its cells, once
         * (field_rows writes both cells of its field in every row: no zeroing); the
         * block may move as it grows, but only this type's cells are written now */
        type_rows *tr = &r->types[t];
        size_t n = tr->end.n, wd = 1 + 2 * (size_t)(type_start[t + 1] - type_start[t]);
        cells = r->cells;
        if ((st = grow(&cells, &r->capcells, r->ncells + n * wd, sizeof(int64_t)))) break;
        r->cells = cells;
        tr->rows = r->cells + r->ncells;
        r->ncells += n * wd;
        int64_t *cells_t = tr->rows;
        const uint8_t shaped = shape ? shape[t] : 0; /* shape_rows checks its rows and sets their first cells */
        if (later && !shaped) {
            st = check_rows(&w, t, cells_t, wd);
        } else if (!later) {
            const table_at *tabs = tr->end.tabs;
            size_t row = 0;
            for (int64_t *c = cells_t; row + 4 <= n; row += 4, c += 4 * wd) { /* four a step: ~1% of the walk */
                c[0] = (int64_t)tabs[row].pos;
                c[wd] = (int64_t)tabs[row + 1].pos;
                c[2 * wd] = (int64_t)tabs[row + 2].pos;
                c[3 * wd] = (int64_t)tabs[row + 3].pos;
            }
            for (; row < n; row++) cells_t[row * wd] = (int64_t)tabs[row].pos;
        }
        if (!st && shaped)
            st = SHAPE_ROWS[shaped](&w, t);
        else
            for (uint32_t fi = 0; !st && fi < type_start[t + 1] - type_start[t]; fi++) st = walk_field(&w, t, fi, later);
    }
    if (!st) st = fill_pool(&w, &w.strs);
    r->strs = w.strs;
    *budget = w.budget;
    if (st) {
        ctxbin_fb_free(r);
        return st;
    }
    *out = r;
    return CTXBIN_OK;
}

/* types past this many are walked field by field only */
#define SHAPED_TYPES 32

int ctxbin_fb_walk(const uint8_t *buf, uint64_t size, const ctxbin_fb_field *fields,
                   const uint32_t *type_start, uint32_t ntypes, int64_t *budget,
                   ctxbin_fb_result **out, ctxbin_fb_error *err) {
    if (!buf || !out || !err || !budget) return CTXBIN_EINVAL;
    *out = NULL;
    memset(err, 0, sizeof *err);
    int st = check_schema(fields, type_start, ntypes);
    if (st) return st;
    uint8_t shape[SHAPED_TYPES];
    for (uint32_t t = 0; ntypes <= SHAPED_TYPES && t < ntypes; t++)
        shape[t] = shape_of(fields + type_start[t], type_start[t + 1] - type_start[t]);
    int64_t left = *budget;
    if (walk_all(buf, size, fields, type_start, ntypes, 1, ntypes <= SHAPED_TYPES ? shape : NULL, &left, out, err) ==
        CTXBIN_OK) {
        *budget = left;
        return CTXBIN_OK;
    }
    memset(err, 0, sizeof *err); /* the walk in field order names the first failure */
    return walk_all(buf, size, fields, type_start, ntypes, 0, NULL, budget, out, err);
}

void ctxbin_fb_sizes(const ctxbin_fb_result *r, uint64_t *nrows, uint64_t *nstr, uint64_t *npool) {
    for (uint32_t t = 0; t < r->ntypes; t++) nrows[t] = r->types[t].end.n;
    *nstr = r->strs.nstr;
    *npool = r->strs.npool;
}

void ctxbin_fb_detach(ctxbin_fb_result *r, int64_t **cells, int64_t **spans, uint8_t **pool) {
    /* down to what they hold (room was made up front; the pool has but a few
     * bytes of slack): the caller keeps them */
    void *p = realloc(r->cells, (r->ncells ? r->ncells : 1) * sizeof(int64_t));
    if (p) r->cells = p;
    string_list *l = &r->strs;
    p = realloc(l->spans, (l->nstr ? l->nstr : 1) * 2 * sizeof(int64_t));
    if (p) l->spans = p;
    *cells = r->cells, *spans = l->spans, *pool = l->pool;
    r->cells = NULL, l->spans = NULL, l->pool = NULL;
}

void ctxbin_free(void *p) { free(p); }
