"""Read and write ``.ctxbin``, ctxbin's own multi-graph container (spec: docs/FORMAT.md).

Layout: a 64-byte header, a FlatBuffer of metadata (schema ``ctxbin.fbs``,
columnar per-tensor/per-node vectors over one string pool per graph), then a
64-byte-aligned data section holding every unique weight blob once. Reading
maps the file and decodes only the header and metadata; weights become
:class:`~ctxbin.weights.Blob` views of the mapping, checked against their
XXH3-64 on first access.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ChecksumError, FormatError, UnsupportedVersionError
from ..fileio import atomic_write
from ..flatbuf import FlatBuffer, Table
from ..flatbuild import REF, Builder, Layout
from ..hashing import hash_many, xxh3_64
from ..ir import (
    BackendBinary,
    Container,
    DType,
    Graph,
    LazyTable,
    LazyTuple,
    Node,
    QuantEncoding,
    QuantKind,
    Target,
    Tensor,
    TensorKind,
)
from ..weights import Blob, hash_blobs, write_blobs
from .sniff import CTXBIN_MAGIC
from .sniff import ctxbin as sniff

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_SIZE",
    "ALIGNMENT",
    "LIMITS",
    "Limits",
    "sniff",
    "read",
    "write",
    "write_filled",
    "check",
]

MAGIC = CTXBIN_MAGIC
VERSION = (1, 0)
IDENTIFIER = b"CTXB"
ALIGNMENT = 64
#: magic, major, minor, flags, metadata offset/size, data offset/size, metadata hash, header hash
_HEADER = struct.Struct("<8sHHIQQQQQQ")
HEADER_SIZE = _HEADER.size
_REQUIRED_FLAGS = 0xFFFF  # bits a reader must understand; none are defined in 1.x
_KNOWN_REQUIRED_FLAGS = 0


@dataclass(frozen=True)
class Limits:
    """Bounds every reader enforces and every writer respects (docs/FORMAT.md §4)."""

    metadata_size: int = 256 << 20
    graphs: int = 1 << 16
    blobs: int = 1 << 24
    rows: int = 1 << 24  # tensor rows, nodes and attributes per graph
    rank: int = 64
    name: int = 4096  # characters in graph, tensor and node names
    string: int = 16 << 20
    metadata_entries: int = 1 << 16


LIMITS = Limits()

# vtable slots, in the order of ctxbin.fbs
_T_BACKEND, _T_SOC, _T_ARCH, _T_SDK = range(4)
(_Q_KIND, _Q_SCALES, _Q_OFFSETS, _Q_AXIS, _Q_BITWIDTH, _Q_SYM, _Q_BLOCK,
 _Q_BLOCK_SCALES, _Q_BLOCK_BW) = range(9)
_A_DTYPE, _A_SHAPE, _A_DATA = range(3)
_BB_BACKEND, _BB_BLOB, _BB_GRAPH = range(3)
(_G_NAME, _G_STRINGS, _G_TABLE_SIZE, _G_T_NAME, _G_T_DTYPE, _G_T_KIND, _G_T_RANK,
 _G_DIMS, _G_T_BLOB, _G_T_ENC, _G_ENCODINGS, _G_INPUTS, _G_OUTPUTS, _G_N_NAME,
 _G_N_OP, _G_N_NS, _G_N_DOMAIN, _G_N_IN_COUNT, _G_N_OUT_COUNT, _G_N_INPUTS,
 _G_N_OUTPUTS, _G_N_ATTR_COUNT, _G_A_NAME, _G_A_KIND, _G_A_REF, _G_A_LEN,
 _G_A_INTS, _G_A_FLOATS, _G_A_BYTES, _G_A_ARRAYS, _G_OPSET_DOMAIN,
 _G_OPSET_VERSION, _G_META_KEY, _G_META_VALUE, _G_BINARY) = range(35)
(_C_META_KEYS, _C_META_VALUES, _C_TARGET, _C_BLOB_OFFSETS, _C_BLOB_SIZES,
 _C_BLOB_HASHES, _C_GRAPHS) = range(7)

# attribute kinds
_INT, _FLOAT, _STR, _BYTES, _INTS, _FLOATS, _STRS, _ARRAY = range(1, 9)
_SCALAR_ATTRS = frozenset([_INT, _FLOAT, _STR, _BYTES, _ARRAY])
#: indexed by kind: does the attribute hold one entry of its pool (True) or a range (False)
_IS_SCALAR = np.array([k in _SCALAR_ATTRS for k in range(_ARRAY + 1)])
#: numpy types an array attribute may have (little-endian type strings)
_ARRAY_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16"]
)
_DTYPES = {int(d): d for d in DType}
_KINDS = {int(k): k for k in TensorKind}
_QKINDS = {int(k): k for k in QuantKind}
_ITEMSIZE = {int(d): (0 if d in (DType.STRING, DType.UNDEFINED) else d.itemsize) for d in DType}
_NUMPY = {int(d): d.numpy for d in DType if _ITEMSIZE[int(d)]}
_INT64 = (-(1 << 63), (1 << 63) - 1)
#: bytes hashed between page releases when a whole file is checked
_RELEASE_BATCH = 32 << 20


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


def _hash(data: Any) -> int:
    return xxh3_64(data)


# --------------------------------------------------------------------------- writing


class _Pool(dict):
    """A graph's string pool: each distinct string once, indexed by first use.
    ``pool[s]`` adds ``s`` when it is new, so looking up a known string stays
    a plain dict lookup."""

    def __init__(self, where: str, path: str) -> None:
        super().__init__()
        self.where = where
        self.path = path

    def __missing__(self, s: str) -> int:
        if not isinstance(s, str):
            raise FormatError(f"expected a string, got {type(s).__name__}", path=self.path, obj=self.where)
        if "\0" in s or len(s) > LIMITS.string:
            raise FormatError(f"string {s[:40]!r}... contains NUL or is too long", path=self.path, obj=self.where)
        i = self[s] = len(self)
        return i

    def add(self, s: str) -> int:
        return self[s]

    def encode(self) -> bytes:
        return "".join(s + "\0" for s in self).encode("utf-8")


class _Writer:
    """Builds the metadata FlatBuffer of one container (deterministically)."""

    def __init__(self, container: Container, path: str) -> None:
        self.c = container
        self.path = path
        self.b = Builder(force_defaults=True)
        self.layouts: dict[tuple[tuple[int, str], ...], Layout] = {}
        self.blobs: list[Blob] = []
        self.blob_ids: dict[int, int] = {}

    def fail(self, obj: str, msg: str) -> FormatError:
        return FormatError(f"cannot be written as .ctxbin: {msg}", path=self.path, obj=obj)

    def blob(self, blob: Blob) -> int:
        i = self.blob_ids.get(id(blob))
        if i is None:
            i = self.blob_ids[id(blob)] = len(self.blobs)
            self.blobs.append(blob)
        return i

    # -- flatbuffer helpers
    def vec(self, values: Any, dtype: str) -> int:
        return self.b.vector(np.asarray(values, dtype=dtype).reshape(-1))

    def offsets(self, offs: Sequence[int]) -> int:
        return self.b.refs(offs)

    def table(self, refs: Mapping[int, int], scalars: Iterable[tuple[int, str, Any]] = ()) -> int:
        """A table of references, then scalars given as (slot, struct format, value)."""
        scalars = list(scalars)
        spec = (*((slot, REF) for slot in refs), *((slot, fmt) for slot, fmt, _ in scalars))
        layout = self.layouts.get(spec)
        if layout is None:
            layout = self.layouts[spec] = Layout(*spec)
        return self.b.table(layout, [*refs.values(), *(v for _, _, v in scalars)])

    # -- objects
    def build(self, hashed: bool = True) -> bytes:
        """The metadata; ``hashed=False`` leaves the blob hashes zero (for
        write_filled, which is given them later) instead of hashing blobs."""
        c = self.c
        if len(c.graphs) > LIMITS.graphs:
            raise self.fail("container", f"{len(c.graphs)} graphs (limit {LIMITS.graphs})")
        names = [g.name for g in c.graphs]
        if len(set(names)) != len(names):
            raise self.fail("container", "graph names are not unique")
        graphs = [self.graph(g) for g in c.graphs]
        if len(self.blobs) > LIMITS.blobs:
            raise self.fail("container", f"{len(self.blobs)} blobs (limit {LIMITS.blobs})")
        meta = dict(c.metadata)
        if len(meta) > LIMITS.metadata_entries:
            raise self.fail("container metadata", f"{len(meta)} entries")
        for k, v in meta.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise self.fail("container metadata", f"key {k!r}: keys and values must be strings")
        keys = self.offsets([self.b.string(k) for k in meta])
        values = self.offsets([self.b.string(v) for v in meta.values()])
        target = self.target(c.target)
        sizes = [blob.nbytes for blob in self.blobs]
        offsets = _layout(sizes)[0]
        if hashed:
            hash_blobs(self.blobs)
            hashes = [blob.hash for blob in self.blobs]
        else:
            hashes = [0] * len(self.blobs)
        root = self.table({
            _C_META_KEYS: keys,
            _C_META_VALUES: values,
            _C_TARGET: target,
            _C_BLOB_OFFSETS: self.vec(offsets, "<u8"),
            _C_BLOB_SIZES: self.vec(sizes, "<u8"),
            _C_BLOB_HASHES: self.vec(hashes, "<u8"),
            _C_GRAPHS: self.offsets(graphs),
        })
        out = self.b.finish(root, IDENTIFIER)
        if len(out) > LIMITS.metadata_size:
            raise self.fail("metadata", f"{len(out)} bytes (limit {LIMITS.metadata_size})")
        return out

    def target(self, t: Target) -> int:
        backend = self.b.string(t.backend)
        sdk = self.b.string(t.sdk_version)
        scalars = [(s, "q", v) for s, v in ((_T_SOC, t.soc_model), (_T_ARCH, t.htp_arch)) if v is not None]
        return self.table({_T_BACKEND: backend, _T_SDK: sdk}, scalars)

    def encoding(self, e: QuantEncoding, where: str) -> int:
        refs = {
            _Q_SCALES: self.vec(e.scales, "<f8"),
            _Q_OFFSETS: self.vec(e.offsets, "<i8"),
            _Q_BLOCK: self.vec(e.block_size, "<i8"),
            _Q_BLOCK_SCALES: self.vec(e.block_scales, "<i8"),
        }
        scalars = [
            (_Q_KIND, "I", int(e.kind)),
            (_Q_BITWIDTH, "I", int(e.bitwidth)),
            (_Q_SYM, "?", bool(e.is_symmetric)),
            (_Q_BLOCK_BW, "I", int(e.block_scale_bitwidth)),
        ]
        if e.axis is not None:
            scalars.append((_Q_AXIS, "i", int(e.axis)))
        if int(e.kind) not in _QKINDS:
            raise self.fail(where, f"unknown quantization kind {e.kind}")
        return self.table(refs, scalars)

    def graph(self, g: Graph) -> int:
        where = f"graph {g.name!r}"
        if not isinstance(g.name, str) or len(g.name) > LIMITS.name:
            raise self.fail(where, "graph name must be a string of at most 4096 characters")
        pool = _Pool(where, self.path)
        table = list(g.tensors.values())
        rows: list[Tensor] = list(table)
        row_of: dict[str, int] = {}
        for i, t in enumerate(table):
            if t.name in row_of:
                raise self.fail(where, f"tensor name {t.name!r} appears twice")
            row_of[t.name] = i
            pool.add(t.name)
        extra: dict[int, int] = {}

        def io_row(t: Tensor) -> int:
            i = row_of.get(t.name)
            if i is not None and (table[i] is t or table[i] == t):
                return i
            if id(t) not in extra:
                extra[id(t)] = len(rows)
                rows.append(t)
            return extra[id(t)]

        inputs = [io_row(t) for t in g.inputs]
        outputs = [io_row(t) for t in g.outputs]
        if len(rows) > LIMITS.rows or len(g.nodes) > LIMITS.rows:
            raise self.fail(where, f"{len(rows)} tensors / {len(g.nodes)} nodes (limit {LIMITS.rows})")

        t_name, t_dtype, t_kind, t_rank, dims, t_blob, t_enc = [], [], [], [], [], [], []
        enc_index: dict[QuantEncoding, int] = {}
        add = pool.__getitem__  # (known strings: one dict lookup in C)
        for t in rows:
            # (the object's description is only made for an error: most rows never need it)
            if len(t.name) > LIMITS.name:
                raise self.fail(f"{where} tensor {t.name!r}", "name longer than 4096 characters")
            dtype, kind, shape = int(t.dtype), int(t.kind), t.shape
            if dtype not in _DTYPES or kind not in _KINDS:
                raise self.fail(f"{where} tensor {t.name!r}", f"unknown dtype {t.dtype!r} or kind {t.kind!r}")
            if len(shape) > LIMITS.rank:
                raise self.fail(f"{where} tensor {t.name!r}", f"rank {len(shape)} (limit {LIMITS.rank})")
            t_name.append(add(t.name))
            t_dtype.append(dtype)
            t_kind.append(kind)
            t_rank.append(len(shape))
            plain = True  # every dimension a plain non-negative int
            for d in shape:
                if d.__class__ is int and 0 <= d <= _INT64[1]:  # the common case first
                    dims.append(d)
                    continue
                plain = False
                if d is None:
                    dims.append(-1)
                elif isinstance(d, str):
                    dims.append(-2 - add(d))
                elif isinstance(d, (int, np.integer)) and 0 <= d <= _INT64[1]:
                    dims.append(int(d))
                else:
                    raise self.fail(f"{where} tensor {t.name!r}", f"bad dimension {d!r}")
            data = t.data
            if data is not None:
                size = _ITEMSIZE[dtype]
                # plain dimensions are checked here; the rest (and every error) by check_static
                if not (plain and size and math.prod(shape) * size == data.nbytes):
                    self.check_static(t, f"{where} tensor {t.name!r}")
                t_blob.append(self.blob(data))
            else:
                t_blob.append(-1)
            if t.encoding is None:
                t_enc.append(-1)
            else:
                t_enc.append(enc_index.setdefault(t.encoding, len(enc_index)))
        encodings = [self.encoding(e, where) for e in enc_index]

        n_name, n_op, n_ns, n_dom, n_in_c, n_out_c, n_in, n_out, n_attr_c = ([] for _ in range(9))
        attrs = _AttrColumns(self, pool)
        for n in g.nodes:
            if len(n.name) > LIMITS.name:
                raise self.fail(f"{where} node {n.name!r}", "name longer than 4096 characters")
            n_name.append(add(n.name))
            n_op.append(add(n.op_type))
            n_ns.append(add(n.namespace))
            n_dom.append(add(n.domain))
            n_in_c.append(len(n.inputs))
            n_out_c.append(len(n.outputs))
            n_in.extend(map(add, n.inputs))
            n_out.extend(map(add, n.outputs))
            n_attr_c.append(len(n.attrs))
            if n.attrs:
                nw = f"{where} node {n.name!r}"
                for k, v in n.attrs.items():
                    attrs.add(k, v, nw)
        if len(attrs.name) > LIMITS.rows:
            raise self.fail(where, f"{len(attrs.name)} attributes (limit {LIMITS.rows})")
        opsets = dict(g.opsets)
        opset_domain = [pool.add(k) for k in opsets]
        meta = dict(g.metadata)
        meta_key = [pool.add(k) for k in meta]
        meta_value = [pool.add(v) for v in meta.values()]
        binary = None
        if g.binary is not None:
            bb = g.binary
            binary = self.table({
                _BB_BACKEND: self.b.string(bb.backend),
                _BB_GRAPH: self.b.string(bb.graph_name),
            }, [(_BB_BLOB, "I", self.blob(bb.blob))])

        refs = {
            _G_NAME: self.b.string(g.name),
            _G_STRINGS: self.b.byte_vector(pool.encode()),
            _G_T_NAME: self.vec(t_name, "<u4"),
            _G_T_DTYPE: self.vec(t_dtype, "<u4"),
            _G_T_KIND: self.vec(t_kind, "u1"),
            _G_T_RANK: self.vec(t_rank, "u1"),
            _G_DIMS: self.vec(dims, "<i8"),
            _G_T_BLOB: self.vec(t_blob, "<i4"),
            _G_T_ENC: self.vec(t_enc, "<i4"),
            _G_ENCODINGS: self.offsets(encodings),
            _G_INPUTS: self.vec(inputs, "<u4"),
            _G_OUTPUTS: self.vec(outputs, "<u4"),
            _G_N_NAME: self.vec(n_name, "<u4"),
            _G_N_OP: self.vec(n_op, "<u4"),
            _G_N_NS: self.vec(n_ns, "<u4"),
            _G_N_DOMAIN: self.vec(n_dom, "<u4"),
            _G_N_IN_COUNT: self.vec(n_in_c, "<u4"),
            _G_N_OUT_COUNT: self.vec(n_out_c, "<u4"),
            _G_N_INPUTS: self.vec(n_in, "<u4"),
            _G_N_OUTPUTS: self.vec(n_out, "<u4"),
            _G_N_ATTR_COUNT: self.vec(n_attr_c, "<u4"),
            _G_A_NAME: self.vec(attrs.name, "<u4"),
            _G_A_KIND: self.vec(attrs.kind, "u1"),
            _G_A_REF: self.vec(attrs.ref, "<u8"),
            _G_A_LEN: self.vec(attrs.length, "<u4"),
            _G_A_INTS: self.vec(attrs.ints, "<i8"),
            _G_A_FLOATS: self.vec(attrs.floats, "<f8"),
            _G_A_BYTES: self.offsets([
                self.table({0: self.b.byte_vector(bytes(x))}) for x in attrs.bytes_
            ]),
            _G_A_ARRAYS: self.offsets([self.array(a) for a in attrs.arrays]),
            _G_OPSET_DOMAIN: self.vec(opset_domain, "<u4"),
            _G_OPSET_VERSION: self.vec(list(opsets.values()), "<i8"),
            _G_META_KEY: self.vec(meta_key, "<u4"),
            _G_META_VALUE: self.vec(meta_value, "<u4"),
        }
        if binary is not None:
            refs[_G_BINARY] = binary
        return self.table(refs, [(_G_TABLE_SIZE, "I", len(table))])

    def check_static(self, t: Tensor, where: str) -> None:
        if not all(isinstance(d, (int, np.integer)) for d in t.shape):
            raise self.fail(where, f"a weight needs a concrete shape, got {t.shape}")
        try:
            itemsize = DType(t.dtype).itemsize
        except TypeError:
            raise self.fail(where, f"{DType(t.dtype).name} tensors cannot hold data") from None
        need = math.prod(int(d) for d in t.shape) * itemsize
        if need != t.data.nbytes:  # type: ignore[union-attr]
            raise self.fail(where, f"shape {t.shape} needs {need} bytes, its blob has {t.data.nbytes}")  # type: ignore[union-attr]

    def array(self, a: np.ndarray) -> int:
        dtype = self.b.string(a.dtype.str)
        shape = self.vec(a.shape, "<i8")
        data = self.b.byte_vector(np.ascontiguousarray(a).tobytes())
        return self.table({_A_DTYPE: dtype, _A_SHAPE: shape, _A_DATA: data})


class _AttrColumns:
    """The columnar attribute vectors of one graph (docs/FORMAT.md §3.2)."""

    def __init__(self, writer: _Writer, pool: _Pool) -> None:
        self.w = writer
        self.pool = pool
        self.name: list[int] = []
        self.kind: list[int] = []
        self.ref: list[int] = []
        self.length: list[int] = []
        self.ints: list[int] = []
        self.floats: list[float] = []
        self.bytes_: list[bytes] = []
        self.arrays: list[np.ndarray] = []

    def _int(self, v: Any, where: str) -> int:
        v = int(v)
        if not _INT64[0] <= v <= _INT64[1]:
            raise self.w.fail(where, f"integer {v} does not fit in 64 bits")
        return v

    def add(self, name: str, v: Any, node: str) -> None:
        """Attribute ``name`` = ``v`` of the node described by ``node``."""
        self.name.append(self.pool.add(name))
        if v.__class__ is int and _INT64[0] <= v <= _INT64[1]:  # the most common value, fast
            kind, ref, n = _INT, len(self.ints), 1
            self.ints.append(v)
        elif v.__class__ in (tuple, list) and all(x.__class__ is int and _INT64[0] <= x <= _INT64[1] for x in v):
            # plain ints (shapes, pads): no conversion, no description
            kind, ref, n = _INTS, len(self.ints), len(v)
            self.ints.extend(v)
        else:
            kind, ref, n = self._value(v, f"{node} attribute {name!r}")
        self.kind.append(kind)
        self.ref.append(ref)
        self.length.append(n)

    def _value(self, v: Any, where: str) -> tuple[int, int, int]:
        """Store any other value: (kind, ref, length) of its column entry."""
        if isinstance(v, (bool, int, np.integer, np.bool_)):
            self.ints.append(self._int(v, where))
            return _INT, len(self.ints) - 1, 1
        if isinstance(v, (float, np.floating)):
            self.floats.append(float(v))
            return _FLOAT, len(self.floats) - 1, 1
        if isinstance(v, str):
            return _STR, self.pool.add(v), 1
        if isinstance(v, (bytes, bytearray, memoryview)):
            self.bytes_.append(bytes(v))
            return _BYTES, len(self.bytes_) - 1, 1
        if isinstance(v, np.ndarray):
            a = v.astype(v.dtype.newbyteorder("<")) if v.dtype.byteorder == ">" else v
            if a.dtype.str not in _ARRAY_DTYPES:
                raise self.w.fail(where, f"arrays of {a.dtype} cannot be stored")
            self.arrays.append(a)
            return _ARRAY, len(self.arrays) - 1, 1
        if isinstance(v, (tuple, list)):
            if all(isinstance(x, (bool, int, np.integer, np.bool_)) for x in v):
                ref = len(self.ints)
                self.ints.extend(self._int(x, where) for x in v)
                return _INTS, ref, len(v)
            if all(isinstance(x, (int, float, np.integer, np.floating)) for x in v):
                ref = len(self.floats)
                self.floats.extend(float(x) for x in v)
                return _FLOATS, ref, len(v)
            if all(isinstance(x, str) for x in v):
                ref = len(self.ints)
                self.ints.extend(self.pool.add(x) for x in v)
                return _STRS, ref, len(v)
            raise self.w.fail(where, "lists must hold only ints, only numbers or only strings")
        raise self.w.fail(where, f"attribute values of type {type(v).__name__} cannot be stored")


def _layout(sizes: Sequence[int]) -> tuple[list[int], int]:
    """Canonical blob offsets (relative to the data section) and the data size."""
    offsets, end = [], 0
    for size in sizes:
        start = _align(end)
        offsets.append(start)
        end = start + size
    return offsets, end


def write(container: Container, path: "str | os.PathLike[str]", *, durable: bool = True) -> None:
    """Write ``container`` to ``path`` as ``.ctxbin``: deterministic and atomic.

    Blob bytes are streamed one blob at a time from their sources (each source
    blob is verified against its recorded hash, if it has one, before use).
    ``durable=False`` skips the fsyncs: the file still replaces ``path``
    atomically, but may be lost on power failure (for scratch files).
    """
    spath = os.fspath(path)
    w = _Writer(container, spath)
    meta = w.build()
    offsets, data_size = _layout([b.nbytes for b in w.blobs])
    data_offset = _align(HEADER_SIZE + len(meta))
    with atomic_write(spath, fsync=durable) as f:
        f.write(_header(meta, data_offset, data_size))
        f.write(meta)
        f.write(bytes(data_offset - HEADER_SIZE - len(meta)))
        write_blobs(f, w.blobs, offsets)


#: ``fill(fd, blobs, offsets)`` for :func:`write_filled`: writes each blob at
#: its file offset and returns the blobs' XXH3-64, or None to give up.
Fill = Callable[[int, Sequence[Blob], Sequence[int]], "Sequence[int] | None"]


def write_filled(container: Container, path: "str | os.PathLike[str]", fill: Fill, *, durable: bool = True) -> bool:
    """Write ``container`` as :func:`write` does, the blob bytes written by ``fill``.

    For writers that produce the bytes and their hashes in one pass (linking
    compares, hashes and writes each blob while it is in cache). The blobs
    are neither hashed nor read here: the metadata's size does not depend on
    their hashes, so the data section's place is known before ``fill`` runs,
    and the hashes ``fill`` returns go into the metadata after it. ``fill`` gets
    the descriptor of the temporary file (sized to its final length, zero
    filled), the blobs in file order and their absolute offsets. Returns
    False, leaving ``path`` untouched, when ``fill`` returns None; otherwise
    the file is the one :func:`write` would have written with those hashes,
    committed as atomically.
    """
    spath = os.fspath(path)
    w = _Writer(container, spath)
    meta = bytearray(w.build(hashed=False))
    offsets, data_size = _layout([b.nbytes for b in w.blobs])
    data_offset = _align(HEADER_SIZE + len(meta))
    try:
        with atomic_write(spath, fsync=durable) as f:
            fd = f.fileno()
            os.ftruncate(fd, data_offset + data_size)
            hashes = fill(fd, w.blobs, [data_offset + o for o in offsets])
            if hashes is None:
                raise _GaveUp
            values = np.asarray(hashes, "<u8")
            if values.shape != (len(w.blobs),):
                raise ValueError(f"fill returned {values.size} hashes for {len(w.blobs)} blobs")
            at, _ = FlatBuffer(meta).root(IDENTIFIER).vector_span(_C_BLOB_HASHES, 8)  # type: ignore[misc]
            meta[at : at + values.nbytes] = values.tobytes()
            head = memoryview(_header(meta, data_offset, data_size) + meta)
            done = 0
            while done < len(head):
                done += os.pwrite(fd, head[done:], done)
    except _GaveUp:
        return False
    return True


class _GaveUp(Exception):
    """``fill`` returned None: the temporary file is dropped."""


def _header(meta: "bytes | bytearray", data_offset: int, data_size: int) -> bytes:
    head = _HEADER.pack(MAGIC, VERSION[0], VERSION[1], 0, HEADER_SIZE, len(meta),
                        data_offset, data_size, _hash(meta), 0)
    return head[:-8] + struct.pack("<Q", _hash(head[:-8]))


# --------------------------------------------------------------------------- reading


class _Reader:
    """Decodes and validates the metadata of one opened file."""

    def __init__(self, path: str, buf: Any, meta: bytes, base: int) -> None:
        self.path = path
        self.buf = buf
        self.fb = FlatBuffer(meta, path=path, what="metadata", base=base)
        self.base = base
        self.blobs: list[Blob | None] = []

    def err(self, obj: str, msg: str, at: int) -> FormatError:
        return FormatError(msg, path=self.path, obj=obj, offset=at)

    def column(self, t: Table, slot: int, dtype: str, obj: str, n: int | None = None) -> tuple[np.ndarray, int]:
        """A scalar vector and the file offset of its first element; ``n`` = required length."""
        dt = np.dtype(dtype)
        span = t.vector_span(slot, dt.itemsize, obj)
        if span is None:
            arr, at = np.empty(0, dt), self.base + t.pos
        else:
            start, count = span
            self.fb.charge(count * dt.itemsize, obj, start - self.fb.start)  # decoded below
            arr = np.frombuffer(self.fb.buf, dt, count, start)
            at = self.base + start - self.fb.start
        if n is not None and len(arr) != n:
            raise self.err(obj, f"{len(arr)} entries, expected {n}", at)
        return arr, at

    def index_check(self, arr: np.ndarray, at: int, limit: int, obj: str, lo: int = 0) -> None:
        """Every entry of ``arr`` lies in ``[lo, limit)``."""
        # two reductions in the common case; unsigned columns have no lower bound to check
        if arr.size and (int(arr.max()) >= limit or (arr.dtype.kind != "u" or lo > 0) and int(arr.min()) < lo):
            bad = np.flatnonzero((arr < lo) | (arr >= limit))
            if bad.size:
                i = int(bad[0])
                raise self.err(f"{obj}[{i}]", f"index {int(arr[i])} outside [{lo}, {limit})", at + i * arr.itemsize)

    # -- container
    def container(self, version: str, data_offset: int, data_size: int) -> Container:
        root = self.fb.root(IDENTIFIER, "metadata root")
        offs, at = self.column(root, _C_BLOB_OFFSETS, "<u8", "blob index offsets")
        sizes, _ = self.column(root, _C_BLOB_SIZES, "<u8", "blob index sizes", len(offs))
        hashes, _ = self.column(root, _C_BLOB_HASHES, "<u8", "blob index hashes", len(offs))
        nblobs = len(offs)
        if nblobs > LIMITS.blobs:
            raise self.err("blob index", f"{nblobs} blobs (limit {LIMITS.blobs})", at)
        self.check_blob_layout(offs, sizes, data_size, at)
        self.blob_offsets, self.blob_sizes, self.blob_hashes = offs, sizes, hashes
        self.data_offset = data_offset
        self.blobs = [None] * nblobs
        self.verified = np.zeros(nblobs, bool)  # by a batch (blobs made one by one keep their own state)
        self.blob_users = np.zeros(nblobs, np.int64)

        keys = root.strings(_C_META_KEYS, "container metadata keys")
        values = root.strings(_C_META_VALUES, "container metadata values")
        if len(keys) != len(values) or len(keys) > LIMITS.metadata_entries or len(set(keys)) != len(keys):
            raise self.err("container metadata", "keys and values differ in number or keys repeat", root.pos + self.base)
        target = self.target(root.table(_C_TARGET, "target"))

        gtables = root.tables(_C_GRAPHS, "graphs")
        if len(gtables) > LIMITS.graphs:
            raise self.err("graphs", f"{len(gtables)} graphs (limit {LIMITS.graphs})", root.pos + self.base)
        parsed = [_GraphColumns(self, t) for t in gtables]
        names = [p.name for p in parsed]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise self.err(f"graph {dup!r}", "graph name appears twice", root.pos + self.base)
        unused = np.flatnonzero(self.blob_users == 0)
        if unused.size:
            i = int(unused[0])
            raise self.err(f"blob #{i}", "blob is not referenced by any tensor or binary",
                           data_offset + int(offs[i]))
        graphs = tuple(p.build(self) for p in parsed)
        # who uses each blob, for error messages (plain columns: no reference cycle keeps the mapping alive)
        self.users = [(p.name, p.t_blob, p.names, p.binary_blob) for p in parsed]
        return Container(graphs=graphs, target=target, metadata=dict(zip(keys, values)),
                         source=self.path, format="ctxbin", format_version=version)

    def check_blob_layout(self, offs: np.ndarray, sizes: np.ndarray, data_size: int, at: int) -> None:
        n = len(offs)
        if n == 0:
            if data_size:
                raise self.err("data section", f"{data_size} bytes that no blob indexes", at)
            return
        too_big = np.flatnonzero((offs > data_size) | (sizes > data_size))
        if too_big.size:
            i = int(too_big[0])
            raise self.err(f"blob #{i}", f"{int(sizes[i])} bytes at {int(offs[i])} run past the "
                           f"{data_size}-byte data section", at + 8 * i)
        ends = offs + sizes  # no overflow: both are <= data_size < 2**63
        expect = np.empty_like(offs)
        expect[0] = 0
        expect[1:] = (ends[:-1] + np.uint64(ALIGNMENT - 1)) & ~np.uint64(ALIGNMENT - 1)
        bad = np.flatnonzero(offs != expect)
        if bad.size:
            i = int(bad[0])
            what = "overlaps the previous blob" if offs[i] < expect[i] else "leaves an unindexed hole"
            raise self.err(f"blob #{i}", f"starts at {int(offs[i])}, expected {int(expect[i])}: it {what}",
                           at + 8 * i)
        if int(ends[-1]) != data_size:
            raise self.err("data section", f"blobs end at {int(ends[-1])} but the data section holds "
                           f"{data_size} bytes (unindexed bytes)", at)

    def target(self, t: Table | None) -> Target:
        if t is None:
            return Target()
        soc = t.scalar(_T_SOC, "q", None)
        arch = t.scalar(_T_ARCH, "q", None)
        return Target(backend=t.string(_T_BACKEND, obj="target backend"), soc_model=soc, htp_arch=arch,
                      sdk_version=t.string(_T_SDK, obj="target sdk_version"))

    def blob(self, i: int, owner: str) -> Blob:
        b = self.blobs[i]
        if b is None:
            start = self.data_offset + int(self.blob_offsets[i])
            obj = owner if self.blob_users[i] == 1 else f"blob #{i}"
            b = self.blobs[i] = Blob(self.buf, start, int(self.blob_sizes[i]),
                                     expected_hash=int(self.blob_hashes[i]), origin=(self.path, obj, start),
                                     file=self.path)
            if self.verified[i]:
                b.set_hash(int(self.blob_hashes[i]))  # checked by a batch: never hashed again
        return b

    def owner(self, i: int) -> str:
        """How errors name blob ``i``: its only user, or ``blob #i`` when several share it."""
        if self.blob_users[i] == 1:
            for graph, t_blob, names, binary_blob in self.users:
                rows = np.flatnonzero(t_blob == i)
                if rows.size:
                    return f"tensor {graph}/{names[int(rows[0])]}"
                if binary_blob == i:
                    return f"binary of graph {graph}"
        return f"blob #{i}"

    def failing(self, idx: np.ndarray, release: bool = False) -> list[tuple[int, int]]:
        """``(k, hash)`` for every ``idx[k]`` (distinct blob indices) whose bytes
        fail the recorded hash, with the hash they have. Blobs verified before,
        in a batch or one by one, are not hashed again; the others are hashed
        in one call on the native thread pool, or with ``release`` in runs of
        about ``_RELEASE_BATCH`` bytes whose pages are dropped after hashing
        (so checking a whole file costs about one run of resident memory)."""
        blobs = self.blobs
        made = [i for i in idx[~self.verified[idx]].tolist() if blobs[i] is not None]
        for i in made:
            if blobs[i].expected_hash is None:  # type: ignore[union-attr]  # verified one by one since
                self.verified[i] = True
        todo = np.flatnonzero(~self.verified[idx])
        if not todo.size:
            return []
        which = idx[todo]
        starts = self.blob_offsets[which] + np.uint64(self.data_offset)
        sizes = self.blob_sizes[which]
        hashes = np.empty(which.size, np.uint64)
        bounds = [0, which.size]
        if release:  # a run ends where the running total crosses a multiple of the batch size
            run = (np.cumsum(sizes) - sizes) // np.uint64(_RELEASE_BATCH)
            bounds = [0, *(np.flatnonzero(np.diff(run)) + 1).tolist(), which.size]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            hashes[lo:hi] = hash_many(self.buf, starts[lo:hi], sizes[lo:hi])
            if release:
                first, end = int(starts[lo]), int(starts[hi - 1] + sizes[hi - 1])
                Blob(self.buf, first, end - first).release()
        ok = hashes == self.blob_hashes[which]
        self.verified[which[ok]] = True
        for i in made:  # Blob objects already handed out learn the outcome (no second hash)
            if self.verified[i] and blobs[i].expected_hash is not None:  # type: ignore[union-attr]
                blobs[i].set_hash(int(self.blob_hashes[i]))  # type: ignore[union-attr]
        return [(int(todo[j]), int(hashes[j])) for j in np.flatnonzero(~ok).tolist()]

    def mismatch(self, i: int, actual: int, obj: str) -> ChecksumError:
        start = self.data_offset + int(self.blob_offsets[i])
        return ChecksumError(f"content hash {actual:016x} does not match the recorded "
                             f"{int(self.blob_hashes[i]):016x}", path=self.path, obj=obj, offset=start)

    def verify(self, idx: np.ndarray, owner: Callable[[int], str]) -> None:
        """Check the distinct blobs ``idx`` not verified yet in one batch (see
        :meth:`failing`): :class:`ChecksumError` for the first failing ``idx[k]``,
        named ``owner(k)``."""
        bad = self.failing(idx)
        if bad:
            k, actual = bad[0]
            raise self.mismatch(int(idx[k]), actual, owner(k))


