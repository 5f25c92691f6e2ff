/* ctxbin C core: XXH3-64 hashing, CRC-32, batch hashing over a thread pool,
 * the dedup plan (which tensors may share storage), and a bounds-checked
 * flatbuffer walk.
 *
 * Plain C: no Python objects, no global mutable state. Functions that can fail
 * return a status code (CTXBIN_OK on success); ctxbin_strerror() names it.
 *
 * The block between CFFI-BEGIN and CFFI-END is read verbatim by native/build.py
 * as the cffi cdef, so it must stay free of preprocessor directives.
 */
#ifndef CTXBIN_CORE_H
#define CTXBIN_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CFFI-BEGIN */
enum {
    CTXBIN_OK = 0,
    CTXBIN_EINVAL = 1,      /* a NULL pointer or impossible argument */
    CTXBIN_ERANGE = 2,      /* an (offset, length) pair outside its buffer */
    CTXBIN_ENOMEM = 3,      /* allocation failed */
    CTXBIN_EUNSUPPORTED = 4, /* the requested SIMD path is not available here */
    CTXBIN_EMORE = 5         /* the caller gave too little of a file: the output says from where it needs it */
};

/* Accumulate-loop implementations of XXH3 for inputs over 240 bytes. */
enum {
    CTXBIN_IMPL_AUTO = 0,
    CTXBIN_IMPL_SCALAR = 1,
    CTXBIN_IMPL_SSE2 = 2,
    CTXBIN_IMPL_AVX2 = 3,
    CTXBIN_IMPL_NEON = 4,
    CTXBIN_IMPL_AVX512 = 5
};

const char *ctxbin_strerror(int status);

/* Bit i is set when implementation i (CTXBIN_IMPL_*) can run on this CPU. */
unsigned ctxbin_impls_available(void);

/* Name of the implementation CTXBIN_IMPL_AUTO picks on this CPU. */
const char *ctxbin_impl_name(int impl);

/* XXH3-64 of len bytes with a 64-bit seed (bit-exact with the reference). */
uint64_t ctxbin_xxh3_64(const void *data, size_t len, uint64_t seed);

/* Same, forcing one implementation (for tests and benchmarks). */
int ctxbin_xxh3_64_impl(const void *data, size_t len, uint64_t seed, int impl,
                        uint64_t *out);

/* out[i] = XXH3-64(base + offsets[i], lengths[i]) for i < n, on up to
 * nthreads threads (<= 0 means 1). Every range is checked against base_len
 * before it is read; on CTXBIN_ERANGE out may be partly written. */
int ctxbin_hash_many(const void *base, uint64_t base_len,
                     const uint64_t *offsets, const uint64_t *lengths,
                     size_t n, uint64_t seed, uint64_t *out, int nthreads);

/* out[i] = XXH3-64(ptrs[i], lengths[i]): tensors from different buffers. */
int ctxbin_hash_ptrs(const void *const *ptrs, const uint64_t *lengths,
                     size_t n, uint64_t seed, uint64_t *out, int nthreads);

/* Most tensors a single ctxbin_hash_groups group may hold. */
enum { CTXBIN_GROUP_MAX = 64 };

/* Hashes and sharing plan of tensors in one pass over their bytes. The
 * tensors ptrs[i], lengths[i] (i < n) come in groups of candidates for
 * sharing: group g is tensors members[groups[g]] .. members[groups[g + 1] - 1]
 * (1..CTXBIN_GROUP_MAX tensors of equal length, each tensor in at most one
 * group; groups[0] = 0, groups[ngroups] = nmembers). For each member i:
 * hashes[i] = XXH3-64 of its bytes; canon[i] = the first member of its group
 * (group order) with the same bytes (compared, never assumed from the hash).
 * release (may be NULL): release[i] != 0 says tensor i lies in a shared file
 * mapping whose pages may be dropped once read (they come back from the
 * file). Groups run on up to nthreads threads: put groups of 1 MiB or more
 * first (largest first), then the small ones in memory order. */
int ctxbin_hash_groups(size_t n, const void *const *ptrs, const uint64_t *lengths,
                       const uint64_t *members, size_t nmembers,
                       const uint64_t *groups, size_t ngroups, const uint8_t *release,
                       uint64_t seed, uint64_t *hashes, int64_t *canon, int nthreads);

/* The pass of ctxbin_hash_groups for a linker that assumes every member
 * equals the first of its group, with the first members written out: each
 * group's first member i is written (pwrite) to the file fd at offset
 * out_offsets[i] as it is compared and hashed, and hashes[i] is set for every
 * member. The first member found to differ from its group's first stops the
 * pass with *differs = 1; a failed write stops it with *err = its errno. On
 * a stop, hashes and the file are incomplete. CTXBIN_EUNSUPPORTED where the
 * platform has no pwrite. */
