/* DLC v4 open in one call (ctxbin_dlc_v4_open): the schema walks of `model`
 * and `model.params` (native/flatbuf.c), then every open-time check of every
 * graph (tensor tables, nodes, params) against its model.params tables.
 *
 * The numpy/Python code in ctxbin/formats/dlc.py (_V4Tensors, _v4_nodes) makes
 * the same checks and is the reference: this only says whether they all pass
 * (and, when they do, gives their results); when one fails the caller runs
 * the Python checks, which raise the error naming the tensor, node or param
 * and the byte offset. So the two can never disagree on a message. Anything
 * unusual (an unnamed tensor, a zero-element static tensor, a float16
 * scalar, a node with very many tensor params, ...) is also left to the
 * Python checks, which may accept it: a failure here only means "take the
 * slow path". The hypothesis tests check that whatever passes here passes
 * there with the same results.
 */
#include <stdlib.h>
#include <string.h>

#include "ctxbin_core.h"
#include "core_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#endif

/* the per-name and per-tensor steps are inlined into the graph loops (CB_INLINE:
 * their calls cost ~7% of the check) */

/* What the checks read: the two walks' tables, strings and flatbuffers, and the codes ctxbin knows. */
typedef struct {
    const uint8_t *model;        /* the model flatbuffer (positions are relative to it) */
    const int64_t *model_spans;  /* its walk's string spans */
    const uint8_t *params;       /* the model.params flatbuffer */
    const int64_t *params_spans;
    uint64_t params_start;       /* where that flatbuffer starts in its entry */
    const int64_t *rows[CTXBIN_DLC_NTABLES]; /* every row of each table (CTXBIN_DLC_*) */
    uint64_t nrows[CTXBIN_DLC_NTABLES], width[CTXBIN_DLC_NTABLES];
    int64_t params_bin_size;     /* -1: the archive has no model.params.bin */
    const int64_t *cols;         /* CTXBIN_DLC_NCOLS cell columns */
    const int32_t *kinds;
    uint32_t nkinds;
    const int32_t *dtypes;
    const uint8_t *itemsizes;
    uint32_t ndtypes;
    const int64_t *graphs;       /* 8 row-range bounds per graph: Tensor, TensorData, Node, NodeParameters */
    uint64_t ngraphs;
} v4_in;

typedef struct {
    const uint8_t *buf;
    const int64_t *spans; /* (position, length) per string of the walk */
    uint64_t *compared;   /* bytes compared so far (shared by every string set of one check) */
} strings;

/* Names are compared through hash tables with bounded probing and pairwise
 * within a node's few tensor params: a file made of long, nearly equal names
 * could still make that compare bytes far beyond its size, so past this many
 * the check gives up (the Python path, with dicts, takes over). */
#define MAX_COMPARED ((uint64_t)1 << 26)

/* A table-slot hash of a walk's string (n bytes at p), 8 bytes a step (names
 * run to dozens of bytes: a byte-at-a-time hash was most of this file's time).
 * Only its spread matters. The last, partial word is zero-padded; the walk
 * checked the 4-byte length before a string and the NUL after it, so on
 * little-endian CPUs that word is one load ending at the NUL, shifted (no
 * byte-count copy). */
CB_INLINE uint64_t name_hash(const uint8_t *p, uint64_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, v;
    for (const uint8_t *end = p + (n & ~(uint64_t)7); p != end; p += 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h = h << 32 | h >> 32; /* the product's well-mixed high half to the low bits the next word meets */
    }
    const unsigned r = (unsigned)(n & 7); /* the partial word's bytes, at p */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n >= 3) { /* 8 bytes from p + r - 7 >= the string - 4: the NUL lands in the top byte */
        memcpy(&v, p + r - 7, 8);
        v >>= 8 * (7 - r);
    } else { /* 4 bytes from p + r - 3 >= the string - 3 */
        uint32_t u;
        memcpy(&u, p + r - 3, 4);
        v = u >> 8 * (3 - r);
    }
#else
    v = 0;
    memcpy(&v, p, r);
#endif
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    return h ^ h >> 32;
}

/* An open-addressing set of string indices, sized for n entries (load <= 1/2). */
typedef struct {
    int64_t *slot; /* string index, -1 = empty */
    int64_t *row;  /* the row that owns it */
    uint64_t mask;
} table;

static int table_init(table *t, uint64_t n) {
    uint64_t cap = 8;
    while (cap < 2 * n) cap *= 2;
    t->slot = malloc(cap * sizeof *t->slot);
    t->row = malloc(cap * sizeof *t->row);
    t->mask = cap - 1;
    if (!t->slot || !t->row) return CTXBIN_ENOMEM;
    memset(t->slot, 0xff, cap * sizeof *t->slot);
    return CTXBIN_OK;
}

static void table_free(table *t) {
    free(t->slot);
    free(t->row);
}

/* Strings i of a and j of b are equal (never, once MAX_COMPARED is spent: the caller then fails). */
CB_INLINE int same(const strings *a, int64_t i, const strings *b, int64_t j) {
    int64_t n = a->spans[2 * i + 1];
    if (n != b->spans[2 * j + 1]) return 0;
    *a->compared += (uint64_t)n + 1;
    return *a->compared <= MAX_COMPARED &&
           memcmp(a->buf + a->spans[2 * i], b->buf + b->spans[2 * j], (size_t)n) == 0;
}

/* The hash is not keyed, so a file could be made of colliding names: a probe
 * run longer than this gives up (the caller's Python path, whose dict hashing
 * is randomized, takes over) instead of going quadratic. */