class _GraphColumns:
    """One graph's decoded and validated columns; :meth:`build` makes the IR graph."""

    def __init__(self, r: _Reader, t: Table) -> None:
        self.name = t.string(_G_NAME, obj="graph name")
        w = f"graph {self.name!r}"
        self.where = w
        if len(self.name) > LIMITS.name:
            raise r.err(w, f"graph name is longer than {LIMITS.name} characters", r.base + t.pos)
        raw = t.bytes_(_G_STRINGS, f"{w} strings")
        pool_at = r.base + t.pos
        try:
            text = bytes(raw if raw is not None else b"").decode("utf-8")
        except UnicodeDecodeError as e:
            raise r.err(f"{w} strings", "string pool is not valid UTF-8", pool_at + e.start) from None
        if text and not text.endswith("\0"):
            raise r.err(f"{w} strings", "string pool does not end with NUL", pool_at)
        self.pool = text.split("\0")[:-1] if text else []
        if len(text) > LIMITS.string and max(map(len, self.pool)) > LIMITS.string:
            raise r.err(f"{w} strings", "a string is longer than the limit", pool_at)
        npool = len(self.pool)
        # UTF-8 byte lengths bound character counts from above: names are checked against them
        self.byte_len: np.ndarray | None = None
        if len(text) > LIMITS.name:
            ends = np.flatnonzero(np.frombuffer(raw, np.uint8) == 0)
            self.byte_len = np.diff(ends, prepend=-1) - 1

        col = r.column
        self.t_name, at = col(t, _G_T_NAME, "<u4", f"{w} tensor_name")
        nrows = len(self.t_name)
        if nrows > LIMITS.rows:
            raise r.err(w, f"{nrows} tensors (limit {LIMITS.rows})", at)
        r.index_check(self.t_name, at, npool, f"{w} tensor_name")
        self.check_names(r, self.t_name, at, "tensor_name")
        self.table_size = t.scalar(_G_TABLE_SIZE, "I", 0)
        if self.table_size > nrows:
            raise r.err(w, f"table_size {self.table_size} exceeds the {nrows} tensor rows", r.base + t.pos)
        self.t_dtype, at = col(t, _G_T_DTYPE, "<u4", f"{w} tensor_dtype", nrows)
        codes, which = np.unique(self.t_dtype, return_inverse=True)
        for code in codes.tolist():
            if code not in _DTYPES:
                i = int(np.flatnonzero(self.t_dtype == code)[0])
                raise r.err(f"{w} tensor_dtype[{i}]", f"unknown data type 0x{code:x}", at + 4 * i)
        self.itemsize = np.array([_ITEMSIZE[c] for c in codes.tolist()], np.int64)[which]
        self.t_kind, at = col(t, _G_T_KIND, "u1", f"{w} tensor_kind", nrows)
        r.index_check(self.t_kind, at, len(_KINDS), f"{w} tensor_kind")
        self.t_rank, at = col(t, _G_T_RANK, "u1", f"{w} tensor_rank", nrows)
        r.index_check(self.t_rank, at, LIMITS.rank + 1, f"{w} tensor_rank")
        self.ends = np.cumsum(self.t_rank, dtype=np.int64)
        ndims = int(self.ends[-1]) if nrows else 0
        self.dims, at = col(t, _G_DIMS, "<i8", f"{w} dims", ndims)
        r.index_check(self.dims, at, 1 << 62, f"{w} dims", lo=-2 - npool + 1)
        self.t_blob, self.blob_at = col(t, _G_T_BLOB, "<i4", f"{w} tensor_blob", nrows)
        r.index_check(self.t_blob, self.blob_at, len(r.blobs), f"{w} tensor_blob", lo=-1)
        self.t_enc, at = col(t, _G_T_ENC, "<i4", f"{w} tensor_encoding", nrows)
        self.enc_tables = t.tables(_G_ENCODINGS, f"{w} encodings")
        r.index_check(self.t_enc, at, len(self.enc_tables), f"{w} tensor_encoding", lo=-1)
        self.inputs, at = col(t, _G_INPUTS, "<u4", f"{w} inputs")
        r.index_check(self.inputs, at, nrows, f"{w} inputs")
        self.outputs, at = col(t, _G_OUTPUTS, "<u4", f"{w} outputs")
        r.index_check(self.outputs, at, nrows, f"{w} outputs")

        self.n_name, self.node_at = col(t, _G_N_NAME, "<u4", f"{w} node_name")
        nnodes = len(self.n_name)
        if nnodes > LIMITS.rows:
            raise r.err(w, f"{nnodes} nodes (limit {LIMITS.rows})", self.node_at)
        r.index_check(self.n_name, self.node_at, npool, f"{w} node_name")
        self.check_names(r, self.n_name, self.node_at, "node_name")
        self.node_cols = [self.n_name]
        for slot, field in ((_G_N_OP, "node_op_type"), (_G_N_NS, "node_namespace"), (_G_N_DOMAIN, "node_domain")):
            arr, at = col(t, slot, "<u4", f"{w} {field}", nnodes)
            r.index_check(arr, at, npool, f"{w} {field}")
            self.node_cols.append(arr)
        self.n_in_c, _ = col(t, _G_N_IN_COUNT, "<u4", f"{w} node_input_count", nnodes)
        self.n_out_c, _ = col(t, _G_N_OUT_COUNT, "<u4", f"{w} node_output_count", nnodes)
        self.n_attr_c, _ = col(t, _G_N_ATTR_COUNT, "<u4", f"{w} node_attr_count", nnodes)
        self.n_in, at = col(t, _G_N_INPUTS, "<u4", f"{w} node_inputs", int(self.n_in_c.sum(dtype=np.int64)))
        r.index_check(self.n_in, at, npool, f"{w} node_inputs")
        self.n_out, at = col(t, _G_N_OUTPUTS, "<u4", f"{w} node_outputs", int(self.n_out_c.sum(dtype=np.int64)))
        r.index_check(self.n_out, at, npool, f"{w} node_outputs")
        nattrs = int(self.n_attr_c.sum(dtype=np.int64))
        if nattrs > LIMITS.rows:
            raise r.err(w, f"{nattrs} attributes (limit {LIMITS.rows})", r.base + t.pos)
        self.a_name, self.a_name_at = col(t, _G_A_NAME, "<u4", f"{w} attr_name", nattrs)
        r.index_check(self.a_name, self.a_name_at, npool, f"{w} attr_name")
        self.a_kind, self.a_kind_at = col(t, _G_A_KIND, "u1", f"{w} attr_kind", nattrs)
        self.a_ref, _ = col(t, _G_A_REF, "<u8", f"{w} attr_ref", nattrs)
        self.a_len, _ = col(t, _G_A_LEN, "<u4", f"{w} attr_len", nattrs)
        self.a_ints, _ = col(t, _G_A_INTS, "<i8", f"{w} attr_ints")
        self.a_floats, _ = col(t, _G_A_FLOATS, "<f8", f"{w} attr_floats")
        # bytes and array entries are checked once here; each becomes one shared value when nodes are built
        self.a_bytes = [tb.bytes_(0, f"{w} attr_bytes[{j}]") or b""
                        for j, tb in enumerate(t.tables(_G_A_BYTES, f"{w} attr_bytes"))]
        self.a_arrays = [self.array_spec(r, tb, f"{w} attr_arrays[{j}]")
                         for j, tb in enumerate(t.tables(_G_A_ARRAYS, f"{w} attr_arrays"))]
        self.check_attrs(r)

        self.opset_domain, at = col(t, _G_OPSET_DOMAIN, "<u4", f"{w} opset_domain")
        r.index_check(self.opset_domain, at, npool, f"{w} opset_domain")
        self.opset_version, _ = col(t, _G_OPSET_VERSION, "<i8", f"{w} opset_version", len(self.opset_domain))
        self.meta_key, at = col(t, _G_META_KEY, "<u4", f"{w} metadata_key")
        r.index_check(self.meta_key, at, npool, f"{w} metadata_key")
        self.meta_value, at = col(t, _G_META_VALUE, "<u4", f"{w} metadata_value", len(self.meta_key))
        r.index_check(self.meta_value, at, npool, f"{w} metadata_value")

        self.binary = t.table(_G_BINARY, f"{w} binary")
        self.binary_blob = -1
        if self.binary is not None:
            self.binary_blob = self.binary.scalar(_BB_BLOB, "I", 0)
            if self.binary_blob >= len(r.blobs):
                raise r.err(f"{w} binary", f"blob index {self.binary_blob} outside the "
                            f"{len(r.blobs)}-entry blob index", r.base + self.binary.pos)
            r.blob_users[self.binary_blob] += 1
        used = self.t_blob[self.t_blob >= 0]
        if used.size:
            r.blob_users += np.bincount(used, minlength=len(r.blobs))

    # -- building the IR
    def check_static(self, r: _Reader) -> None:
        """Every weight row has concrete dims and exactly its blob's byte count (vectorized)."""
        rows = np.flatnonzero(self.t_blob >= 0)
        if not rows.size:
            return
        # per-row product and minimum of the dims; a row of rank 0 gets its segment's first
        # dim from reduceat (or the appended pad), so it is set to 1 (a scalar) by hand
        starts = self.ends - self.t_rank
        dims = np.append(self.dims.astype(np.float64), 1.0)
        scalar = self.t_rank[rows] == 0
        itemsize = self.itemsize[rows]
        with np.errstate(over="ignore", invalid="ignore"):  # inf and nan (inf * 0) are re-checked exactly below
            prod = np.where(scalar, 1.0, np.multiply.reduceat(dims, starts)[rows])
            need = prod * itemsize
        symbolic = ~scalar & (np.minimum.reduceat(dims, starts)[rows] < 0)
        # floats are exact below 2**52; larger products are re-checked with Python ints
        suspect = symbolic | (itemsize == 0) | (need != r.blob_sizes[self.t_blob[rows]]) | (need >= 2.0**52)
        ends = self.ends
        for i in rows[suspect].tolist():
            name = self.pool[int(self.t_name[i])]
            obj, at = f"{self.where} tensor {name!r}", self.blob_at + 4 * i
            shape = self.dims[ends[i] - self.t_rank[i] : ends[i]].tolist()
            if shape and min(shape) < 0:
                raise r.err(obj, "a weight must have a concrete shape", at)
            dtype = _DTYPES[int(self.t_dtype[i])]
            if not _ITEMSIZE[int(dtype)]:
                raise r.err(obj, f"{dtype.name} tensors cannot hold data", at)
            need_exact = math.prod(shape) * _ITEMSIZE[int(dtype)]  # Python ints: no overflow
            size = int(r.blob_sizes[self.t_blob[i]])
            if need_exact != size:
                raise r.err(obj, f"shape {tuple(shape)} of {dtype.name} needs {need_exact} bytes but "
                            f"its blob holds {size}", at)

    def build(self, r: _Reader) -> Graph:
        """The IR graph; its tensor table builds :class:`Tensor` objects on first access."""
        w, pool = self.where, self.pool
        self.names = [pool[i] for i in self.t_name.tolist()]
        table_names = self.names[: self.table_size]
        row_of = dict(zip(table_names, range(self.table_size)))
        if len(row_of) != len(table_names):
            dup = next(n for n in table_names if table_names.count(n) > 1)
            raise r.err(f"{w} tensor {dup!r}", "tensor name appears twice in the table", r.base)
        self.check_static(r)
        self.encs = [self.encoding(r, e, i) for i, e in enumerate(self.enc_tables)]
        self.cache: list[Tensor | None] = [None] * len(self.names)
        self.reader = r
        opsets = self.mapping(r, self.opset_domain, self.opset_version.tolist(), "opsets")
        meta = self.mapping(r, self.meta_key, [pool[i] for i in self.meta_value.tolist()], "metadata")
        binary = None
        if self.binary is not None:
            bb = self.binary
            binary = BackendBinary(
                backend=bb.string(_BB_BACKEND, obj=f"{w} binary backend"),
                blob=r.blob(self.binary_blob, f"binary of graph {self.name}"),
                graph_name=bb.string(_BB_GRAPH, obj=f"{w} binary graph_name"),
            )
        return Graph(
            name=self.name,
            inputs=tuple(self.tensor(i) for i in self.inputs.tolist()),
            outputs=tuple(self.tensor(i) for i in self.outputs.tolist()),
            nodes=LazyTuple(len(self.n_name), self.nodes),
            tensors=LazyTable(row_of, self.tensor, f"tensor table of {self.name!r}", self.arrays),
            opsets=opsets,
            metadata=meta,
            binary=binary,
        )

    def tensor(self, i: int) -> Tensor:
        """Row ``i`` as a Tensor (validated at open, so this cannot fail; built once)."""
        t = self.cache[i]
        if t is None:
            end = int(self.ends[i])
            dims = self.dims[end - int(self.t_rank[i]) : end].tolist()
            if dims and min(dims) < 0:
                dims = [d if d >= 0 else (None if d == -1 else self.pool[-2 - d]) for d in dims]
            name = self.names[i]
            bi, ei = int(self.t_blob[i]), int(self.t_enc[i])
            t = self.cache[i] = Tensor(
                name,
                _DTYPES[int(self.t_dtype[i])],
                tuple(dims),
                _KINDS[int(self.t_kind[i])],
                None if ei < 0 else self.encs[ei],
                None if bi < 0 else self.reader.blob(bi, f"tensor {self.name}/{name}"),
            )
        return t

    def arrays(self) -> dict[str, np.ndarray]:
        """Every weight of the table as a read-only view of the mapping, by name,
        straight from the columns (shapes and sizes were checked at open); the
        blobs are verified first, in one batch."""
        r, names = self.reader, self.names
        rows = np.flatnonzero(self.t_blob[: self.table_size] >= 0)
        blob = self.t_blob[rows]
        # verified in the order of their first tensor, so a failure names the first tensor of a bad blob
        uniq, first = np.unique(blob, return_index=True)
        order = np.argsort(first)
        r.verify(uniq[order], lambda k: f"tensor {self.name}/{names[int(rows[first[order[k]]])]}")
        dims, buf, nd = self.dims.tolist(), r.buf, np.ndarray
        starts = (r.blob_offsets[blob] + np.uint64(r.data_offset)).tolist()
        return {
            names[i]: nd(dims[end - rank : end], _NUMPY[code], buf, start)
            for i, end, rank, code, start in zip(rows.tolist(), self.ends[rows].tolist(),
                                                 self.t_rank[rows].tolist(), self.t_dtype[rows].tolist(), starts)
        }

    def encoding(self, r: _Reader, t: Table, i: int) -> QuantEncoding:
        obj = f"{self.where} encodings[{i}]"
        kind = t.scalar(_Q_KIND, "I", int(QuantKind.NONE))
        if kind not in _QKINDS:
            raise r.err(obj, f"unknown quantization kind {kind}", r.base + t.pos)
        return QuantEncoding(
            kind=_QKINDS[kind],
            scales=tuple(t.array(_Q_SCALES, "<f8", obj).tolist()),
            offsets=tuple(t.array(_Q_OFFSETS, "<i8", obj).tolist()),
            axis=t.scalar(_Q_AXIS, "i", None),
            bitwidth=t.scalar(_Q_BITWIDTH, "I", 8),
            is_symmetric=bool(t.scalar(_Q_SYM, "B", 0)),
            block_size=tuple(t.array(_Q_BLOCK, "<i8", obj).tolist()),
            block_scales=tuple(t.array(_Q_BLOCK_SCALES, "<i8", obj).tolist()),
            block_scale_bitwidth=t.scalar(_Q_BLOCK_BW, "I", 0),
        )

    def mapping(self, r: _Reader, keys: np.ndarray, values: list, what: str) -> dict:
        ks = [self.pool[i] for i in keys.tolist()]
        if len(set(ks)) != len(ks):
            raise r.err(f"{self.where} {what}", "a key appears twice", r.base)
        return dict(zip(ks, values))

    # -- nodes: every rule is checked at open with whole-column operations; Node objects come on first use
    def check_names(self, r: _Reader, idx: np.ndarray, at: int, what: str) -> None:
        """No string that ``idx`` points at is longer than ``LIMITS.name`` characters."""
        if self.byte_len is None or not idx.size:
            return
        for i in sorted(set(idx[self.byte_len[idx] > LIMITS.name].tolist())):  # (np.unique imports numpy.ma: ~10 ms cold)
            if len(self.pool[i]) > LIMITS.name:  # many bytes may still be few characters
                j = int(np.flatnonzero(idx == i)[0])
                raise r.err(f"{self.where} {what}[{j}]", f"name is longer than {LIMITS.name} characters",
                            at + 4 * j)

    def check_attrs(self, r: _Reader) -> None:
        """Attribute kinds, each reference inside its pool, string lists inside the
        string pool, unique names within a node; and the work of copying every
        list value is charged now (many attributes may share one range)."""
        kind = self.a_kind.astype(np.int64)
        if not kind.size:
            return
        bad = np.flatnonzero((kind < _INT) | (kind > _ARRAY))
        if bad.size:
            i = int(bad[0])
            raise self.attr_error(r, i, f"unknown attribute kind {int(kind[i])}")
        n = self.a_len.astype(np.int64)
        ref = np.minimum(self.a_ref, np.uint64(1 << 62)).astype(np.int64)  # larger ones fail below
        npool, nints, nfloats = len(self.pool), len(self.a_ints), len(self.a_floats)
        limit = np.array([0, nints, nfloats, npool, len(self.a_bytes), nints, nfloats, nints,
                          len(self.a_arrays)], np.int64)[kind]
        scalar = _IS_SCALAR[kind]
        bad = np.flatnonzero(np.where(scalar, (n != 1) | (ref >= limit), ref + n > limit))
        if bad.size:
            i = int(bad[0])
            ref_i, n_i = int(self.a_ref[i]), int(n[i])
            raise self.attr_error(r, i, f"entries {ref_i}..{ref_i + n_i} of kind {int(kind[i])} run past their "
                                  f"{int(limit[i])}-entry pool (attr_ints/attr_floats/strings/...)")
        work = np.cumsum(np.where(scalar, 0, 8 * n))
        i = min(int(np.searchsorted(work, r.fb.budget, side="right")), len(work) - 1)
        r.fb.charge(int(work[i]), f"{self.where} attribute #{i}", self.a_kind_at - r.base + i)
        strs = np.flatnonzero(kind == _STRS)
        if strs.size:  # a range holds a bad string index iff the count of bad ints up to its end grows
            outside = np.concatenate([[0], np.cumsum((self.a_ints < 0) | (self.a_ints >= npool))])
            bad = np.flatnonzero(outside[ref[strs] + n[strs]] != outside[ref[strs]])
            if bad.size:
                raise self.attr_error(r, int(strs[bad[0]]), "a string index is outside the string pool")
        node = np.repeat(np.arange(len(self.n_attr_c), dtype=np.int64), self.n_attr_c)
        names = self.a_name.astype(np.int64)
        if len(set(self.pool)) != npool:  # the same string twice in the pool: compare strings, not indices
            first: dict[str, int] = {}
            names = np.array([first.setdefault(x, j) for j, x in enumerate(self.pool)], np.int64)[names]
        key = node * npool + names
        order = np.argsort(key, kind="stable")
        twice = np.flatnonzero(key[order][1:] == key[order][:-1])
        if twice.size:
            i = int(order[twice + 1].min())
            raise r.err(f"{self.where} node {self.pool[int(self.n_name[node[i]])]!r}",
                        "an attribute name appears twice", self.a_name_at + 4 * i)

    def nodes(self) -> list[Node]:
        """Every node (all references were checked at open, so this cannot fail)."""
        pool = self.pool
        values = self.attr_values()
        anames = [pool[i] for i in self.a_name.tolist()]
        ins = tuple([pool[i] for i in self.n_in.tolist()])
        outs = tuple([pool[i] for i in self.n_out.tolist()])
        name_c, op_c, ns_c, dom_c = (c.tolist() for c in self.node_cols)
        nodes = []
        pi = po = pa = 0
        for name, op, ns, dom, ni, no, na in zip(name_c, op_c, ns_c, dom_c, self.n_in_c.tolist(),
                                                  self.n_out_c.tolist(), self.n_attr_c.tolist()):
            nodes.append(Node(pool[name], pool[op], pool[ns], ins[pi : pi + ni], outs[po : po + no],
                              dict(zip(anames[pa : pa + na], values[pa : pa + na])), pool[dom]))
            pi += ni
            po += no
            pa += na
        return nodes

    def attr_values(self) -> list:
        """Every attribute's value, in attribute order."""
        pool = self.pool
        ints, floats = self.a_ints.tolist(), self.a_floats.tolist()
        shared: dict[tuple[int, int], Any] = {}  # one bytes/array value per entry, however many name it
        out: list = []
        for kind, ref, n in zip(self.a_kind.tolist(), self.a_ref.tolist(), self.a_len.tolist()):
            if kind == _INT:
                out.append(ints[ref])
            elif kind == _FLOAT:
                out.append(floats[ref])
            elif kind == _STR:
                out.append(pool[ref])
            elif kind == _INTS:
                out.append(tuple(ints[ref : ref + n]))
            elif kind == _FLOATS:
                out.append(tuple(floats[ref : ref + n]))
            elif kind == _STRS:
                out.append(tuple([pool[v] for v in ints[ref : ref + n]]))
            else:
                v = shared.get((kind, ref))
                if v is None:
                    v = shared[kind, ref] = self.entry(kind, ref)
                out.append(v)
        return out

    def entry(self, kind: int, ref: int) -> bytes | np.ndarray:
        """Bytes entry ``ref`` (``kind == _BYTES``) or array entry ``ref``, as a new read-only value."""
        if kind == _BYTES:
            return bytes(self.a_bytes[ref])
        dt, shape, raw = self.a_arrays[ref]
        a = np.frombuffer(bytes(raw), dt).reshape(shape)
        a.flags.writeable = False
        return a

    def attr_error(self, r: _Reader, i: int, msg: str) -> FormatError:
        return r.err(f"{self.where} attribute #{i}", msg, self.a_kind_at + i)

    @staticmethod
    def array_spec(r: _Reader, t: Table, obj: str) -> tuple[np.dtype, tuple[int, ...], Any]:
        """An array attribute's checked (dtype, shape, bytes)."""
        dtype = t.string(_A_DTYPE, obj=obj)
        at = r.base + t.pos
        if dtype not in _ARRAY_DTYPES:
            raise r.err(obj, f"array type {dtype!r} is not allowed", at)
        shape = t.array(_A_SHAPE, "<i8", obj).tolist()
        if len(shape) > LIMITS.rank or any(d < 0 for d in shape):
            raise r.err(obj, f"bad array shape {shape}", at)
        raw = t.bytes_(_A_DATA, obj)
        nbytes = 0 if raw is None else len(raw)
        dt = np.dtype(dtype)
        if math.prod(shape) * dt.itemsize != nbytes:
            raise r.err(obj, f"shape {shape} of {dtype} needs {math.prod(shape) * dt.itemsize} bytes, "
                        f"found {nbytes}", at)
        return dt, tuple(shape), raw if raw is not None else b""