int ctxbin_hash_groups_write(size_t n, const void *const *ptrs, const uint64_t *lengths,
                             const uint64_t *members, size_t nmembers,
                             const uint64_t *groups, size_t ngroups, const uint8_t *release,
                             int fd, const uint64_t *out_offsets, uint64_t *hashes,
                             int *differs, int *err, int nthreads);

/* canon[i] = the first j <= i (input order) whose key, length, hash and bytes
 * all equal those of tensor i; i itself when there is none. Bytes are always
 * compared: an equal hash alone never makes two tensors the same. */
int ctxbin_dedup_plan(size_t n, const int64_t *keys, const uint64_t *hashes,
                      const void *const *ptrs, const uint64_t *lengths,
                      int64_t *canon);

/* CRC-32 implementations (all give the same values). */
enum {
    CTXBIN_CRC_AUTO = 0,
    CTXBIN_CRC_TABLE = 1,  /* portable: slicing by 8 */
    CTXBIN_CRC_PCLMUL = 2, /* x86_64 carry-less multiply folding */
    CTXBIN_CRC_ARMV8 = 3   /* aarch64 CRC32 instructions */
};

/* Bit i is set when CRC implementation i (CTXBIN_CRC_*) can run on this CPU. */
unsigned ctxbin_crc32_impls_available(void);

/* Name of a CRC implementation (CTXBIN_CRC_AUTO: the one picked here). */
const char *ctxbin_crc32_impl_name(int impl);

/* CRC-32 of ZIP/zlib (reflected 0xEDB88320) of len bytes continuing from crc:
 * equal to zlib's crc32(crc, data, len). */
uint32_t ctxbin_crc32(uint32_t crc, const void *data, size_t len);

/* Same, forcing one implementation (for tests and benchmarks). */
int ctxbin_crc32_impl(uint32_t crc, const void *data, size_t len, int impl, uint32_t *out);

/* CRC-32 of A followed by B from crc1 = CRC-32(A), crc2 = CRC-32(B) and
 * len2 = the length of B in bytes (as zlib's crc32_combine64). */
uint32_t ctxbin_crc32_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/* hashes[i] = XXH3-64(ptrs[i], lengths[i]) with seed 0 and crcs[i] =
 * CRC-32 of the same bytes, in one pass over each buffer. release (may be
 * NULL) as in ctxbin_hash_groups: release[i] != 0 lets the pages of buffer i
 * be dropped behind the read position. hashes may be NULL: CRC-32 alone.
 * Up to nthreads threads. */
int ctxbin_hash_crc_ptrs(const void *const *ptrs, const uint64_t *lengths, size_t n,
                         const uint8_t *release, uint64_t *hashes, uint32_t *crcs, int nthreads);
/* Flatbuffer schema walk (flatbuf.c): every table of an untrusted flatbuffer
 * reachable along a schema, bounds-checked, decoded into columns in one call.
 * A schema is ntypes table types; type t has the fields
 * fields[type_start[t]] .. fields[type_start[t + 1] - 1]; type 0 is the root
 * table (at the u32 offset in bytes 0-3); a child type is always greater than
 * its parent's. Each row of type t is 1 + 2 * nfields int64 cells: the table's
 * position, then per field (a, b):
 *   SCALAR  (width 1/2/4/8 bytes)  a = raw little-endian bits, b = 1 if present
 *   STRING                         a = string index or -1
 *   VECTOR  (of width-byte items)  a = position of the first item or -1, b = count
 *   STRINGS (vector of strings)    a = first string index, b = count
 *   TABLE   (of type child)        a = row in child or -1
 *   TABLES  (vector of child)      a = first row in child, b = count
 * Work is charged against *budget (32 per table, 4 + bytes per string or
 * vector; *budget is left decreased by it); running out is an error. Malformed input returns CTXBIN_ERANGE with
 * *err saying what and where (positions relative to buf). */
enum {
    CTXBIN_FB_SCALAR = 0,
    CTXBIN_FB_STRING = 1,
    CTXBIN_FB_VECTOR = 2,
    CTXBIN_FB_STRINGS = 3,
    CTXBIN_FB_TABLE = 4,
    CTXBIN_FB_TABLES = 5
};

