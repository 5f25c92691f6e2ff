/* DLC v4 open-time checks of one graph's tensor table against its
 * model.params TensorData, after the schema walks of ctxbin/flatbuf.py.
 *
 * The numpy code in ctxbin/formats/dlc.py (_V4Tensors) makes the same checks
 * and is the reference: this only says whether they all pass (and, when they
 * do, gives its results); when one fails the caller runs the numpy checks,
 * which raise the error naming the tensor and the byte offset. So the two can
 * never disagree on a message. Anything unusual (an unnamed tensor, a
 * zero-element static tensor, ...) is also left to the numpy checks, which
 * may accept it: a failure here only means "take the slow path". The
 * hypothesis tests check that whatever passes here passes there with the
 * same results.
 */
#include <stdlib.h>
#include <string.h>

#include "ctxbin_core.h"

typedef struct {
    const uint8_t *buf;
    const int64_t *spans; /* (position, length) per string of the walk */
} strings;

/* A table-slot hash of a name, 8 bytes a step (names run to dozens of bytes:
 * a byte-at-a-time hash was most of this file's time). Only its spread matters. */
static uint64_t name_hash(const uint8_t *p, uint64_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, v;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    v = 0;
    memcpy(&v, p, (size_t)n);
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

static int same(const strings *a, int64_t i, const strings *b, int64_t j) {
    int64_t n = a->spans[2 * i + 1];
    return n == b->spans[2 * j + 1] && memcmp(a->buf + a->spans[2 * i], b->buf + b->spans[2 * j], (size_t)n) == 0;
}

/* The hash is not keyed, so a file could be made of colliding names: a probe
 * run longer than this gives up (the caller's Python path, whose dict hashing
 * is randomized, takes over) instead of going quadratic. */
#define MAX_PROBES 64

/* Insert string s of row r: 1, or 0 when an equal string is already there,
 * or -1 after MAX_PROBES. */
static int table_add(table *t, const strings *st, int64_t s, int64_t r) {
    uint64_t i = name_hash(st->buf + st->spans[2 * s], (uint64_t)st->spans[2 * s + 1]) & t->mask;
    for (int probes = 0; t->slot[i] >= 0; i = (i + 1) & t->mask) {
        if (same(st, t->slot[i], st, s)) return 0;
        if (++probes > MAX_PROBES) return -1;
    }
    t->slot[i] = s;
    t->row[i] = r;
    return 1;
}

/* The row holding a string equal to string s of `q`; -1 when there is none
 * or after MAX_PROBES. */
static int64_t table_find(const table *t, const strings *st, const strings *q, int64_t s) {
    uint64_t i = name_hash(q->buf + q->spans[2 * s], (uint64_t)q->spans[2 * s + 1]) & t->mask;
    for (int probes = 0; t->slot[i] >= 0 && probes <= MAX_PROBES; i = (i + 1) & t->mask, probes++)
        if (same(st, t->slot[i], q, s)) return t->row[i];
    return -1;
}

static int known(const int32_t *codes, uint32_t n, int32_t v) {
    for (uint32_t i = 0; i < n; i++)
        if (codes[i] == v) return (int)i;
    return -1;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int ctxbin_dlc_v4_tensors(const ctxbin_dlc_v4_in *in, int64_t *static_of, int64_t *quant, int64_t *where,
                          uint64_t *nstatic) {
    if (!in || !static_of || !quant || !where || !nstatic) return CTXBIN_EINVAL;
    const int64_t *c = in->cols;
    strings model = {in->model, in->model_spans}, params = {in->params, in->params_spans};
    uint64_t n = in->ntensors, ns = 0;
    int st = CTXBIN_ERANGE;
    table names = {0}, data = {0};
    if (table_init(&names, n) || table_init(&data, in->ntdata)) {
        st = CTXBIN_ENOMEM;
        goto done;
    }
    for (uint64_t d = 0; d < in->ntdata; d++) {
        int64_t s = in->tdata[d * in->tdata_width + c[CTXBIN_DLC_TD_NAME]];
        if (s < 0 || table_add(&data, &params, s, (int64_t)d) != 1) goto done; /* unnamed, a duplicate, or collisions */
    }
    for (uint64_t r = 0; r < n; r++) {
        const int64_t *t = in->tensors + r * in->tensor_width;
        int64_t s = t[c[CTXBIN_DLC_T_NAME]];
        if (s < 0 || table_add(&names, &model, s, (int64_t)r) != 1) goto done; /* unnamed, a duplicate, or collisions */
        int32_t kind = (int32_t)t[c[CTXBIN_DLC_T_KIND]];
        int32_t dtype = t[c[CTXBIN_DLC_T_DTYPE] + 1] ? (int32_t)t[c[CTXBIN_DLC_T_DTYPE]] : 0x7fffffff;
        if (known(in->kinds, in->nkinds, kind) < 0) goto done;
        int di = known(in->dtypes, in->ndtypes, dtype);
        if (di < 0) goto done;
        int64_t q = t[c[CTXBIN_DLC_T_QUANT]];
        if (q >= 0) {
            int32_t code = (int32_t)in->quants[q * in->quant_width + c[CTXBIN_DLC_Q_ENCODING]];
            if (code == 0x7fffffff) q = -1; /* no encoding: nothing to decode later */
            else if (code != 0 && code != 1) goto done;
        }
        quant[r] = q;
        static_of[r] = -1;
        if (kind != 4) continue; /* only STATIC tensors hold data */
        int64_t d = in->ntdata ? table_find(&data, &params, &model, s) : -1;
        if (d < 0) goto done; /* no TensorData */
        const int64_t *td = in->tdata + (uint64_t)d * in->tdata_width;
        int64_t *w = where + 4 * ns, ref = td[c[CTXBIN_DLC_TD_REF]];
        uint64_t size;
        w[3] = td[0];
        if (ref >= 0) {
            if (in->params_bin_size < 0) goto done;
            const int64_t *b = in->binrefs + ref * in->binref_width;
            uint64_t off = (uint64_t)b[c[CTXBIN_DLC_REF_OFFSET]], total = (uint64_t)in->params_bin_size;
            size = (uint64_t)b[c[CTXBIN_DLC_REF_SIZE]];
            if (off > total || size > total - off) goto done;
            w[0] = 0;
            w[1] = (int64_t)off;
        } else {
            int64_t vs = td[c[CTXBIN_DLC_TD_BYTES]];
            if (vs < 0) goto done;
            size = (uint64_t)td[c[CTXBIN_DLC_TD_BYTES] + 1];
            w[0] = 1;
            w[1] = (int64_t)in->params_start + vs;
        }
        w[2] = (int64_t)size;
        /* exactly the bytes its shape and data type need (no overflow: stop past size) */
        uint64_t need = in->itemsizes[di];
        int64_t at = t[c[CTXBIN_DLC_T_DIMS]], count = t[c[CTXBIN_DLC_T_DIMS] + 1];
        for (int64_t k = 0; k < count && need <= size; k++) {
            uint64_t dim = rd32(in->model + at + 4 * k);
            need = dim && need > size / dim ? size + 1 : need * dim;
        }
        if (need == 0 || need != size) goto done;
        static_of[r] = (int64_t)ns++;
    }
    *nstatic = ns;
    st = CTXBIN_OK;
done:
    table_free(&names);
    table_free(&data);
    return st;
}