def _open(path: "str | os.PathLike[str]") -> tuple[Container, _Reader]:
    spath = os.fspath(path)
    with open(spath, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_SIZE:
            raise FormatError(f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header",
                              path=spath, obj="header", offset=0)
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    head = buf[:HEADER_SIZE]
    (magic, major, minor, flags, meta_off, meta_size, data_off, data_size, meta_hash,
     head_hash) = _HEADER.unpack(head)

    def bad(msg: str, at: int, obj: str = "header", cls: type = FormatError) -> FormatError:
        return cls(msg, path=spath, obj=obj, offset=at)

    if magic != MAGIC:
        raise bad(f"bad magic {magic!r}, expected {MAGIC!r}", 0)
    if major != VERSION[0]:
        raise bad(f"format version {major}.{minor}; this reader knows {VERSION[0]}.x", 8,
                  cls=UnsupportedVersionError)
    if flags & _REQUIRED_FLAGS & ~_KNOWN_REQUIRED_FLAGS:
        raise bad(f"required feature flags 0x{flags & _REQUIRED_FLAGS:04x} are unknown to this reader", 12,
                  cls=UnsupportedVersionError)
    if _hash(head[:-8]) != head_hash:
        raise bad(f"header checksum {_hash(head[:-8]):016x} does not match the recorded {head_hash:016x}",
                  56, cls=ChecksumError)
    if meta_off != HEADER_SIZE:
        raise bad(f"metadata offset {meta_off}, expected {HEADER_SIZE}", 16)
    if not 8 <= meta_size <= min(LIMITS.metadata_size, size - HEADER_SIZE):
        raise bad(f"metadata size {meta_size} is impossible for a {size}-byte file "
                  f"(limit {LIMITS.metadata_size})", 24)
    if data_off != _align(HEADER_SIZE + meta_size):
        raise bad(f"data offset {data_off}, expected {_align(HEADER_SIZE + meta_size)}", 32)
    if data_off + data_size != size:
        raise bad(f"data section of {data_size} bytes at {data_off} does not end at the "
                  f"file's end ({size} bytes)", 40)
    meta = buf[HEADER_SIZE : HEADER_SIZE + meta_size]
    if _hash(meta) != meta_hash:
        raise bad(f"metadata checksum {_hash(meta):016x} does not match the recorded {meta_hash:016x}",
                  HEADER_SIZE, obj="metadata", cls=ChecksumError)
    if buf[HEADER_SIZE + meta_size : data_off].strip(b"\0"):
        raise bad("padding after the metadata is not zero", HEADER_SIZE + meta_size, obj="padding")
    reader = _Reader(spath, buf, meta, HEADER_SIZE)
    return reader.container(f"{major}.{minor}", data_off, data_size), reader


def _problems(r: _Reader) -> Iterator[FormatError]:
    """Every non-zero padding run, then every blob whose bytes fail their hash
    (every blob is used: the reader refuses unreferenced ones), all hashed in
    batches on the native thread pool without keeping the pages resident."""
    buf, base = r.buf, r.data_offset
    ends = (r.blob_offsets + r.blob_sizes).tolist()
    for i, (end, nxt) in enumerate(zip(ends, r.blob_offsets[1:].tolist())):
        if buf[base + end : base + nxt].strip(b"\0"):
            yield FormatError("alignment padding is not zero", path=r.path,
                              obj=f"padding after blob #{i}", offset=base + end)
    for i, actual in r.failing(np.arange(len(r.blobs)), release=True):
        yield r.mismatch(i, actual, r.owner(i))


def read(path: "str | os.PathLike[str]", *, verify: bool = False) -> Container:
    """Open a ``.ctxbin`` file: header and metadata are decoded and validated now,
    weights are zero-copy views of a read-only mapping, checked on first access.

    ``verify=True`` also checks every blob's hash and the zero padding now.
    Raises :class:`FormatError` (``UnsupportedVersionError``, ``ChecksumError``).
    """
    c, reader = _open(path)
    if verify:
        for problem in _problems(reader):
            raise problem
    return c


def check(path: "str | os.PathLike[str]") -> list[str]:
    """Every problem found in a ``.ctxbin`` file (empty list = the file is sound).

    A structural problem in the header or metadata stops the check (nothing
    after it can be trusted) and is the only entry; otherwise every bad blob
    checksum and every non-zero padding run is listed.
    """
    try:
        _, reader = _open(path)
    except FormatError as e:
        return [str(e)]
    return [str(p) for p in _problems(reader)]