/* ctxbin_fb_error.code */
enum {
    CTXBIN_FB_RANGE = 1,  /* value bytes at `at` run past the end */
    CTXBIN_FB_VTABLE = 2, /* vtable at `at` has the bad size value */
    CTXBIN_FB_FIELD = 3,  /* field at table offset value outside the value2-byte table at `at` */
    CTXBIN_FB_NUL = 4,    /* value-byte string not NUL-terminated at `at` */
    CTXBIN_FB_BUDGET = 5, /* more work than the budget allows, at `at` */
    CTXBIN_FB_VTABLE_AT = 6 /* the table at `at` points (by value) to a vtable outside the buffer */
};

typedef struct {
    uint16_t index; /* field index in the vtable */
    uint8_t kind;   /* CTXBIN_FB_* */
    uint8_t width;  /* SCALAR / VECTOR item size in bytes */
    uint16_t child; /* TABLE / TABLES: the child type */
} ctxbin_fb_field;

typedef struct {
    int code;      /* CTXBIN_FB_RANGE ... */
    uint32_t type; /* the table type, */
    int64_t row;   /* its row (for a table being added: the row it would get), */
    int32_t field; /* the field (index into the type's fields), -1 for the table itself */
    int64_t at;
    int64_t value;
    int64_t value2;
} ctxbin_fb_error;

typedef struct ctxbin_fb_result ctxbin_fb_result;

int ctxbin_fb_walk(const uint8_t *buf, uint64_t size, const ctxbin_fb_field *fields,
                   const uint32_t *type_start, uint32_t ntypes, int64_t *budget,
                   ctxbin_fb_result **out, ctxbin_fb_error *err);

/* Sizes of a walk's result: nrows[t] rows of each type t (ntypes entries),
 * *nstr strings, *npool pool bytes. */
void ctxbin_fb_sizes(const ctxbin_fb_result *r, uint64_t *nrows, uint64_t *nstr, uint64_t *npool);

/* Hand a walk's arrays to the caller, without a copy (sizes from
 * ctxbin_fb_sizes): cells the cells of every type, one type after the other
 * (nrows[t] x (1 + 2 * nfields) int64 each), spans the (position, length) of
 * every string, pool their bytes in order, each followed by a NUL. Each is
 * the caller's to release with ctxbin_free; ctxbin_fb_free then frees the rest. */
void ctxbin_fb_detach(ctxbin_fb_result *r, int64_t **cells, int64_t **spans, uint8_t **pool);

void ctxbin_free(void *p);

void ctxbin_fb_free(ctxbin_fb_result *r);
/* DLC v4 open in one call (native/dlc_v4.c): the schema walks of `model`
 * and `model.params` (ctxbin_fb_walk), every string of both valid UTF-8,
 * the graphs matched to their GraphParameters by name, then every open-time
 * check of ctxbin/formats/dlc.py (_V4Tensors, _v4_nodes) on every graph:
 * tensors (names unique, tensor types, data types and encodings known, with
 * the tables they need; every STATIC tensor's TensorData found by name, its
 * model.params.bin range inside params_bin_size or its inline bytes present,
 * exactly the size its shape and data type need), nodes (every param's kind,
 * its scalar a data type its value fits, its tensor static and checked like
 * the graph's, its TensorData found in the node's NodeParameters).
 * CTXBIN_OK only when all of it passes, with the walks' arrays handed over
 * (as ctxbin_fb_detach does) and `checked` = per model graph its Tensor,
 * TensorData, Node and NodeParameters row ranges (first, count each) and its
 * input and output counts, then per Tensor row static_of (index among all
 * statics, -1: none) and quant (its Quant row, -1: no encoding), then room of
 * a row per Tensor row holding, graph by graph, the rows (within the graph)
 * of its inputs, then of its outputs, then per static (inline?, start, size,
 * TensorData position): the caller owns every array (ctxbin_free).
 * CTXBIN_ERANGE (nothing handed over) when anything fails or is unusual:
 * the caller's reference path then decides and names the error (a failure
 * may only mean "take the slow path": an unnamed tensor, colliding names,
 * very many tensor params on one node, ...). CTXBIN_ENOMEM, CTXBIN_EINVAL. */