#define MAX_PROBES 64

/* string s of st's name_hash */
CB_INLINE uint64_t string_hash(const strings *st, int64_t s) {
    return name_hash(st->buf + st->spans[2 * s], (uint64_t)st->spans[2 * s + 1]);
}

/* Insert string s (hash h) of row r: 1, or 0 when an equal string is already
 * there, or -1 after MAX_PROBES. */
CB_INLINE int table_add(table *t, const strings *st, int64_t s, uint64_t h, int64_t r) {
    uint64_t i = h & t->mask;
    for (int probes = 0; t->slot[i] >= 0; i = (i + 1) & t->mask) {
        if (same(st, t->slot[i], st, s)) return 0;
        if (++probes > MAX_PROBES) return -1;
    }
    t->slot[i] = s;
    t->row[i] = r;
    return 1;
}

/* The row holding a string equal to string s (hash h) of `q`; -1 when there
 * is none or after MAX_PROBES. */
CB_INLINE int64_t table_find(const table *t, const strings *st, const strings *q, int64_t s, uint64_t h) {
    uint64_t i = h & t->mask;
    for (int probes = 0; t->slot[i] >= 0 && probes <= MAX_PROBES; i = (i + 1) & t->mask, probes++)
        if (same(st, t->slot[i], q, s)) return t->row[i];
    return -1;
}