enum { /* the tables of ctxbin_dlc_v4_open_args.tables */
    CTXBIN_DLC_NODE, CTXBIN_DLC_PARAM, CTXBIN_DLC_SCALAR, CTXBIN_DLC_TENSOR, CTXBIN_DLC_QUANT, CTXBIN_DLC_AXIS,
    CTXBIN_DLC_BLOCKWISE, CTXBIN_DLC_TDATA, CTXBIN_DLC_BINREF, CTXBIN_DLC_NODEPARAMS, CTXBIN_DLC_NTABLES
};
enum { /* indices into ctxbin_dlc_v4_open_args.cols: the cell column of each field's `a` cell */
    CTXBIN_DLC_T_NAME, CTXBIN_DLC_T_KIND, CTXBIN_DLC_T_DIMS, CTXBIN_DLC_T_QUANT, CTXBIN_DLC_T_DTYPE,
    CTXBIN_DLC_Q_ENCODING, CTXBIN_DLC_Q_SO, CTXBIN_DLC_Q_AXIS, CTXBIN_DLC_Q_BLOCKWISE, CTXBIN_DLC_AX_CHANNELS,
    CTXBIN_DLC_BX_AXIS, CTXBIN_DLC_BX_CHANNELS, CTXBIN_DLC_BX_BLOCKS, CTXBIN_DLC_BX_STORAGE, CTXBIN_DLC_BX_BITS,
    CTXBIN_DLC_BX_SCALES,
    CTXBIN_DLC_TD_NAME, CTXBIN_DLC_TD_BYTES, CTXBIN_DLC_TD_REF, CTXBIN_DLC_REF_OFFSET, CTXBIN_DLC_REF_SIZE,
    CTXBIN_DLC_N_PARAMS, CTXBIN_DLC_P_KIND, CTXBIN_DLC_P_VALUE, CTXBIN_DLC_P_TENSOR,
    CTXBIN_DLC_S_DTYPE, CTXBIN_DLC_S_INT, CTXBIN_DLC_S_FLOAT, CTXBIN_DLC_NP_TENSORS, CTXBIN_DLC_NCOLS
};

typedef struct {
    const uint8_t *buf;        /* the flatbuffer (positions are relative to it) */
    uint64_t size;
    const ctxbin_fb_field *fields; /* its schema, as ctxbin_fb_walk takes it */
    const uint32_t *type_start;
    uint32_t ntypes;
    int64_t budget;            /* in: the walk's budget; out: what is left of it */
    uint32_t graphs;           /* the type of the graph tables (Graph, GraphParameters) */
    int64_t graph_cols[3];     /* the cell columns of their name, tensors and nodes fields */
    uint64_t *nrows;           /* out (ntypes entries, caller's array): rows of each type */
    int64_t *cells;            /* out: every type's cells, as ctxbin_fb_detach hands them over */
    int64_t *spans;            /* out: (position, length) of every string */
    uint8_t *pool;             /* out: their bytes, each followed by a NUL */
    uint64_t nstr, npool;      /* out */
} ctxbin_dlc_walk;

typedef struct {
    ctxbin_dlc_walk model, params;
    uint64_t params_start;       /* where the params flatbuffer starts in its entry */
    int64_t params_bin_size;     /* -1: the archive has no model.params.bin */
    uint32_t tables[CTXBIN_DLC_NTABLES]; /* each checked table's type in its walk (model: NODE..BLOCKWISE) */
    const int64_t *cols;         /* CTXBIN_DLC_NCOLS cell columns */
    const int32_t *kinds;        /* known tensor types */
    uint32_t nkinds;
    const int32_t *dtypes;       /* known data types and their item sizes (0: cannot hold data) */
    const uint8_t *itemsizes;
    uint32_t ndtypes;
    int64_t *checked;            /* out */
    uint64_t ngraphs, nstatics;  /* out: model graphs, statics placed */
} ctxbin_dlc_v4_open_args;

int ctxbin_dlc_v4_open(ctxbin_dlc_v4_open_args *a);
/* What ctxbin_dlc_v4_read hands over: the open's arrays (as ctxbin_dlc_v4_open
 * leaves them in its args) and `graphs`: per model graph the first 10 values
 * of `checked` for it, then the (position, length) of its name in the model
 * flatbuffer ((0, 0) when it has none). The caller takes each array it wants
 * to keep (it then frees it with ctxbin_free, and sets the pointer here to
 * NULL); ctxbin_dlc_v4_release frees those left. */
typedef struct {
    int64_t *model_cells, *model_spans, *params_cells, *params_spans, *checked, *graphs;
    uint8_t *model_pool, *params_pool;
} ctxbin_dlc_v4_opened;