CB_INLINE int known(const int32_t *codes, uint32_t n, int32_t v) {
    for (uint32_t i = 0; i < n; i++)
        if (codes[i] == v) return (int)i;
    return -1;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define QNN_UNDEFINED 0x7fffffff
#define QNN_STATIC 4
/* a node's tensor params and its TensorData are matched pairwise: more than
 * this many goes to the Python path (a dict there) instead of going quadratic */
#define MAX_NODE_TENSORS 64

/* Where the checks find each field's cells: its column, and each table's row width. */
typedef struct {
    int64_t cols[CTXBIN_DLC_NCOLS];
    uint64_t width[CTXBIN_DLC_NTABLES];
} layout;

/* The layout of ctxbin/formats/dlc.py's schemas (_NATIVE_COLS; widths 1 + 2 x fields): when a
 * call's is this one, the checks run with it as constants (no load and no multiply per cell). */
static const layout DLC_LAYOUT = {
    {1, 3, 5, 7, 9, 1, 3, 5, 7, 3, 1, 3, 5, 7, 9, 11, 1, 3, 5, 1, 3, 9, 3, 5, 7, 1, 3, 5, 1},
    {11, 9, 9, 11, 9, 5, 13, 7, 5, 3}};

typedef struct {
    const v4_in *in;
    /* copies of in's tables and columns, one load away (read per tensor, param and field) */
    const int64_t *rows[CTXBIN_DLC_NTABLES];
    layout lay;
    strings model, params;
    /* index into in->dtypes of each code 0xCCBB (class CC < 8, bits BB), -1: unknown;
     * codes are looked up per tensor and per scalar: a scan of the list was most of tensor_ok's time
     * (a table of check_graphs: the checks copy the checker) */
    int8_t (*dtype_at)[256];
    int dtype_undefined; /* index of QNN_UNDEFINED, -1: not listed */
    uint64_t kinds_below_64; /* bit c: tensor type c is known (types are looked up per tensor) */
} checker;

static int dtype_index(const checker *k, int32_t code) {
    uint32_t c = (uint32_t)code;
    return c < 0x800 ? k->dtype_at[c >> 8][c & 0xff] : c == QNN_UNDEFINED ? k->dtype_undefined : -1;
}

CB_INLINE const int64_t *row(const checker *k, const layout *L, int table, int64_t r) {
    return k->rows[table] + (uint64_t)r * L->width[table];
}
CB_INLINE int64_t col(const layout *L, int c) { return L->cols[c]; }

/* An LPBQ table (Blockwise row b) that fits the tensor's shape, as _V4Quant._blockwise
 * checks it: 8-bit block-scale storage, per-channel scales along axis, blocks
 * splitting dimension axis - 1, one scale per channel and block. */
CB_INLINE int blockwise_ok(const checker *k, const layout *L, const int64_t *t, int64_t b) {
    const int64_t *bx = row(k, L, CTXBIN_DLC_BLOCKWISE, b);
    int32_t axis = (int32_t)bx[col(L, CTXBIN_DLC_BX_AXIS)], blocks = (int32_t)bx[col(L, CTXBIN_DLC_BX_BLOCKS)];
    int64_t chans = bx[col(L, CTXBIN_DLC_BX_CHANNELS) + 1], bits = bx[col(L, CTXBIN_DLC_BX_BITS)];
    int64_t at = t[col(L, CTXBIN_DLC_T_DIMS)], rank = t[col(L, CTXBIN_DLC_T_DIMS) + 1];
    if ((int32_t)bx[col(L, CTXBIN_DLC_BX_STORAGE)] != 0 || bits < 1 || bits > 8) return 0;
    if (axis < 1 || axis >= rank || chans <= 0 || blocks <= 0) return 0;
    uint32_t channels = rd32(k->in->model + at + 4 * axis), split = rd32(k->in->model + at + 4 * (axis - 1));
    if ((int64_t)channels != chans || split == 0 || split % (uint32_t)blocks) return 0;
    return bx[col(L, CTXBIN_DLC_BX_SCALES) + 1] == chans * blocks;
}
/* A tensor row's type and data type known, its encoding one ctxbin decodes
 * with the tables it needs: *di = its data type's index, *q = its Quant row
 * (-1: none). 0 when anything is off. */
CB_INLINE int tensor_ok(const checker *k, const layout *L, const int64_t *t, int *di, int64_t *q) {
    const v4_in *in = k->in;
    int32_t dtype = t[col(L, CTXBIN_DLC_T_DTYPE) + 1] ? (int32_t)t[col(L, CTXBIN_DLC_T_DTYPE)] : QNN_UNDEFINED;
    uint32_t kind = (uint32_t)t[col(L, CTXBIN_DLC_T_KIND)];
    if (kind < 64 ? !(k->kinds_below_64 >> kind & 1) : known(in->kinds, in->nkinds, (int32_t)kind) < 0) return 0;
    if ((*di = dtype_index(k, dtype)) < 0) return 0;
    *q = t[col(L, CTXBIN_DLC_T_QUANT)];
    if (*q < 0) return 1;
    const int64_t *qr = row(k, L, CTXBIN_DLC_QUANT, *q);
    int32_t code = (int32_t)qr[col(L, CTXBIN_DLC_Q_ENCODING)];
    if (code == QNN_UNDEFINED) { /* no encoding: nothing to decode later */
        *q = -1;
        return 1;
    }
    if (code == 0 || code == 2) return qr[col(L, CTXBIN_DLC_Q_SO)] >= 0; /* scale/offset, any bitwidth */
    if (code == 5) {                                                      /* LPBQ */
        int64_t b = qr[col(L, CTXBIN_DLC_Q_BLOCKWISE)];
        return b >= 0 && blockwise_ok(k, L, t, b);
    }
    if (code != 1 && code != 3) return 0;                                 /* per-axis, any bitwidth */
    int64_t ax = qr[col(L, CTXBIN_DLC_Q_AXIS)];
    return ax >= 0 && row(k, L, CTXBIN_DLC_AXIS, ax)[col(L, CTXBIN_DLC_AX_CHANNELS) + 1] > 0;
}

/* Static tensor t (data type index di) with its data in TensorData row d:
 * present, in bounds, exactly the size its shape and data type need.
 * w = (inline?, start, size, TensorData position). */
CB_INLINE int data_ok(const checker *k, const layout *L, const int64_t *t, int di, int64_t d, int64_t *w) {
    const v4_in *in = k->in;
    const int64_t *td = row(k, L, CTXBIN_DLC_TDATA, d);
    int64_t ref = td[col(L, CTXBIN_DLC_TD_REF)];
    uint64_t size;
    w[3] = td[0];
    if (ref >= 0) {
        if (in->params_bin_size < 0) return 0;
        const int64_t *b = row(k, L, CTXBIN_DLC_BINREF, ref);
        uint64_t off = (uint64_t)b[col(L, CTXBIN_DLC_REF_OFFSET)], total = (uint64_t)in->params_bin_size;
        size = (uint64_t)b[col(L, CTXBIN_DLC_REF_SIZE)];
        if (off > total || size > total - off) return 0;
        w[0] = 0;
        w[1] = (int64_t)off;
    } else {
        int64_t vs = td[col(L, CTXBIN_DLC_TD_BYTES)];
        if (vs < 0) return 0;
        size = (uint64_t)td[col(L, CTXBIN_DLC_TD_BYTES) + 1];
        w[0] = 1;
        w[1] = (int64_t)in->params_start + vs;
    }
    w[2] = (int64_t)size;
    /* exactly the bytes its shape and data type need (no overflow: stop past size) */
    uint64_t need = in->itemsizes[di];
    int64_t at = t[col(L, CTXBIN_DLC_T_DIMS)], count = t[col(L, CTXBIN_DLC_T_DIMS) + 1];
    for (int64_t i = 0; i < count && need <= size; i++) {
        uint64_t dim = rd32(in->model + at + 4 * i);
        /* need < 2^32 (and dim < 2^32): the product cannot wrap, no division needed */
        need = need >> 32 == 0 ? need * dim : dim && need > size / dim ? size + 1 : need * dim;
    }
    return need != 0 && need == size;
}

/* One graph's tensor table (rows lo..lo+n) against its TensorData rows (td_lo..td_lo+ntd). */
CB_INLINE int graph_tensors(checker *k, const layout *L, const int64_t *g, int64_t *static_of, int64_t *quant,
                            int64_t *where, uint64_t *ns) {
    uint64_t lo = (uint64_t)g[0], n = (uint64_t)g[1], td_lo = (uint64_t)g[2], ntd = (uint64_t)g[3];
    int st = CTXBIN_ERANGE;
    table names = {0}, data = {0};
    if (table_init(&names, n) || table_init(&data, ntd)) {
        st = CTXBIN_ENOMEM;
        goto done;
    }
    for (uint64_t d = td_lo; d < td_lo + ntd; d++) {
        int64_t s = row(k, L, CTXBIN_DLC_TDATA, (int64_t)d)[col(L, CTXBIN_DLC_TD_NAME)];
        /* unnamed, a duplicate, or collisions */
        if (s < 0 || table_add(&data, &k->params, s, string_hash(&k->params, s), (int64_t)d) != 1) goto done;
    }
    for (uint64_t r = lo; r < lo + n; r++) {
        const int64_t *t = row(k, L, CTXBIN_DLC_TENSOR, (int64_t)r);
        int64_t s = t[col(L, CTXBIN_DLC_T_NAME)];
        int di;
        if (s < 0) goto done;
        const uint64_t h = string_hash(&k->model, s); /* for both tables */
        if (table_add(&names, &k->model, s, h, (int64_t)r) != 1) goto done; /* a duplicate, or collisions */
        if (!tensor_ok(k, L, t, &di, &quant[r])) goto done;
        static_of[r] = -1;
        if ((int32_t)t[col(L, CTXBIN_DLC_T_KIND)] != QNN_STATIC) continue; /* only STATIC tensors hold data */
        int64_t d = ntd ? table_find(&data, &k->params, &k->model, s, h) : -1;
        if (d < 0 || !data_ok(k, L, t, di, d, where + 4 * *ns)) goto done; /* no TensorData, or bad data */
        static_of[r] = (int64_t)(*ns)++;
    }
    st = CTXBIN_OK;
done:
    table_free(&names);
    table_free(&data);
    return st;
}

/* A scalar param's value is one _v4_scalar gives back without error: a string,
 * a bool, an integer that fits its data type, a float32 or float64. */
CB_INLINE int scalar_ok(const checker *k, const layout *L, const int64_t *s) {
    const v4_in *in = k->in;
    if (!s[col(L, CTXBIN_DLC_S_DTYPE) + 1]) return 0; /* no data type: UNDEFINED */
    uint32_t code = (uint32_t)s[col(L, CTXBIN_DLC_S_DTYPE)], cls = code >> 8;
    if (code == 0x0608 || code == 0x0508 || code == 0x0232 || code == 0x0264) return 1;
    int di = dtype_index(k, (int32_t)code);
    if (di < 0 || cls == 2 || in->itemsizes[di] == 0) return 0;
    if (in->itemsizes[di] >= 8) return cls <= 4; /* int64, uint64: every value fits */
    unsigned bits = 8u * in->itemsizes[di];
    int64_t raw = s[col(L, CTXBIN_DLC_S_INT)];
    if (cls == 0 || cls == 3) return raw >= -((int64_t)1 << (bits - 1)) && raw < ((int64_t)1 << (bits - 1));
    if (cls == 1 || cls == 4) return (uint64_t)raw < ((uint64_t)1 << bits);
    return 0;
}

CB_INLINE int same_name(const strings *a, int64_t i, const strings *b, int64_t j) {
    return i >= 0 && j >= 0 && same(a, i, b, j);
}

/* One graph's nodes (rows node_lo..+nnodes): every param's kind and value,
 * tensor params checked like static tensors, their data in the node's
 * NodeParameters (rows np_lo..+nnp), whose TensorData names are unique. */
CB_INLINE int graph_nodes(checker *k, const layout *L, const int64_t *g) {
    uint64_t node_lo = (uint64_t)g[4], nnodes = (uint64_t)g[5], np_lo = (uint64_t)g[6], nnp = (uint64_t)g[7];
    for (uint64_t p = np_lo; p < np_lo + nnp; p++) {
        const int64_t *npr = row(k, L, CTXBIN_DLC_NODEPARAMS, (int64_t)p);
        int64_t tf = npr[col(L, CTXBIN_DLC_NP_TENSORS)], tc = npr[col(L, CTXBIN_DLC_NP_TENSORS) + 1];
        if (tc > MAX_NODE_TENSORS) return CTXBIN_ERANGE;
        for (int64_t a = 0; a < tc; a++) {
            int64_t sa = row(k, L, CTXBIN_DLC_TDATA, tf + a)[col(L, CTXBIN_DLC_TD_NAME)];
            if (sa < 0) return CTXBIN_ERANGE;
            for (int64_t b = 0; b < a; b++) /* names of rows before a were checked named */
                if (same(&k->params, sa, &k->params, row(k, L, CTXBIN_DLC_TDATA, tf + b)[col(L, CTXBIN_DLC_TD_NAME)]))
                    return CTXBIN_ERANGE;
        }
    }
    int64_t w[4];
    for (uint64_t i = 0; i < nnodes; i++) {
        const int64_t *node = row(k, L, CTXBIN_DLC_NODE, (int64_t)(node_lo + i));
        int64_t pf = node[col(L, CTXBIN_DLC_N_PARAMS)], pc = node[col(L, CTXBIN_DLC_N_PARAMS) + 1];
        for (int64_t j = pf; j < pf + pc; j++) {
            const int64_t *p = row(k, L, CTXBIN_DLC_PARAM, j);
            int32_t kind = (int32_t)p[col(L, CTXBIN_DLC_P_KIND)];
            if (kind == 0) {
                int64_t v = p[col(L, CTXBIN_DLC_P_VALUE)];
                if (v < 0 || !scalar_ok(k, L, row(k, L, CTXBIN_DLC_SCALAR, v))) return CTXBIN_ERANGE;
                continue;
            }
            int64_t tr = p[col(L, CTXBIN_DLC_P_TENSOR)], q;
            if (kind != 1 || tr < 0 || i >= nnp) return CTXBIN_ERANGE;
            const int64_t *t = row(k, L, CTXBIN_DLC_TENSOR, tr);
            int di;
            if (!tensor_ok(k, L, t, &di, &q) || (int32_t)t[col(L, CTXBIN_DLC_T_KIND)] != QNN_STATIC) return CTXBIN_ERANGE;
            const int64_t *npr = row(k, L, CTXBIN_DLC_NODEPARAMS, (int64_t)(np_lo + i));
            int64_t tf = npr[col(L, CTXBIN_DLC_NP_TENSORS)], tc = npr[col(L, CTXBIN_DLC_NP_TENSORS) + 1], d = -1;
            int64_t s = t[col(L, CTXBIN_DLC_T_NAME)];
            for (int64_t a = 0; a < tc && d < 0; a++)
                if (same_name(&k->model, s, &k->params, row(k, L, CTXBIN_DLC_TDATA, tf + a)[col(L, CTXBIN_DLC_TD_NAME)]))
                    d = tf + a;
            if (d < 0 || !data_ok(k, L, t, di, d, w)) return CTXBIN_ERANGE;
        }
    }
    return CTXBIN_OK;
}

/* The graph checks twice over: with the call's layout, and with DLC_LAYOUT's
 * constants; each on a copy of the checker, a local that the stores to the
 * results cannot touch (through kp its tables were loaded again after each). */
#define GRAPH_CHECKS(name, L)                                                                                   \
    CB_NOINLINE static int name##_tensors(checker *kp, const int64_t *g, int64_t *static_of, int64_t *quant,    \
                                          int64_t *where, uint64_t *ns) {                                       \
        checker c = *kp, *k = &c;                                                                               \
        return graph_tensors(k, L, g, static_of, quant, where, ns);                                             \
    }                                                                                                           \
    CB_NOINLINE static int name##_nodes(checker *kp, const int64_t *g) {                                        \
        checker c = *kp, *k = &c;                                                                               \
        return graph_nodes(k, L, g);                                                                            \
    }
GRAPH_CHECKS(any, &k->lay)
GRAPH_CHECKS(dlc, &DLC_LAYOUT)
#undef GRAPH_CHECKS

/* [lo, lo + n) is a range of rows of table (the walk made them; a bad caller is refused) */
static int rows_in(const v4_in *in, int table, int64_t lo, int64_t n) {
    return lo >= 0 && n >= 0 && (uint64_t)lo <= in->nrows[table] && (uint64_t)n <= in->nrows[table] - (uint64_t)lo;
}

/* Every graph's checks: per graph g status[g] is 1 when every check passed,
 * with, per tensor row r of it, static_of[r] (index among all graphs'
 * statics, or -1) and quant[r] (its Quant row, -1 for none), and per static
 * where = (inline?, start, size, TensorData position); 0 when a check fails
 * or the input is unusual. *nstatics = the statics placed. CTXBIN_OK unless
 * out of memory. */
static int check_graphs(const v4_in *in, int64_t *static_of, int64_t *quant, int64_t *where,
                        uint8_t *status, uint64_t *nstatics) {
    if (in->ndtypes > 127) return CTXBIN_EINVAL;
    uint64_t compared = 0;
    checker k = {in, {0}, {{0}, {0}}, {in->model, in->model_spans, &compared},
                 {in->params, in->params_spans, &compared}, NULL, -1, 0};
    memcpy(k.rows, in->rows, sizeof k.rows);
    memcpy(k.lay.width, in->width, sizeof k.lay.width);
    memcpy(k.lay.cols, in->cols, sizeof k.lay.cols);
    const int dlc = memcmp(&k.lay, &DLC_LAYOUT, sizeof k.lay) == 0;
    for (uint32_t i = 0; i < in->nkinds; i++)
        if ((uint32_t)in->kinds[i] < 64) k.kinds_below_64 |= (uint64_t)1 << in->kinds[i];
    int8_t dtype_at[8][256];
    k.dtype_at = dtype_at;
    memset(dtype_at, 0xff, sizeof dtype_at);
    for (uint32_t i = 0; i < in->ndtypes; i++) {
        uint32_t c = (uint32_t)in->dtypes[i];
        if (c < 0x800) dtype_at[c >> 8][c & 0xff] = (int8_t)i;
        else if (c == QNN_UNDEFINED) k.dtype_undefined = (int)i;
    }
    uint64_t ns = 0;
    for (uint64_t gi = 0; gi < in->ngraphs; gi++) {
        const int64_t *g = in->graphs + 8 * gi;
        if (!rows_in(in, CTXBIN_DLC_TENSOR, g[0], g[1]) || !rows_in(in, CTXBIN_DLC_TDATA, g[2], g[3]) ||
            !rows_in(in, CTXBIN_DLC_NODE, g[4], g[5]) || !rows_in(in, CTXBIN_DLC_NODEPARAMS, g[6], g[7]))
            return CTXBIN_EINVAL;
        uint64_t ns0 = ns;
        int st = (dlc ? dlc_tensors : any_tensors)(&k, g, static_of, quant, where, &ns);
        if (st == CTXBIN_OK) st = (dlc ? dlc_nodes : any_nodes)(&k, g);
        if (st == CTXBIN_ENOMEM) return st;
        if (compared > MAX_COMPARED) st = CTXBIN_ERANGE; /* a match may have been missed */
        status[gi] = st == CTXBIN_OK;
        if (st != CTXBIN_OK) ns = ns0; /* this graph's statics are the caller's to place */
    }
    *nstatics = ns;
    return CTXBIN_OK;
}