enum { /* ctxbin_dlc_v4_read's io: in [BUDGET, PARAMS_BUDGET, BIN_SIZE]; out all of it */
    CTXBIN_DLC_IO_BUDGET, CTXBIN_DLC_IO_PARAMS_BUDGET, CTXBIN_DLC_IO_BIN_SIZE, CTXBIN_DLC_IO_MINOR,
    CTXBIN_DLC_IO_NGRAPHS, CTXBIN_DLC_IO_NSTATICS, CTXBIN_DLC_IO_NSTR, CTXBIN_DLC_IO_NPOOL, CTXBIN_DLC_IO_PARAMS_NSTR,
    CTXBIN_DLC_IO_PARAMS_NPOOL, CTXBIN_DLC_IO_NROWS /* then the model walk's nrows, then the params walk's */
};

/* ctxbin_dlc_v4_open of a DLC's `model` and `model.params` entries as its ZIP
 * stores them (each with its recorded CRC-32, 0: none), with a copy of the
 * constant args in tmpl: each entry's CRC, its 8-byte prefix (D5 0A, major
 * version 4) and its flatbuffer identifier (NETD, NETP) are checked first
 * (CTXBIN_ERANGE when one fails). io holds CTXBIN_DLC_IO_NROWS + both
 * schemas' type counts int64: in, the walks' budgets and the size of
 * model.params.bin (-1: none); out (CTXBIN_OK), the budgets left, the model's
 * minor version, the open's counts and both walks' nrows. out gets the
 * arrays (all NULL unless CTXBIN_OK). */
int ctxbin_dlc_v4_read(const ctxbin_dlc_v4_open_args *tmpl, const uint8_t *model, uint64_t model_size,
                       uint32_t model_crc, const uint8_t *params, uint64_t params_size, uint32_t params_crc,
                       int64_t *io, ctxbin_dlc_v4_opened *out);
void ctxbin_dlc_v4_release(ctxbin_dlc_v4_opened *o);
/* ZIP (native/zipscan.c): the central directory scan of ctxbin/ziparchive.py
 * (ZipArchive._parse) for ordinary archives: no ZIP64, ASCII names. It reads
 * a size-byte archive from two parts the caller read: head holds its bytes
 * [0, head_len) (may be empty), tail its last tail_len bytes (the whole
 * archive when tail_len == size). out holds 3 + 9 * cap int64: the entry
 * count, where the central directory starts and where it ends (set whenever
 * the end record was read); then, on CTXBIN_OK, 9 per entry: where its name
 * starts and ends (relative to the central directory), method, flags, CRC-32,
 * compressed size, size, local header offset, data offset. CTXBIN_EMORE when
 * a record it must read (the end record's search range, the central
 * directory, a local header) is in neither part: out[1] is then the file
 * offset from which the tail must start (after every central record passed
 * its checks, when only local headers were missing). CTXBIN_EINVAL when cap
 * is smaller than the count; CTXBIN_ERANGE when any check fails or the
 * archive is unusual (the Python parser then decides). Duplicate names are
 * not checked here. The limits are those of ZipLimits, as scalars (no struct
 * to allocate per call). */
int ctxbin_zip_scan(const uint8_t *head, uint64_t head_len, const uint8_t *tail, uint64_t tail_len,
                    uint64_t size, uint64_t max_entries, uint64_t max_inflated_size, uint64_t ratio_floor,
                    double max_ratio, int64_t *out, uint64_t cap);
/* ZIP (native/zipscan.c): ZipArchive.open's reads and scan of a file in
 * one call, for the files that pass the scan. It opens path read-only and
 * reads its first min(size, head) bytes, then its tail from where the first
 * entry's data ends (a DLC's weights; from its last tail_guess bytes when
 * that is not past head or leaves over tail_max), then once more from where
 * ctxbin_zip_scan asks, and scans them. On CTXBIN_OK: fd is the open file (the
 * caller closes it), size its size, tail (ctxbin_free) its bytes from
 * tail_at to the end, and out (3 + 9 * cap int64) what ctxbin_zip_scan gave.
 * Any other status (a system call failed; an empty file, or not a regular
 * file; a tail over tail_max; the file changed while it was read; any scan
 * status but CTXBIN_OK) leaves nothing open or allocated: the caller then
 * opens the file its own way, which decides and names any error. Where
 * there is no pread (Windows), CTXBIN_EUNSUPPORTED. */
typedef struct {
    uint64_t head, tail_guess, tail_max;                   /* in: how much to read */
    uint64_t max_entries, max_inflated_size, ratio_floor;  /* in: ZipLimits */
    double max_ratio;
    int fd;                                                /* out */
    uint64_t size, tail_at;
    uint8_t *tail;
} ctxbin_zip_file;
int ctxbin_zip_open(const char *path, ctxbin_zip_file *f, int64_t *out, uint64_t cap);
/* CFFI-END */

#ifdef __cplusplus
}
#endif

#endif /* CTXBIN_CORE_H */