/* ------------------------------------------------------------------ open in one call */

/* Nonzero when one of the 64 bytes at p is not ASCII (SSE2 is part of x86-64; 8 words elsewhere). */
CB_INLINE uint64_t high64(const uint8_t *p) {
#if defined(__x86_64__) || defined(_M_X64)
    const __m128i *q = (const __m128i *)(const void *)p;
    __m128i v = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(q), _mm_loadu_si128(q + 1)),
                             _mm_or_si128(_mm_loadu_si128(q + 2), _mm_loadu_si128(q + 3)));
    return (unsigned)_mm_movemask_epi8(v);
#else
    uint64_t v[8];
    memcpy(v, p, 64);
    return (v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7]) & 0x8080808080808080ull;
#endif
}

/* The n bytes at p are all ASCII: with no test until the end (a DLC's names
 * nearly always are); with SSE2, from the first 16-byte boundary on, 128
 * bytes a step, each 16 of them or-ed in with one instruction (aligned: a load
 * of its own was most of the step). */
static int all_ascii(const uint8_t *p, uint64_t n) {
    uint64_t i = 0, high = 0;
#if defined(__x86_64__) || defined(_M_X64)
    for (; i < n && ((uintptr_t)(p + i) & 15); i++) high |= p[i] & 0x80;
    __m128i acc = _mm_setzero_si128();
    for (; n - i >= 128; i += 128) {
        const __m128i *q = (const __m128i *)(const void *)(p + i);
        acc = _mm_or_si128(acc, _mm_or_si128(_mm_or_si128(_mm_or_si128(q[0], q[1]), _mm_or_si128(q[2], q[3])),
                                             _mm_or_si128(_mm_or_si128(q[4], q[5]), _mm_or_si128(q[6], q[7]))));
    }
    for (; n - i >= 16; i += 16) acc = _mm_or_si128(acc, *(const __m128i *)(const void *)(p + i));
    high = (unsigned)_mm_movemask_epi8(acc);
#else
    for (; n - i >= 64; i += 64) high |= high64(p + i);
#endif
    for (; i < n; i++) high |= p[i] & 0x80;
    return high == 0;
}

/* Valid UTF-8 as Python's strict decoder takes it (no overlongs, surrogates or
 * code points past U+10FFFF); ASCII, nearly all of a DLC's names, 64 bytes a step. */
static int utf8_ok(const uint8_t *p, uint64_t n) {
    if (all_ascii(p, n)) return 1;
    uint64_t i = 0;
    while (i < n) {
        while (n - i >= 128 && !(high64(p + i) | high64(p + i + 64))) i += 128; /* one test per 128 bytes */
        if (n - i >= 64 && !high64(p + i)) {
            i += 64;
            continue;
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint64_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!len || n - i < len) return 0;
        uint8_t lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c == 0xe0) lo = 0xa0;
        else if (c == 0xed) hi = 0x9f;
        else if (c == 0xf0) lo = 0x90;
        else if (c == 0xf4) hi = 0x8f;
        if (p[i + 1] < lo || p[i + 1] > hi) return 0;
        for (uint64_t j = 2; j < len; j++)
            if ((p[i + j] & 0xc0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

static void walk_release(ctxbin_dlc_walk *w) {
    free(w->cells);
    free(w->spans);
    free(w->pool);
    w->cells = w->spans = NULL;
    w->pool = NULL;
}

/* The walk, its arrays handed over; its strings valid UTF-8 (else CTXBIN_ERANGE). */
static int walk_one(ctxbin_dlc_walk *w) {
    ctxbin_fb_error err;
    ctxbin_fb_result *r;
    if (!w->nrows || w->graphs >= w->ntypes) return CTXBIN_EINVAL;
    int st = ctxbin_fb_walk(w->buf, w->size, w->fields, w->type_start, w->ntypes, &w->budget, &r, &err);
    if (st) return st;
    ctxbin_fb_sizes(r, w->nrows, &w->nstr, &w->npool);
    ctxbin_fb_detach(r, &w->cells, &w->spans, &w->pool);
    ctxbin_fb_free(r);
    return utf8_ok(w->pool, w->npool) ? CTXBIN_OK : CTXBIN_ERANGE;
}

static uint64_t walk_width(const ctxbin_dlc_walk *w, uint32_t t) {
    return 1 + 2 * (uint64_t)(w->type_start[t + 1] - w->type_start[t]);
}

/* the cells of type t of a walk (the types' cells lie one after the other) */
static const int64_t *walk_rows(const ctxbin_dlc_walk *w, uint32_t t) {
    const int64_t *at = w->cells;
    for (uint32_t u = 0; u < t; u++) at += w->nrows[u] * walk_width(w, u);
    return at;
}

/* A walk's graph tables (Graph or GraphParameters rows) as the matching reads them. */
typedef struct {
    const int64_t *rows;
    uint64_t n, width;
    const int64_t *cols; /* the cell columns of their name, tensors and nodes */
    strings names;
} graph_tables;

static graph_tables graph_tables_of(const ctxbin_dlc_walk *w, uint64_t *compared) {
    graph_tables t = {walk_rows(w, w->graphs), w->nrows[w->graphs], walk_width(w, w->graphs), w->graph_cols,
                      {w->buf, w->spans, compared}};
    return t;
}

/* Graph tables g of a and h of b have equal, present names. */
static int same_graph(const graph_tables *a, uint64_t g, const graph_tables *b, uint64_t h) {
    return same_name(&a->names, a->rows[g * a->width + a->cols[0]], &b->names, b->rows[h * b->width + b->cols[0]]);
}

/* Graph table g's (first, count) of its TABLES field `field` (1: tensors, 2: nodes; first -1 when absent) */
static void range_of(const graph_tables *t, uint64_t g, int field, int64_t *out) {
    const int64_t *cell = t->rows + g * t->width + t->cols[field];
    out[0] = cell[0] < 0 ? 0 : cell[0];
    out[1] = cell[1];
}

/* the graph matching below compares every pair of names: past this many pairs, the Python path */
#define MAX_GRAPH_PAIRS 4096

/* Row ranges of every model graph and its GraphParameters, then of the
 * GraphParameters no model graph names (their TensorData names are checked
 * too): 8 bounds each into `graphs` (room for both walks' graph counts).
 * 0 when a name is missing or repeated, or a model graph has no parameters. */
static int match_graphs(const ctxbin_dlc_walk *mw, const ctxbin_dlc_walk *pw, int64_t *graphs, uint64_t *n) {
    uint64_t compared = 0;
    const graph_tables m = graph_tables_of(mw, &compared), p = graph_tables_of(pw, &compared);
    if (m.n * p.n > MAX_GRAPH_PAIRS || m.n * m.n > MAX_GRAPH_PAIRS || p.n * p.n > MAX_GRAPH_PAIRS) return 0;
    uint8_t *used = calloc(p.n ? p.n : 1, 1);
    if (!used) return 0;
    int ok = 1;
    for (uint64_t a = 0; a < p.n && ok; a++)
        for (uint64_t b = 0; b < a && ok; b++) ok = !same_graph(&p, a, &p, b);
    for (uint64_t g = 0; g < m.n && ok; g++) {
        for (uint64_t h = 0; h < g && ok; h++) ok = !same_graph(&m, g, &m, h);
        uint64_t h = 0;
        while (h < p.n && !same_graph(&m, g, &p, h)) h++;
        if (!ok || h == p.n) {
            ok = 0;
            break;
        }
        used[h] = 1;
        int64_t *out = graphs + 8 * g;
        range_of(&m, g, 1, out);
        range_of(&p, h, 1, out + 2);
        range_of(&m, g, 2, out + 4);
        range_of(&p, h, 2, out + 6);
    }
    *n = m.n;
    for (uint64_t h = 0; h < p.n && ok; h++) {
        if (used[h]) continue;
        int64_t *out = graphs + 8 * (*n)++;
        memset(out, 0, 8 * sizeof *out);
        range_of(&p, h, 1, out + 2);
    }
    free(used);
    return ok && compared <= MAX_COMPARED;
}

/* A graph's ranges (g) and its input and output counts into out[0..10), the
 * rows (within the graph) of its inputs, then of its outputs, from io on. */
static int64_t *graph_io(const v4_in *in, const int64_t *g, int64_t *out, int64_t *io) {
    const int64_t *t = in->rows[CTXBIN_DLC_TENSOR] + (uint64_t)g[0] * in->width[CTXBIN_DLC_TENSOR];
    const int64_t kind = in->cols[CTXBIN_DLC_T_KIND];
    memcpy(out, g, 8 * sizeof *out);
    out[8] = out[9] = 0;
    for (int which = 0; which < 2; which++) /* QNN tensor types APP_WRITE (0), APP_READ (1) */
        for (int64_t r = 0; r < g[1]; r++)
            if (t[(uint64_t)r * in->width[CTXBIN_DLC_TENSOR] + kind] == which) {
                *io++ = r;
                out[8 + which]++;
            }
    return io;
}

int ctxbin_dlc_v4_open(ctxbin_dlc_v4_open_args *a) {
    if (!a || !a->model.buf || !a->params.buf) return CTXBIN_EINVAL;
    a->checked = NULL;
    a->ngraphs = a->nstatics = 0;
    int st = walk_one(&a->model);
    if (!st) st = walk_one(&a->params);
    ctxbin_dlc_walk *m = &a->model, *p = &a->params;
    int64_t *graphs = NULL, *checked = NULL;
    uint8_t *status = NULL;
    uint64_t ng = st ? 0 : m->nrows[m->graphs], n = 0;
    if (!st) {
        graphs = malloc(8 * (ng + p->nrows[p->graphs] + 1) * sizeof *graphs);
        status = malloc(ng + p->nrows[p->graphs] + 1);
        if (!graphs || !status) st = CTXBIN_ENOMEM;
        else if (!match_graphs(m, p, graphs, &n)) st = CTXBIN_ERANGE;
    }
    if (!st) {
        v4_in in = {m->buf, m->spans, p->buf, p->spans, a->params_start, {0}, {0}, {0}, a->params_bin_size,
                    a->cols, a->kinds, a->nkinds, a->dtypes, a->itemsizes, a->ndtypes, graphs, n};
        for (int t = 0; t < CTXBIN_DLC_NTABLES; t++) {
            const ctxbin_dlc_walk *w = t < CTXBIN_DLC_TDATA ? m : p;
            if (a->tables[t] >= w->ntypes) {
                st = CTXBIN_EINVAL;
                break;
            }
            in.rows[t] = walk_rows(w, a->tables[t]);
            in.nrows[t] = w->nrows[a->tables[t]];
            in.width[t] = walk_width(w, a->tables[t]);
        }
        uint64_t nt = in.nrows[CTXBIN_DLC_TENSOR];
        /* per graph its ranges and input and output counts, then static_of, quant,
         * room for the input and output rows and for a `where` per tensor */
        if (!st && !(checked = malloc((10 * ng + 7 * nt + 1) * sizeof *checked))) st = CTXBIN_ENOMEM;
        if (!st) {
            int64_t *static_of = checked + 10 * ng, *quant = static_of + nt, *io = quant + nt, *where = io + nt;
            /* -1 in the rows of tensor params: the graphs' checks, which all passed
             * when these are kept, fill static_of and quant in their own rows */
            uint64_t filled = 0;
            for (uint64_t g = 0; g < ng && graphs[8 * g] == (int64_t)filled && (uint64_t)graphs[8 * g + 1] <= nt - filled; g++)
                filled += (uint64_t)graphs[8 * g + 1];
            memset(static_of + filled, 0xff, (nt - filled) * sizeof *static_of);
            memset(quant + filled, 0xff, (nt - filled) * sizeof *quant);
            st = check_graphs(&in, static_of, quant, where, status, &a->nstatics);
            for (uint64_t g = 0; !st && g < n; g++)
                if (!status[g]) st = CTXBIN_ERANGE;
            for (uint64_t g = 0; !st && g < ng; g++) io = graph_io(&in, graphs + 8 * g, checked + 10 * g, io);
        }
    }
    free(graphs);
    free(status);
    if (st) {
        free(checked);
        walk_release(m);
        walk_release(p);
        a->nstatics = 0;
        return st;
    }
    a->checked = checked;
    a->ngraphs = ng;
    return CTXBIN_OK;
}

/* One entry as its ZIP stores it: its CRC-32 when recorded, the 8-byte DLC
 * prefix (D5 0A, major version 4) and the flatbuffer identifier after it. */
static int entry_ok(const uint8_t *p, uint64_t n, uint32_t crc, const char *ident) {
    if (!p || n < 16 || p[0] != 0xD5 || p[1] != 0x0A || (p[2] | p[3] << 8) != 4 || memcmp(p + 12, ident, 4) != 0)
        return 0;
    return crc == 0 || ctxbin_crc32(0, p, n) == crc;
}

/* Hand walk w's arrays to the caller's slots. */
static void hand_over(ctxbin_dlc_walk *w, int64_t **cells, int64_t **spans, uint8_t **pool, int64_t *io, int nstr_at) {
    *cells = w->cells, *spans = w->spans, *pool = w->pool;
    io[nstr_at] = (int64_t)w->nstr, io[nstr_at + 1] = (int64_t)w->npool;
}

int ctxbin_dlc_v4_read(const ctxbin_dlc_v4_open_args *tmpl, const uint8_t *model, uint64_t model_size,
                       uint32_t model_crc, const uint8_t *params, uint64_t params_size, uint32_t params_crc,
                       int64_t *io, ctxbin_dlc_v4_opened *out) {
    if (!tmpl || !io || !out) return CTXBIN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!entry_ok(model, model_size, model_crc, "NETD") || !entry_ok(params, params_size, params_crc, "NETP"))
        return CTXBIN_ERANGE;
    ctxbin_dlc_v4_open_args a = *tmpl;
    /* nrows go straight into io (uint64_t and int64_t may alias each other) */
    a.model.nrows = (uint64_t *)(io + CTXBIN_DLC_IO_NROWS);
    a.params.nrows = a.model.nrows + a.model.ntypes;
    a.model.buf = model + 8, a.model.size = model_size - 8, a.model.budget = io[CTXBIN_DLC_IO_BUDGET];
    a.params.buf = params + 8, a.params.size = params_size - 8, a.params.budget = io[CTXBIN_DLC_IO_PARAMS_BUDGET];
    a.params_start = 8;
    a.params_bin_size = io[CTXBIN_DLC_IO_BIN_SIZE];
    int st = ctxbin_dlc_v4_open(&a);
    if (st != CTXBIN_OK) return st;
    hand_over(&a.model, &out->model_cells, &out->model_spans, &out->model_pool, io, CTXBIN_DLC_IO_NSTR);
    hand_over(&a.params, &out->params_cells, &out->params_spans, &out->params_pool, io, CTXBIN_DLC_IO_PARAMS_NSTR);
    out->checked = a.checked;
    io[CTXBIN_DLC_IO_BUDGET] = a.model.budget, io[CTXBIN_DLC_IO_PARAMS_BUDGET] = a.params.budget;
    io[CTXBIN_DLC_IO_MINOR] = model[4] | model[5] << 8;
    io[CTXBIN_DLC_IO_NGRAPHS] = (int64_t)a.ngraphs, io[CTXBIN_DLC_IO_NSTATICS] = (int64_t)a.nstatics;
    /* per graph its ranges and counts, then its name's span: all the caller's open needs */
    const int64_t *rows = walk_rows(&a.model, a.model.graphs);
    uint64_t width = walk_width(&a.model, a.model.graphs);
    out->graphs = malloc(96 * (a.ngraphs ? a.ngraphs : 1));
    if (!out->graphs) {
        ctxbin_dlc_v4_release(out);
        return CTXBIN_ENOMEM;
    }
    for (uint64_t g = 0; g < a.ngraphs; g++) {
        int64_t *to = out->graphs + 12 * g, k = rows[g * width + (uint64_t)a.model.graph_cols[0]];
        memcpy(to, a.checked + 10 * g, 80);
        to[10] = k < 0 ? 0 : a.model.spans[2 * k];
        to[11] = k < 0 ? 0 : a.model.spans[2 * k + 1];
    }
    return CTXBIN_OK;
}

void ctxbin_dlc_v4_release(ctxbin_dlc_v4_opened *o) {
    if (!o) return;
    int64_t **arrays[] = {&o->model_cells, &o->model_spans, &o->params_cells, &o->params_spans, &o->checked, &o->graphs};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(*arrays[i]), *arrays[i] = NULL;
    free(o->model_pool), free(o->params_pool);
    o->model_pool = o->params_pool = NULL;
}
