"""QNN DLC files (``*.dlc``): reading versions 4.x and 3.x into ctxbin's IR,
writing version 4.1 from qnn-namespace graphs.

A DLC is a ZIP archive (read with :mod:`ctxbin.ziparchive`). Its ``model``
entry is an 8-byte prefix (``D5 0A``, u16 major, u16 minor, 2 zero bytes)
followed by a flatbuffer; major 4 and 3 are flatbuffers, major 2 a protobuf
ctxbin does not read. docs/DLC.md describes every field as decoded here.

- v4 (QNN IR backend, ``qairt-converter``): ``model`` (``NETD``) holds the
  graphs, their tensors (QNN data types, tensor types and quantization
  encodings) and nodes in QNN terms; ``model.params`` (``NETP``) says where
  each static tensor's bytes are: inline, or an (offset, size) into
  ``model.params.bin``. Nodes land in the ``qnn`` namespace.
- v3 (SNPE ``*-to-dlc`` converters): one graph of SNPE layers (namespace
  ``snpe``: ``Convolutional``, ``Neuron``, ...) with typed attributes; each
  layer's weights come from ``model.params`` and quantization encodings from
  its ``FxpData`` attribute.

Weights are zero-copy :class:`~ctxbin.weights.Blob` views into the file
mapping (stored ZIP entries).

:func:`write` produces what the QNN IR backend produces (same entries, same
tables and fields, docs/DLC.md), with correct CRC-32s, 64-byte aligned
weights, weights shared between graphs stored once, and deterministic bytes.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dataclass_field
from functools import cache, cached_property, partial
from operator import itemgetter
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import FormatError, UnsupportedVersionError
from ..fileio import atomic_write
from ..flatbuf import (
    SCALAR, STRING, STRINGS, TABLE, TABLES, VECTOR, WORK_FLOOR, WORK_PER_BYTE, Field, FlatBuffer, NativeWalk, Schema,
    Table, TableType, Walk, walk,
)
from ..flatbuild import REF, Builder, Layout
from ..hashing import check_status, crc32, crc32_combine, crc32_many, hash_and_crc
from ..ir import (
    AttrValue,
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
from ..weights import Blob, BlobCopy
from ..ziparchive import STORED, ZipArchive
from .sniff import dlc as sniff

__all__ = ["sniff", "read", "write", "check", "NAMESPACE_V4", "NAMESPACE_V3", "HISTORY_KEY"]

#: Namespace of v4 nodes (QNN op definitions as the QNN IR stores them).
NAMESPACE_V4 = "qnn"
#: Namespace of v3 nodes (SNPE layer types, not QNN ops).
NAMESPACE_V3 = "snpe"

_MAGIC = b"\xd5\x0a"
_PREFIX = 8
_QNN_UNDEFINED = 0x7FFFFFFF


def read(path: str | os.PathLike, **_options: Any) -> Container:
    """Every graph of the DLC at ``path`` (weights stay in the file mapping)."""
    zf = ZipArchive.open(path)
    doc = _Doc(zf, os.fspath(path))
    opened = _v4_native(zf.core, doc) if zf.core is not None else None
    if opened is not None:
        major, minor, graphs = 4, opened.minor, [opened.graph(gi) for gi in range(len(opened.ranges))]
        metadata = _metadata(doc)
    else:  # the Python reads: they name what is wrong, or accept what the C core left to them
        model = doc.entry("model")
        major, minor = _prefix(model, doc, "model")
        if major == 2:
            raise UnsupportedVersionError(
                "DLC v2 (protobuf-encoded model, SNPE 1.x) is not supported; convert it with a newer SNPE/QAIRT",
                path=path, obj="model", offset=2,
            )
        if major not in (3, 4):
            raise UnsupportedVersionError(
                f"DLC major version {major} is not supported (ctxbin reads 3 and 4)", path=path, obj="model", offset=2
            )
        metadata = _metadata(doc)
        graphs = _read_v4(doc, _flatbuffer(doc, "model", model, b"NETD")) if major == 4 else _read_v3(doc, model)
    names = [g.name for g in graphs]
    if len(set(names)) != len(names):
        raise FormatError(f"duplicate graph names {names}", path=path, obj="model")
    return Container(
        graphs=tuple(graphs),
        target=Target(sdk_version=metadata.get("converter-version", "")),
        metadata=metadata,
        source=os.fspath(path),
        format="dlc",
        format_version=f"{major}.{minor}",
    )


# --------------------------------------------------------------------------- shared
class _Doc:
    """The archive being read and where errors point.

    Flatbuffer references may share one table many times over (a vector of a
    million offsets to one node holding a million params): each entry's
    :class:`FlatBuffer` carries a work budget proportional to its size that
    stops such a read early.
    """

    __slots__ = ("zf", "path")

    def __init__(self, zf: ZipArchive, path: str) -> None:
        self.zf = zf
        self.path = path

    def entry(self, name: str) -> memoryview:
        return self.zf.read(name)

    def weights_entry(self, name: str) -> memoryview | None:
        """A stored weights entry as a view (:meth:`ZipArchive.stored`), its
        CRC-32 not checked: that would read every weight at open time, and
        opening a 10 GB file must cost what opening a 10 MB one does. None
        when the archive has no such entry."""
        if name not in self.zf:
            return None
        stored = self.zf.stored(name)
        return self.zf.read(name) if stored is None else stored

    def file_offset(self, name: str, at: int) -> int | None:
        """File offset of byte ``at`` of entry ``name`` (None when it was inflated)."""
        e = self.zf.entry(name)
        return e.data_offset + at if e.method == 0 else None

    def error(self, msg: str, obj: str, entry: str, at: int = 0) -> FormatError:
        off = self.file_offset(entry, at)
        return FormatError(msg, path=self.path, obj=obj, offset=off if off is not None else at)


def _prefix(data: memoryview, doc: _Doc, entry: str) -> tuple[int, int]:
    if len(data) < _PREFIX or bytes(data[:2]) != _MAGIC:
        raise doc.error(f"missing the D5 0A DLC prefix (got {bytes(data[:8]).hex(' ')})", entry, entry)
    return int.from_bytes(data[2:4], "little"), int.from_bytes(data[4:6], "little")


def _flatbuffer(doc: _Doc, entry: str, data: memoryview, ident: bytes) -> FlatBuffer:
    base = doc.file_offset(entry, _PREFIX) or 0
    fb = FlatBuffer(data, start=_PREFIX, path=doc.path, what=entry, base=base)
    got = fb.identifier()
    if got != ident:
        raise UnsupportedVersionError(
            f"flatbuffer identifier {got!r}, ctxbin reads {ident!r} here", path=doc.path, obj=entry, offset=base + 4
        )
    return fb


#: json.dumps(..., separators=(",", ":"), ensure_ascii=False) without making an
#: encoder per call; no circular check: the steps come from json.loads
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _metadata(doc: _Doc) -> dict[str, str]:
    """Producer metadata: v3 ``dlc.metadata`` key=value lines, v4 JSON entries."""
    meta: dict[str, str] = {}
    for name in doc.zf.names():
        if not name.startswith("dlc.metadata"):
            continue
        text = _text(doc, name)
        if name == "dlc.metadata":
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip():
                    meta[key.strip()] = value.strip()
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise doc.error(f"metadata is not JSON: {e}", name, name) from None
        except RecursionError:  # the parser recurses once per level of nesting
            raise doc.error("metadata is not JSON ctxbin reads: nested too deeply", name, name) from None
        if not isinstance(obj, dict):
            raise doc.error("metadata JSON is not an object", name, name)
        header = obj.get("header")
        version = header.get("version") if isinstance(header, dict) else None
        if isinstance(version, dict):
            meta["dlc-metadata-version"] = f"{version.get('major', '')}.{version.get('minor', '')}.{version.get('patch', '')}"
        if isinstance(header, dict) and isinstance(header.get("timestamp"), str):
            meta.setdefault("timestamp", header["timestamp"])
        steps = obj.get("dlcGenerationInfo")
        if not isinstance(steps, list):
            continue
        meta[HISTORY_KEY] = _COMPACT_JSON.encode(steps)
        for info in steps:
            cmd = info.get("converterCommand") if isinstance(info, dict) else None
            # the last converter wins; ctxbin's own rewrites don't change what converted the graphs
            if isinstance(cmd, dict) and cmd.get("tool") != _TOOL:
                args = cmd.get("args")
                argv = " ".join(f"{k}={v}" for k, v in args.items()) if isinstance(args, dict) else ""
                meta["converter-command"] = f"{cmd.get('tool', '')} {argv}".strip()
                meta["converter-version"] = str(cmd.get("converterVersion", ""))
    return meta


def _text(doc: _Doc, name: str) -> str:
    try:
        return str(doc.zf.read(name), "utf-8")  # decoded from the view: no bytes copy
    except UnicodeDecodeError as e:
        raise doc.error("metadata is not UTF-8 text", name, name, e.start) from None


def _check_size(shape: tuple[int, ...], dtype: DType, blob: Blob, path: str, obj: str) -> None:
    """Raise unless ``blob`` holds exactly the elements of ``shape`` of ``dtype`` (exact ints)."""
    at = blob.origin[2] if blob.origin else None
    try:
        itemsize = dtype.itemsize
    except TypeError:  # UNDEFINED, STRING, ...: no fixed-size elements
        raise FormatError(f"{dtype.name} tensors cannot hold data", path=path, obj=obj, offset=at) from None
    count = 1
    for d in shape:
        count *= d
    if count * itemsize != blob.nbytes:
        raise FormatError(
            f"{blob.nbytes} data bytes for shape {shape} of {dtype.name} ({count * itemsize} bytes)",
            path=path, obj=obj, offset=at,
        )


def _graph(name: str, tensors: dict[str, Tensor], nodes: list[Node], metadata: Mapping[str, str] | None = None) -> Graph:
    return Graph(
        name=name,
        inputs=tuple(t for t in tensors.values() if t.kind == TensorKind.INPUT),
        outputs=tuple(t for t in tensors.values() if t.kind == TensorKind.OUTPUT),
        nodes=tuple(nodes),
        tensors=tensors,
        metadata=dict(metadata or {}),
    )


# --------------------------------------------------------------------------- v4
# Field indices of the v4 tables (docs/DLC.md).
class _V4:
    GRAPHS = 0
    G_NAME, G_NODES, G_TENSORS, G_NAME2 = 0, 1, 2, 4
    N_NAME, N_TYPE, N_INPUTS, N_OUTPUTS, N_ATTRS = 0, 1, 2, 3, 4
    A_NAME, A_KIND, A_FLAG, A_VALUE, A_TENSOR = 0, 1, 2, 3, 4
    V_DTYPE, V_INT, V_FLOAT, V_STRING = 0, 1, 2, 3
    T_ID, T_NAME, T_TYPE, T_DIMS, T_UNK4, T_QUANT, T_DTYPE, T_DTYPE2, T_UNK8 = 0, 1, 2, 3, 4, 5, 6, 7, 8
    T_UNK12, T_DYNAMIC = 12, 14
    Q_ENCODING, Q_DEFINED, Q_SCALE_OFFSET, Q_AXIS, Q_BLOCKWISE = 0, 1, 2, 3, 5
    BX_AXIS, BX_CHANNELS, BX_BLOCKS, BX_STORAGE, BX_BITS, BX_SCALES8 = 0, 1, 2, 3, 4, 5
    SO_BITWIDTH, SO_SCALE, SO_OFFSET, SO_SYMMETRIC = 0, 3, 4, 5
    AX_AXIS, AX_LIST = 0, 1
    P_GRAPHS = 0
    PG_NAME, PG_TENSORS, PG_NODES = 0, 1, 2
    PN_TENSORS = 0
    TD_NAME, TD_BYTES, TD_REF = 0, 1, 3
    REF_OFFSET, REF_SIZE = 0, 1


# The v4 tables ctxbin reads, as walk schemas (docs/DLC.md): opening a file walks
# all of `model` (_V4_MODEL: graphs, their tensor tables, nodes and params) and
# of `model.params` (_V4_PARAMS). Graph tensors come first among the Tensor
# rows (the Graph type is walked before Param), one graph after the other.
_V4_MODEL = Schema((
    TableType("Model", (Field("graphs", _V4.GRAPHS, TABLES, child="Graph"),)),
    TableType("Graph", (Field("name", _V4.G_NAME, STRING), Field("tensors", _V4.G_TENSORS, TABLES, child="Tensor"),
                        Field("nodes", _V4.G_NODES, TABLES, child="Node"))),
    TableType("Node", (Field("name", _V4.N_NAME, STRING), Field("type", _V4.N_TYPE, STRING),
                       Field("inputs", _V4.N_INPUTS, STRINGS), Field("outputs", _V4.N_OUTPUTS, STRINGS),
                       Field("params", _V4.N_ATTRS, TABLES, child="Param"))),
    TableType("Param", (Field("name", _V4.A_NAME, STRING), Field("kind", _V4.A_KIND, SCALAR, "i"),
                        Field("value", _V4.A_VALUE, TABLE, child="Scalar"),
                        Field("tensor", _V4.A_TENSOR, TABLE, child="Tensor"))),
    TableType("Scalar", (Field("dtype", _V4.V_DTYPE, SCALAR, "i"), Field("int", _V4.V_INT, SCALAR, "q"),
                         Field("float", _V4.V_FLOAT, SCALAR, "d"), Field("string", _V4.V_STRING, STRING))),
    TableType("Tensor", (Field("name", _V4.T_NAME, STRING), Field("type", _V4.T_TYPE, SCALAR, "i"),
                         Field("dims", _V4.T_DIMS, VECTOR, "I"), Field("quant", _V4.T_QUANT, TABLE, child="Quant"),
                         Field("dtype", _V4.T_DTYPE, SCALAR, "i"))),
    TableType("Quant", (Field("encoding", _V4.Q_ENCODING, SCALAR, "i"),
                        Field("scale_offset", _V4.Q_SCALE_OFFSET, TABLE, child="ScaleOffset"),
                        Field("axis", _V4.Q_AXIS, TABLE, child="Axis"),
                        Field("blockwise", _V4.Q_BLOCKWISE, TABLE, child="Blockwise"))),
    TableType("Axis", (Field("axis", _V4.AX_AXIS, SCALAR, "i"),
                       Field("channels", _V4.AX_LIST, TABLES, child="ScaleOffset"))),
    TableType("Blockwise", (Field("axis", _V4.BX_AXIS, SCALAR, "i"),
                            Field("channels", _V4.BX_CHANNELS, TABLES, child="ScaleOffset"),
                            Field("blocks", _V4.BX_BLOCKS, SCALAR, "i"), Field("storage", _V4.BX_STORAGE, SCALAR, "i"),
                            Field("bits", _V4.BX_BITS, SCALAR, "B"), Field("scales8", _V4.BX_SCALES8, VECTOR, "B"))),
    TableType("ScaleOffset", (Field("bitwidth", _V4.SO_BITWIDTH, SCALAR, "i"),
                              Field("scale", _V4.SO_SCALE, SCALAR, "f"), Field("offset", _V4.SO_OFFSET, SCALAR, "i"),
                              Field("symmetric", _V4.SO_SYMMETRIC, SCALAR, "B"))),
))
_V4_PARAMS = Schema((
    TableType("ModelParameters", (Field("graphs", _V4.P_GRAPHS, TABLES, child="GraphParameters"),)),
    TableType("GraphParameters", (Field("name", _V4.PG_NAME, STRING),
                                  Field("tensors", _V4.PG_TENSORS, TABLES, child="TensorData"),
                                  Field("nodes", _V4.PG_NODES, TABLES, child="NodeParameters"))),
    TableType("NodeParameters", (Field("tensors", _V4.PN_TENSORS, TABLES, child="TensorData"),)),
    TableType("TensorData", (Field("name", _V4.TD_NAME, STRING), Field("bytes", _V4.TD_BYTES, VECTOR, "B"),
                             Field("ref", _V4.TD_REF, TABLE, child="BinRef"))),
    TableType("BinRef", (Field("offset", _V4.REF_OFFSET, SCALAR, "Q"), Field("size", _V4.REF_SIZE, SCALAR, "Q"))),
))


@dataclass(frozen=True)
class _V4Data:
    """Where static bytes live: ``model.params`` (its TensorData tables and inline
    vectors) or ``model.params.bin``."""

    doc: _Doc
    params: Walk
    params_bin: memoryview | None
    #: one Blob per ``model.params.bin`` region, so tensors (of any graph) that
    #: the writer stored once are seen as shared, and verified once; with the
    #: ``Tensor`` row its origin names (see :meth:`_V4Tensors.blob`)
    regions: dict[tuple[int, int], tuple[Blob, int]] = dataclass_field(default_factory=dict)


# tensor types, data types (and their item sizes; 0: none, e.g. UNDEFINED, STRING) as
# sorted arrays, for vectorized membership tests
_KIND_CODES = np.array(sorted(int(k) for k in TensorKind), np.int64)
_DTYPE_CODES = np.array(sorted(int(d) for d in DType), np.int64)


def _itemsize(code: int) -> int:
    try:
        return DType(code).itemsize
    except TypeError:
        return 0


_ITEMSIZES = np.array([_itemsize(c) for c in _DTYPE_CODES.tolist()], np.float64)


def _known(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Which ``values`` are among the sorted ``codes``."""
    return codes[np.minimum(np.searchsorted(codes, values), codes.size - 1)] == values
_QUANT_KINDS = {int(k) for k in QuantKind}
_QUANT_DECODED = np.array(sorted(int(k) for k in (
    QuantKind.NONE, QuantKind.SCALE_OFFSET, QuantKind.AXIS_SCALE_OFFSET, QuantKind.BW_SCALE_OFFSET,
    QuantKind.BW_AXIS_SCALE_OFFSET, QuantKind.BLOCKWISE_EXPANSION)), np.int64)
#: why an encoding ctxbin knows is not decoded (the rest: not seen in a file yet)
_NOT_DECODED = {
    int(QuantKind.BW_FLOAT_BLOCK): "QNN 2.51's IR backend writes it without its per-block scales "
                                   "(empty tables in model.encodings.bin), so the weights cannot be recovered",
}


def _undecoded(code: int) -> str:
    label = QuantKind(code).name if code in _QUANT_KINDS else "unknown"
    why = _NOT_DECODED.get(code, "not seen in a file yet")
    return f"quantization encoding {code} ({label}) is not decoded by ctxbin: {why}"


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def _ranges(first: np.ndarray, count: np.ndarray, step: int = 1) -> np.ndarray:
    """The concatenated ranges ``first[i] + step * k`` for ``k < count[i]``."""
    ends = np.cumsum(count)
    total = int(ends[-1]) if ends.size else 0
    return np.repeat(first, count) + step * (np.arange(total, dtype=np.int64) - np.repeat(ends - count, count))


def _lpbq_block_size(shape: tuple[int, ...], axis: int, step: int) -> tuple[int, ...]:
    """The block of a DLC LPBQ weight: ``step`` along ``axis - 1``, 1 along the
    channel ``axis``, whole dimensions elsewhere (the table stores only the
    number of blocks)."""
    return tuple(1 if d == axis else step if d == axis - 1 else shape[d] or 1 for d in range(len(shape)))


class _V4Quant:
    """The quantization tables of one walk as Python lists, made on first use."""

    def __init__(self, w: Walk) -> None:
        self.fb = w.fb
        self.pos = w.pos("Quant").tolist()
        self.codes = w.scalars("Quant", "encoding").tolist()  # absent = 0 = SCALE_OFFSET
        self.so = w.column("Quant", "scale_offset")[0].tolist()
        self.axis = w.column("Quant", "axis")[0].tolist()
        self.axis_pos = w.pos("Axis").tolist()
        self.axis_value = w.scalars("Axis", "axis").tolist()
        first, count = w.column("Axis", "channels")
        self.channels = list(zip(first.tolist(), count.tolist()))
        self.bx = w.column("Quant", "blockwise")[0].tolist()
        self.bx_pos = w.pos("Blockwise").tolist()
        self.bx_cols = list(zip(*(w.scalars("Blockwise", f).tolist() for f in ("axis", "blocks", "storage", "bits")),
                                *(c.tolist() for c in w.column("Blockwise", "channels")),
                                *(c.tolist() for c in w.column("Blockwise", "scales8"))))
        self.so_cols = list(zip(w.scalars("ScaleOffset", "scale", 0.0).astype(np.float64).tolist(),
                                w.scalars("ScaleOffset", "offset").tolist(), w.scalars("ScaleOffset", "bitwidth").tolist(),
                                (w.scalars("ScaleOffset", "symmetric") != 0).tolist()))

    def encoding(self, q: int, obj: str, shape: tuple[int, ...]) -> QuantEncoding | None:
        """Row ``q``'s encoding for a tensor of ``shape`` (LPBQ tables are sized by it)."""
        code = self.codes[q]
        if code == QuantKind.NONE:
            return None
        if code in (QuantKind.SCALE_OFFSET, QuantKind.BW_SCALE_OFFSET):  # BW: the same table, any bitwidth
            so = self.so[q]
            if so < 0:
                raise self.fb.error("scale/offset encoding without its scale/offset table", obj, self.pos[q])
            scale, offset, bits, sym = self.so_cols[so]
            return QuantEncoding(QuantKind(code), (scale,), (offset,), None, bits, sym)
        if code in (QuantKind.AXIS_SCALE_OFFSET, QuantKind.BW_AXIS_SCALE_OFFSET):
            ax = self.axis[q]
            if ax < 0:
                raise self.fb.error("per-axis encoding without its axis table", obj, self.pos[q])
            first, count = self.channels[ax]
            if not count:
                raise self.fb.error("per-axis encoding with no channels", obj, self.axis_pos[ax])
            chans = self.so_cols[first : first + count]
            return QuantEncoding(
                QuantKind(code), tuple(c[0] for c in chans), tuple(c[1] for c in chans),
                self.axis_value[ax], chans[0][2], all(c[3] for c in chans),
            )
        if code == QuantKind.BLOCKWISE_EXPANSION:
            return self._blockwise(q, obj, shape)
        raise self.fb.error(_undecoded(code), obj, self.pos[q])

    def _blockwise(self, q: int, obj: str, shape: tuple[int, ...]) -> QuantEncoding:
        """LPBQ: per-channel scale/offsets along ``axis``, ``blocks`` blocks per
        channel along ``axis - 1`` with one 8-bit integer scale each (docs/DLC.md)."""
        bx = self.bx[q]
        if bx < 0:
            raise self.fb.error("blockwise-expansion encoding without its table", obj, self.pos[q])
        axis, blocks, storage, bits, first, count, scales_at, nscales = self.bx_cols[bx]
        at = self.bx_pos[bx]
        if storage != 0:
            raise self.fb.error(f"block-scale storage type {storage} is not decoded (8-bit only: 0)", obj, at)
        if not 1 <= bits <= 8:
            raise self.fb.error(f"block-scale bitwidth {bits} does not fit 8-bit storage", obj, at)
        if not 1 <= axis < len(shape) or shape[axis] != count or count == 0:
            raise self.fb.error(f"axis {axis} with {count} channels does not fit shape {shape}", obj, at)
        if blocks <= 0 or shape[axis - 1] % blocks or not shape[axis - 1]:
            raise self.fb.error(f"{blocks} blocks do not split dimension {axis - 1} of shape {shape}", obj, at)
        if nscales != count * blocks:
            raise self.fb.error(f"{nscales} block scales, {count} channels x {blocks} blocks need "
                                f"{count * blocks}", obj, at)
        chans = self.so_cols[first : first + count]
        size = _lpbq_block_size(shape, axis, shape[axis - 1] // blocks)
        # the walk checked the vector's bounds; its count is the one just checked against the shape
        scales = np.frombuffer(self.fb.buf, np.uint8, nscales, self.fb.start + scales_at).tolist() if nscales else []
        return QuantEncoding(
            QuantKind.BLOCKWISE_EXPANSION, tuple(c[0] for c in chans), tuple(c[1] for c in chans), axis,
            chans[0][2], all(c[3] for c in chans), size, tuple(scales), bits,
        )


# where a Tensor row's fields are among its walk cells: its name's string index, type, dims (start, length),
# data type (and whether it is present)
_TENSOR_TYPE = _V4_MODEL.index["Tensor"]
_TENSOR_CELLS = itemgetter(*(1 + 2 * _V4_MODEL.fields[("Tensor", f)] + extra for f, extra in
                              (("name", 0), ("type", 0), ("dims", 0), ("dims", 1), ("dtype", 0), ("dtype", 1))))
# data types and tensor types by code, looked up per Tensor made (an enum call costs several times more)
_DTYPES = {int(d): d for d in DType}
_KINDS = {int(k): k for k in TensorKind}


class _V4Tensors:
    """Some rows of the ``Tensor`` tables of a walk (``rows``: their row
    numbers): names, types, data types and encoding kinds checked at once, and
    (after :meth:`attach`) where each static tensor's bytes are, checked at
    once too. Shapes, blobs and :class:`Tensor` objects (with their encodings)
    are made per row on first use."""

    def __init__(self, w: Walk, rows: np.ndarray, doc: _Doc, graph: str, quant: Callable[[], _V4Quant],
                 checked: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``checked``: (static_of, quant) from the C core's checks of these rows
        (:func:`_v4_native`), which then need not be made again here."""
        self.w, self.rows, self.doc, self.graph, self._quant = w, rows, doc, graph, quant
        self._names: list[str] | None = None
        self.cache: list[Tensor | None] = [None] * rows.size
        self.where: np.ndarray | None = None
        if checked is not None:
            self.static_of, self.quant = checked
            return
        kinds = self.kinds_np
        i = _first(~_known(kinds, _KIND_CODES))
        if i is not None:
            raise self.error(f"tensor type {int(kinds[i])} is not one ctxbin models", i)
        dtypes = self.dtypes_np
        i = _first(~_known(dtypes, _DTYPE_CODES))
        if i is not None:
            raise self.error(f"unknown QNN data type 0x{int(dtypes[i]) & 0xFFFFFFFF:04x}", i)
        quant = w.column("Tensor", "quant")[0][rows]
        has_q = np.flatnonzero(quant >= 0)
        if has_q.size:
            codes = w.scalars("Quant", "encoding")[quant[has_q]]
            i = _first(~_known(codes, _QUANT_DECODED))
            if i is not None:
                raise self.error(_undecoded(int(codes[i])), int(has_q[i]))
            quant = quant.copy()
            quant[has_q[codes == int(QuantKind.NONE)]] = -1  # no encoding: no need to decode the Quant tables
        self.quant = quant
        self.statics = np.flatnonzero(kinds == int(TensorKind.STATIC))
        # per row: its index among the statics (-1: no data); blob places per static
        self.static_of = np.full(rows.size, -1, np.int64)

    # columns of these rows, made on first use (opening a file makes Tensors for its inputs and outputs only)
    @cached_property
    def kinds_np(self) -> np.ndarray:
        return self.w.scalars("Tensor", "type")[self.rows]

    @cached_property
    def dtypes_np(self) -> np.ndarray:
        return self.w.scalars("Tensor", "dtype", _QNN_UNDEFINED)[self.rows]

    @cached_property
    def dims(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each row's dims vector starts, and its length."""
        at, count = self.w.column("Tensor", "dims")
        return at[self.rows], count[self.rows]

    @property
    def names(self) -> list[str]:
        """Every row's name, decoded on first use (the walk checked them, the
        C core or the Python checks found them unique): opening a file decodes
        only its inputs' and outputs' names."""
        if self._names is None:
            self._names = self.w.texts("Tensor", "name", self.rows)
        return self._names

    def name(self, i: int) -> str:
        if self._names is not None:
            return self._names[i]
        k = int(self.w.column("Tensor", "name")[0][self.rows[i]])  # its string's index in the walk
        return self.w.strings(k, k + 1)[0] if k >= 0 else ""

    def error(self, msg: str, i: int) -> FormatError:
        return self.w.fb.error(msg, f"{self.graph}/{self.names[i]}", int(self.w.pos("Tensor")[self.rows[i]]))

    def attach(self, td: np.ndarray, data: _V4Data) -> None:
        """Check the static rows' data (``td``: their TensorData rows in the
        ``model.params`` walk, -1 when missing): present, in bounds, and exactly
        the size their shape and data type need."""
        self.data = data
        rows = self.statics
        if not rows.size:
            return
        i = _first(td < 0)
        if i is not None:
            raise self.error("static tensor has no data in model.params", int(rows[i]))
        p = data.params
        ref = p.column("TensorData", "ref")[0][td]
        has_ref = ref >= 0
        # (inline?, start, size, TensorData position) per static
        where = np.zeros((rows.size, 4), np.int64)
        where[:, 3] = p.pos("TensorData")[td]
        if has_ref.any():
            if data.params_bin is None:
                r = int(rows[int(np.argmax(has_ref))])
                raise data.doc.error("refers to model.params.bin, which the archive lacks",
                                     f"{self.graph}/{self.names[r]}", "model.params")
            off = p.scalars("BinRef", "offset")[ref[has_ref]]
            size = p.scalars("BinRef", "size")[ref[has_ref]]
            total = np.uint64(len(data.params_bin))
            j = _first((off > total) | (size > total - np.minimum(off, total)))
            if j is not None:
                r = int(rows[np.flatnonzero(has_ref)[j]])
                raise FormatError(
                    f"blob of {int(size[j])} bytes at {int(off[j])} lies outside its {int(total)}-byte buffer",
                    path=data.doc.path, obj=f"{self.graph}/{self.names[r]}", offset=int(off[j]))
            where[has_ref, 1] = off
            where[has_ref, 2] = size
        if not has_ref.all():
            inline = ~has_ref
            vs, vc = (c[td] for c in p.column("TensorData", "bytes"))
            j = _first(inline & (vs < 0))
            if j is not None:
                raise p.fb.error("static tensor has neither inline bytes nor a model.params.bin reference",
                                 f"{self.graph}/{self.names[int(rows[j])]}", int(where[j, 3]))
            where[inline, 0] = 1
            where[inline, 1] = p.fb.start + vs[inline]
            where[inline, 2] = vc[inline]
        self.where = where
        self.static_of[rows] = np.arange(rows.size)
        # every static tensor's byte count must be its element count times its element size;
        # float products are exact below 2**52, the rest (and every mismatch) is re-checked exactly
        at, count = (c[rows] for c in self.dims)
        dims = self.w.fb.column("I", _ranges(at, count, 4), f"{self.graph}.tensors").astype(np.float64)
        ends = np.cumsum(count)
        with np.errstate(over="ignore", invalid="ignore"):  # inf and nan (inf * 0) are re-checked exactly below
            prod = np.multiply.reduceat(np.append(dims, 1.0), np.minimum(ends - count, dims.size))
            need = np.where(count == 0, 1.0, prod) * _ITEMSIZES[np.searchsorted(_DTYPE_CODES, self.dtypes_np[rows])]
        for k in np.flatnonzero((need == 0) | (need != where[:, 2]) | (need >= 2.0**52)).tolist():
            self.check_size(int(rows[k]))

    def check_encodings(self) -> None:
        """Decode every row's encoding once (raising on a bad table), as the C core checks them at open."""
        quant = self._quant()
        for i in np.flatnonzero(self.quant >= 0).tolist():
            quant.encoding(int(self.quant[i]), f"{self.graph}/{self.names[i]}.quantization", self.shape(i))

    def shape(self, i: int) -> tuple[int, ...]:
        at, count = (int(c[i]) for c in self.dims)  # the walk checked the vector's bounds
        return struct.unpack_from(f"<{count}I", self.w.fb.buf, self.w.fb.start + at) if count else ()

    def check_size(self, i: int) -> None:
        """The exact (Python int) size check of row ``i``, raising the error."""
        _check_size(self.shape(i), DType(int(self.dtypes_np[i])), self.blob(i), self.doc.path,  # type: ignore[arg-type]
                    f"{self.graph}/{self.names[i]}")

    def blob(self, i: int) -> Blob | None:
        s = int(self.static_of[i])
        if s < 0:
            return None
        inline, start, size, td = self.where[s].tolist()  # type: ignore[union-attr]
        doc, obj = self.doc, f"{self.graph}/{self.name(i)}"
        if not inline:
            # a region's Blob names the first of its tensors in the file, whichever is made first
            # (the Python path makes the nodes, and their tensor params, at open; the C path on first use)
            row = int(self.rows[i])
            shared = self.data.regions.get((start, size))
            if shared is not None:
                b, first = shared
                if row < first:
                    b.origin = (doc.path, obj, b.origin[2])  # type: ignore[index]
                    self.data.regions[(start, size)] = (b, row)
                return b
            at = doc.file_offset("model.params.bin", start)
            origin = (doc.path, obj, at if at is not None else start)
            mapping = doc.zf.buffer
            if at is not None and isinstance(mapping, mmap.mmap):
                # the same bytes addressed in the file mapping, so streaming writers can release their pages
                b = Blob(mapping, at, size, origin=origin, file=doc.path)
            else:
                b = Blob(self.data.params_bin, start, size, origin=origin)  # type: ignore[arg-type]
            self.data.regions[(start, size)] = (b, row)
            return b
        params = self.data.params.fb
        return Blob(memoryview(params.buf)[start : start + size], origin=(doc.path, obj, params.base + td))

    def tensor(self, i: int) -> Tensor:
        """Row ``i`` as a Tensor, made once from its row of cells; its scale/offset tables are decoded here."""
        t = self.cache[i]
        if t is None:
            w = self.w
            cells = w.cells[_TENSOR_TYPE][int(self.rows[i])].tolist()
            k, kind, at, rank, dtype, has_dtype = _TENSOR_CELLS(cells)
            name = self._names[i] if self._names is not None else w.strings(k, k + 1)[0] if k >= 0 else ""
            shape = struct.unpack_from(f"<{rank}I", w.fb.buf, w.fb.start + at) if rank else ()
            dtype = dtype if has_dtype else _QNN_UNDEFINED
            q = int(self.quant[i])
            enc = self._quant().encoding(q, f"{self.graph}/{name}.quantization", shape) if q >= 0 else None
            # (the checks made sure both codes are known; the data type cell is the u32 of an int32)
            t = self.cache[i] = Tensor(name, _DTYPES[dtype - (dtype >> 31 << 32)], shape, _KINDS[kind], enc,
                                       self.blob(i))
        return t


class _Once:
    """A value made on first call, then kept (a failure is raised again next time)."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make: Callable[[], Any] | None = make
        self._value: Any = None

    def __call__(self) -> Any:
        if self._make is not None:
            self._value = self._make()
            self._make = None
        return self._value


def _v4_graph(cols: _V4Tensors, inputs: list[int], outputs: list[int], nnodes: int,
              nodes: Callable[[], Sequence[Node]], row_of: Mapping[str, int]) -> Graph:
    """Graph of the tensor table ``cols`` with the tensors of rows ``inputs`` and ``outputs``."""
    return Graph(
        name=cols.graph,
        inputs=tuple(map(cols.tensor, inputs)),
        outputs=tuple(map(cols.tensor, outputs)),
        nodes=LazyTuple(nnodes, nodes),
        tensors=LazyTable(row_of, cols.tensor, f"tensor table of {cols.graph!r}"),  # type: ignore[arg-type]
    )


def _read_v4(doc: _Doc, fb: FlatBuffer) -> list[Graph]:
    """Every graph of the v4 model ``fb``, checked whole at open (tensor
    tables, encodings, nodes, params and their data) in Python/numpy: the
    reference, which names any error (:func:`_v4_native`, the C core's
    checks, only says whether a file passes); Node objects are made here,
    Tensor objects on first use."""
    w = walk(fb, _V4_MODEL)
    w.check_utf8()
    data, params = _v4_params(doc)
    quant = _Once(partial(_V4Quant, w))
    names = w.texts("Graph", "name")
    t_first, t_count = (c.tolist() for c in w.column("Graph", "tensors"))
    n_first, n_count = (c.tolist() for c in w.column("Graph", "nodes"))
    graphs = []
    for gi, name in enumerate(names):
        if name not in params:
            raise doc.error("graph has no parameters in model.params", name, "model", _PREFIX + int(w.pos("Graph")[gi]))
        td_lo, td_n, np_range = params.pop(name)
        lo, n = max(t_first[gi], 0), t_count[gi]
        cols = _V4Tensors(w, np.arange(lo, lo + n), doc, name, quant)
        row_of = dict(zip(cols.names, range(n)))
        if len(row_of) != n:
            dup = next(t for i, t in enumerate(cols.names) if row_of[t] != i)
            raise doc.error("duplicate tensor name", f"{name}/{dup}", "model")
        td_names = _v4_td_names(data.params, name, td_lo, td_n)
        by_name = dict(zip(td_names, range(td_lo, td_lo + td_n)))
        cols.attach(np.array([by_name.get(cols.names[i], -1) for i in cols.statics.tolist()], np.int64), data)
        cols.check_encodings()
        nodes = tuple(_v4_nodes(w, gi, np_range, doc, name, data))
        kinds = cols.kinds_np
        graphs.append(_v4_graph(cols, np.flatnonzero(kinds == int(TensorKind.INPUT)).tolist(),
                                np.flatnonzero(kinds == int(TensorKind.OUTPUT)).tolist(), n_count[gi],
                                lambda nodes=nodes: nodes, row_of))
    for name, (td_lo, td_n, _) in params.items():  # graphs only model.params has: their names are still checked
        _v4_td_names(data.params, name, td_lo, td_n)
    return graphs


class _Rows(Mapping[str, int]):
    """Tensor name -> row of ``count`` rows, the names (``names()``) and the
    dict made on first use (the C core already checked the names are unique,
    so opening a file decodes no name and makes no dict)."""

    __slots__ = ("_count", "_names", "_rows")

    def __init__(self, count: int, names: Callable[[], list[str]]) -> None:
        self._count = count
        self._names = names
        self._rows: dict[str, int] | None = None

    def _dict(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = dict(zip(self._names(), range(self._count)))
        return self._rows

    def __getitem__(self, name: str) -> int:
        return self._dict()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return self._count

    def __contains__(self, name: object) -> bool:
        return name in self._dict()


def _v4_params(doc: _Doc) -> tuple[_V4Data, dict[str, tuple[int, int, tuple[int, int]]]]:
    """Per graph: the range of its TensorData rows and of its NodeParameters
    rows (one per node, decoded with the nodes). TensorData names are checked
    (UTF-8 here, unique per graph with the graph's tensors)."""
    raw = doc.entry("model.params")
    major, _ = _prefix(raw, doc, "model.params")
    if major != 4:
        raise UnsupportedVersionError(f"model.params has major version {major} in a v4 DLC", path=doc.path, obj="model.params", offset=2)
    p = walk(_flatbuffer(doc, "model.params", raw, b"NETP"), _V4_PARAMS)
    p.check_utf8()
    params_bin = doc.weights_entry("model.params.bin")
    td_first, td_count = (c.tolist() for c in p.column("GraphParameters", "tensors"))
    np_first, np_count = (c.tolist() for c in p.column("GraphParameters", "nodes"))
    out = {name: (max(td_first[gi], 0), td_count[gi], (max(np_first[gi], 0), np_count[gi]))
           for gi, name in enumerate(p.texts("GraphParameters", "name"))}
    return _V4Data(doc, p, params_bin), out


def _v4_td_names(p: Walk, graph: str, lo: int, n: int) -> list[str]:
    """The TensorData names of one graph's rows ``lo`` to ``lo + n``, checked unique."""
    names = p.texts("TensorData", "name", np.arange(lo, lo + n))
    if len(set(names)) != len(names):
        first = dict(zip(names, range(lo, lo + n)))
        i = next(i for i in range(n) if first[names[i]] != lo + i)
        raise p.fb.error(f"duplicate tensor data {names[i]!r}", f"{graph}.tensor_params[{i}]",
                         int(p.pos("TensorData")[lo + i]))
    return names


# what ctxbin_dlc_v4_open needs besides the two flatbuffers: the tables it checks
# (CTXBIN_DLC_*, in its enum's order), the cell column of each field it reads, known codes
_NATIVE_TABLES = ((_V4_MODEL, ("Node", "Param", "Scalar", "Tensor", "Quant", "Axis", "Blockwise")),
                  (_V4_PARAMS, ("TensorData", "BinRef", "NodeParameters")))
_NATIVE_COLS = np.array([1 + 2 * schema.fields[key] for schema, key in (
    *((_V4_MODEL, ("Tensor", f)) for f in ("name", "type", "dims", "quant", "dtype")),
    *((_V4_MODEL, ("Quant", f)) for f in ("encoding", "scale_offset", "axis", "blockwise")),
    (_V4_MODEL, ("Axis", "channels")),
    *((_V4_MODEL, ("Blockwise", f)) for f in ("axis", "channels", "blocks", "storage", "bits", "scales8")),
    *((_V4_PARAMS, ("TensorData", f)) for f in ("name", "bytes", "ref")),
    *((_V4_PARAMS, ("BinRef", f)) for f in ("offset", "size")),
    (_V4_MODEL, ("Node", "params")),
    *((_V4_MODEL, ("Param", f)) for f in ("kind", "value", "tensor")),
    *((_V4_MODEL, ("Scalar", f)) for f in ("dtype", "int", "float")),
    (_V4_PARAMS, ("NodeParameters", "tensors")),
)], np.int64)
_NATIVE_KINDS = _KIND_CODES.astype(np.int32)
_NATIVE_DTYPES = _DTYPE_CODES.astype(np.uint32).view(np.int32)
_NATIVE_ITEMSIZES = _ITEMSIZES.astype(np.uint8)

#: ctxbin_dlc_v4_read's io: in, the budgets and model.params.bin's size; out,
#: the budgets left, the counts and both walks' nrows (ctxbin_core.h's CTXBIN_DLC_IO_*)
_IO_NAMES = ("BUDGET", "PARAMS_BUDGET", "BIN_SIZE", "MINOR", "NGRAPHS", "NSTATICS", "NSTR", "NPOOL", "PARAMS_NSTR",
             "PARAMS_NPOOL", "NROWS")
_IO_MINOR, _IO_NGRAPHS, _IO_NSTATICS, _IO_NROWS = map(_IO_NAMES.index, ("MINOR", "NGRAPHS", "NSTATICS", "NROWS"))
_V4_IO = struct.Struct(f"={_IO_NROWS + len(_V4_MODEL.types) + len(_V4_PARAMS.types)}q")
_V4_IO_TYPE = f"int64_t[{_V4_IO.size // 8}]"
_V4_GRAPH = struct.Struct("=12q")  # a row of ctxbin_dlc_v4_opened.graphs
#: per entry: its schema, its arrays' prefix in ctxbin_dlc_v4_opened, and where
#: its budget, nstr (then npool) and nrows are in io
_V4_IO_OF = {
    "model": (_V4_MODEL, "model", *map(_IO_NAMES.index, ("BUDGET", "NSTR")), _IO_NROWS),
    "model.params": (_V4_PARAMS, "params", *map(_IO_NAMES.index, ("PARAMS_BUDGET", "PARAMS_NSTR")),
                     _IO_NROWS + len(_V4_MODEL.types)),
}


@cache
def _native_args(core: Any) -> Any:
    """The constant part of ctxbin_dlc_v4_open's arguments (schemas, tables,
    columns, known codes), made once per C core: it is copied per call."""
    ffi = core.ffi
    keep = []  # the arrays the struct points into live as long as it
    args = ffi.new("ctxbin_dlc_v4_open_args *")
    for side, (schema, graph) in (("model", (_V4_MODEL, "Graph")), ("params", (_V4_PARAMS, "GraphParameters"))):
        fields, starts = schema.native
        keep += [ffi.from_buffer("ctxbin_fb_field[]", fields), ffi.from_buffer("uint32_t[]", starts)]
        w = getattr(args, side)
        w.fields, w.type_start, w.ntypes, w.graphs = keep[-2], keep[-1], len(schema.types), schema.index[graph]
        w.graph_cols = [1 + 2 * schema.fields[(graph, f)] for f in ("name", "tensors", "nodes")]
    args.tables = [schema.index[t] for schema, types in _NATIVE_TABLES for t in types]
    keep += [ffi.from_buffer("int64_t[]", _NATIVE_COLS), ffi.from_buffer("int32_t[]", _NATIVE_KINDS),
             ffi.from_buffer("int32_t[]", _NATIVE_DTYPES), ffi.from_buffer("uint8_t[]", _NATIVE_ITEMSIZES)]
    args.cols, args.kinds, args.dtypes, args.itemsizes = keep[-4:]
    args.nkinds, args.ndtypes = _NATIVE_KINDS.size, _NATIVE_DTYPES.size
    return args, keep


def _v4_native(core: Any, doc: _Doc) -> _V4Native | None:
    """The CRCs, prefixes and identifiers of ``model`` and ``model.params``,
    both walks and every check of every graph in one C core call; None when
    anything fails or is unusual (the Python reads then decide, and name any
    error in the order they meet it)."""
    zf = doc.zf
    model, params = zf.stored("model"), zf.stored("model.params")
    if model is None or params is None:
        return None
    bin_size = -1  # the weights are not touched: a deflated model.params.bin is for the Python reads to inflate
    if "model.params.bin" in zf:
        e = zf.entry("model.params.bin")
        if e.method != STORED:
            return None
        bin_size = e.size
    ffi, lib = core.ffi, core.lib
    # BUDGET, PARAMS_BUDGET (what FlatBuffer gives each flatbuffer by default), BIN_SIZE
    io = ffi.new(_V4_IO_TYPE, [WORK_PER_BYTE * (len(model) - _PREFIX) + WORK_FLOOR,
                               WORK_PER_BYTE * (len(params) - _PREFIX) + WORK_FLOOR, bin_size])
    out = ffi.new("ctxbin_dlc_v4_opened *")
    st = lib.ctxbin_dlc_v4_read(_native_args(core)[0], ffi.from_buffer(model), len(model), zf.entry("model").crc,
                                ffi.from_buffer(params), len(params), zf.entry("model.params").crc, io, out)
    if st == lib.CTXBIN_ERANGE:
        return None
    check_status(st)
    return _V4Native(doc, core, ffi.gc(out, lib.ctxbin_dlc_v4_release), _V4_IO.unpack_from(ffi.buffer(io)), model)


class _V4Native:
    """What ctxbin_dlc_v4_read found in a file, owned: ``ranges``, per graph
    the ranges of its rows (Tensor, TensorData, Node, NodeParameters: 8
    bounds), its input and output counts and its name's span; ``names``; and
    over all Tensor rows and statics ``static_of``, ``quant``, ``io`` (every
    graph's input rows then output rows) and ``where``. Opening a file reads
    only the graph names and counts: the walks (:class:`NativeWalk`, each
    taking its arrays from ``opened``), the tensor tables and the Tensor and
    Node objects made from them come on first use."""

    def __init__(self, doc: _Doc, core: Any, opened: Any, io: tuple[int, ...], model: memoryview) -> None:
        """``opened``: the C call's arrays (``ctxbin_dlc_v4_opened``), ``io``
        its counts, ``model``: the model entry."""
        self.doc, self._core, self._opened, self._io = doc, core, opened, io
        self.minor, ng = io[_IO_MINOR], io[_IO_NGRAPHS]
        self.ranges = list(_V4_GRAPH.iter_unpack(core.ffi.buffer(opened.graphs, _V4_GRAPH.size * ng)))
        # the C open checked the names' UTF-8
        self.names = [str(model[_PREFIX + r[10] : _PREFIX + r[10] + r[11]], "utf-8") for r in self.ranges]
        self._at = 10 * ng  # where the per-row results start in checked
        self.nt = io[_IO_NROWS + _TENSOR_TYPE]
        self._data: _V4Data | None = None

    def _take(self, field: str) -> Any:
        """Array ``field`` of the C call's, handed over: the caller frees it."""
        opened = self._opened
        p = getattr(opened, field)
        setattr(opened, field, self._core.ffi.NULL)
        return p

    def _walk(self, entry: str) -> NativeWalk:
        """The walk of ``entry`` (``model`` or ``model.params``), owning its arrays from now on."""
        zf, io = self.doc.zf, self._io
        schema, side, budget, nstr, nrows = _V4_IO_OF[entry]
        fb = FlatBuffer(zf.stored(entry), start=_PREFIX, path=self.doc.path, what=entry,
                        base=zf.entry(entry).data_offset + _PREFIX, budget=io[budget])
        cells, spans, pool = (self._take(f"{side}_{k}") for k in ("cells", "spans", "pool"))
        return NativeWalk(self._core, fb, schema, cells, io[nrows : nrows + len(schema.types)], spans, io[nstr], pool,
                          io[nstr + 1])

    @cached_property
    def model(self) -> NativeWalk:
        return self._walk("model")

    @cached_property
    def params(self) -> NativeWalk:
        return self._walk("model.params")

    @cached_property
    def _quant(self) -> Callable[[], _V4Quant]:
        return _Once(partial(_V4Quant, self.model.walk()))

    @cached_property
    def checked(self) -> np.ndarray:
        io, ffi = self._io, self._core.ffi
        size = 8 * (10 * io[_IO_NGRAPHS] + 3 * self.nt + 4 * io[_IO_NSTATICS])
        return np.frombuffer(ffi.buffer(ffi.gc(self._take("checked"), self._core.lib.ctxbin_free), size), np.int64)

    def _per_row(self, k: int) -> np.ndarray:
        """The k-th of the results with one value per Tensor row."""
        at = self._at + k * self.nt
        return self.checked[at : at + self.nt]

    @property
    def static_of(self) -> np.ndarray:
        return self._per_row(0)

    @property
    def quant(self) -> np.ndarray:
        return self._per_row(1)

    @property
    def io(self) -> np.ndarray:
        return self._per_row(2)

    @property
    def where(self) -> np.ndarray:
        return self.checked[self._at + 3 * self.nt :].reshape(-1, 4)

    def data(self) -> _V4Data:
        if self._data is None:
            self._data = _V4Data(self.doc, self.params.walk(), self.doc.weights_entry("model.params.bin"))
        return self._data

    def graph(self, gi: int) -> Graph:
        """Graph ``gi``: its name now, everything else on first use."""
        _, n, _, _, _, nn, _, _, nin, nout, _, _ = self.ranges[gi]
        parts = _V4Graph(self, gi, self.names[gi])
        return Graph(
            name=parts.name,
            inputs=LazyTuple(nin, parts.inputs),
            outputs=LazyTuple(nout, parts.outputs),
            nodes=LazyTuple(nn, parts.nodes),
            tensors=LazyTable(_Rows(n, parts.names), parts.tensor, f"tensor table of {parts.name!r}"),  # type: ignore[arg-type]
        )

    def tensors(self, gi: int, name: str) -> _V4Tensors:
        """Graph ``gi``'s tensor table, the C core's check results attached."""
        lo, n = self.ranges[gi][:2]
        cols = _V4Tensors(self.model.walk(), np.arange(lo, lo + n), self.doc, name, self._quant,
                          (self.static_of[lo : lo + n], self.quant[lo : lo + n]))
        cols.data, cols.where = self.data(), self.where
        return cols


class _V4Graph:
    """What graph ``gi`` of ``opened`` makes on first use: its tensor table,
    the Tensors of its inputs and outputs, its Nodes."""

    __slots__ = ("opened", "gi", "name", "_table")

    def __init__(self, opened: _V4Native, gi: int, name: str) -> None:
        self.opened, self.gi, self.name = opened, gi, name
        self._table: _V4Tensors | None = None

    def table(self) -> _V4Tensors:
        if self._table is None:
            self._table = self.opened.tensors(self.gi, self.name)
        return self._table

    def names(self) -> list[str]:
        return self.table().names

    def tensor(self, row: int) -> Tensor:
        return self.table().tensor(row)

    def _io(self, outputs: bool) -> list[Tensor]:
        ranges = self.opened.ranges
        at = sum([r[8] + r[9] for r in ranges[: self.gi]])  # where the graph's input and output rows start
        nin, nout = ranges[self.gi][8:10]
        at, n = (at + nin, nout) if outputs else (at, nin)
        return list(map(self.table().tensor, self.opened.io[at : at + n].tolist()))

    def inputs(self) -> list[Tensor]:
        return self._io(False)

    def outputs(self) -> list[Tensor]:
        return self._io(True)

    def nodes(self) -> list[Node]:
        o = self.opened
        r = o.ranges[self.gi]
        return _v4_nodes(o.model.walk(), self.gi, (r[6], r[7]), o.doc, self.name, o.data())


def _scalar_dtype(value: bool | int | float | str) -> DType | None:
    """The QNN type a plain Python scalar parameter is written as (None: too big)."""
    if isinstance(value, bool):
        return DType.BOOL8
    if isinstance(value, str):
        return DType.STRING
    if isinstance(value, float):
        return DType.FLOAT32
    if 0 <= value < 1 << 32:
        return DType.UINT32
    if -(1 << 31) <= value < 0:
        return DType.INT32
    return DType.INT64 if -(1 << 63) <= value < 1 << 63 else None


def _v4_scalar(code: int, raw: int, real: float, text: str, fail: Callable[[str], FormatError]) -> AttrValue:
    """A scalar parameter (its ``Scalar`` fields): a plain Python value when its
    QNN type is the one :func:`_scalar_dtype` gives that value back, else a 0-d
    numpy array of its type (``Gather.axis`` is int32), so a rewrite keeps every type."""
    cls = code >> 8
    value: bool | int | float | str
    if code == DType.STRING:
        return text
    if code == DType.BOOL8:
        value = bool(raw)
    elif cls in (0, 3):  # signed ints, signed fixed point
        value = raw
    elif cls in (1, 4):  # unsigned: the same 8 bytes read as u64
        value = raw & 0xFFFFFFFFFFFFFFFF
    elif cls == 2:
        value = real
    else:
        raise fail(f"scalar parameter of unknown data type 0x{code & 0xFFFFFFFF:04x}")
    try:
        dtype = DType(code)
        if _scalar_dtype(value) == dtype:
            return value
        return np.array(value, dtype.numpy)
    except (ValueError, TypeError, OverflowError):
        raise fail(f"scalar parameter {value!r} cannot be held as data type 0x{code & 0xFFFFFFFF:04x}") from None


def _v4_nodes(w: Walk, gi: int, node_params: tuple[int, int], doc: _Doc, graph: str, data: _V4Data) -> list[Node]:
    """Every node of graph ``gi``, decoded column-wise from the walk of
    ``model``: at open when the C core is not used (a bad table raises
    FormatError then), else on first access of ``Graph.nodes`` (the C core
    checked everything this decodes)."""
    first, count = (int(c[gi]) for c in w.column("Graph", "nodes"))
    rows = np.arange(max(first, 0), max(first, 0) + count)
    names = w.texts("Node", "name", rows)
    types = w.texts("Node", "type", rows)

    def lists(field: str) -> list[tuple[str, ...]]:
        at, n = (c[rows] for c in w.column("Node", field))
        hi = int((at + n).max()) if rows.size else 0
        lo = int(at[at >= 0].min()) if (at >= 0).any() else hi
        s = w.strings(lo, hi)
        return [tuple(s[a - lo : a - lo + k]) if a >= 0 else () for a, k in zip(at.tolist(), n.tolist())]

    ins, outs = lists("inputs"), lists("outputs")
    pf, pc = (c[rows] for c in w.column("Node", "params"))
    prow = _ranges(np.where(pf >= 0, pf, 0), pc)
    p_ends = np.cumsum(pc)
    owner = np.repeat(np.arange(rows.size), pc)  # node of each param
    keys = w.texts("Param", "name", prow)
    kinds = w.scalars("Param", "kind")[prow]
    ppos = w.pos("Param")[prow]

    def where(j: int) -> str:
        return f"{graph}/{names[int(owner[j])]}.{keys[j]}"

    j = _first((kinds != 0) & (kinds != 1))
    if j is not None:
        raise w.fb.error(f"parameter kind {int(kinds[j])} is unknown (0 scalar, 1 tensor)", where(j), int(ppos[j]))
    values: list[AttrValue | None] = [None] * len(keys)
    for kind, field, what in ((0, "value", "a value"), (1, "tensor", "a tensor")):
        sel = np.flatnonzero(kinds == kind)
        at = w.column("Param", field)[0][prow[sel]]
        j = _first(at < 0)
        if j is not None:
            p = int(sel[j])
            raise w.fb.error(f"{'scalar' if kind == 0 else 'tensor'} parameter without {what}", where(p), int(ppos[p]))
        if kind == 0:
            cols = zip(w.scalars("Scalar", "dtype", _QNN_UNDEFINED)[at].tolist(), w.scalars("Scalar", "int")[at].tolist(),
                       w.scalars("Scalar", "float")[at].tolist(), w.texts("Scalar", "string", at), sel.tolist(),
                       w.pos("Scalar")[at].tolist())
            for code, raw, real, text, p, pos in cols:
                values[p] = _v4_scalar(code, raw, real, text, lambda msg, p=p, pos=pos: w.fb.error(msg, where(p), pos))
            continue
        if not sel.size:
            continue
        # tensor params: static tensors whose data is in the node's NodeParameters, by name
        t = _V4Tensors(w, at, doc, graph, _Once(partial(_V4Quant, w)))
        pw = data.params
        np_first, np_count = node_params
        td_first, td_count = (c[np_first : np_first + np_count] for c in pw.column("NodeParameters", "tensors"))
        td_rows = _ranges(np.where(td_first >= 0, td_first, 0), td_count)
        td_owner = np.repeat(np.arange(np_count), td_count).tolist()
        td_names = pw.texts("TensorData", "name", td_rows)
        per_node: list[dict[str, int]] = [{} for _ in range(np_count)]
        for k, (n, name, r) in enumerate(zip(td_owner, td_names, td_rows.tolist())):
            if name in per_node[n]:
                raise pw.fb.error(f"duplicate tensor data {name!r}", f"{graph}.node_params.tensors[{k}]",
                                  int(pw.pos("TensorData")[r]))
            per_node[n][name] = r
        j = _first(t.kinds_np != int(TensorKind.STATIC))
        if j is not None:
            raise t.error("tensor parameter is not static", j)
        own = owner[sel].tolist()
        t.attach(np.array([per_node[own[r]].get(t.names[r], -1) if own[r] < np_count else -1
                           for r in range(sel.size)], np.int64), data)
        for r, p in enumerate(sel.tolist()):
            values[p] = t.tensor(r).numpy()
    out = []
    p_start = 0
    for i, (name, op) in enumerate(zip(names, types)):
        p_end = int(p_ends[i])
        attrs: dict[str, AttrValue] = {}
        package = ""
        for key, value in zip(keys[p_start:p_end], values[p_start:p_end]):
            if key == "packageName" and isinstance(value, str):
                package = value
            else:
                attrs[key] = value  # type: ignore[assignment]
        out.append(Node(name, op, NAMESPACE_V4, ins[i], outs[i], attrs, package))
        p_start = p_end
    return out


# --------------------------------------------------------------------------- v3
class _V3:
    M_NODES, M_ATTRS = 1, 4
    N_NAME, N_TYPE, N_INPUTS, N_OUTPUTS, N_ATTRS = 1, 2, 3, 4, 5
    A_NAME, A_TYPE = 0, 1
    P_NODES = 0
    PN_NAME, PN_WEIGHTS = 0, 1
    W_NAME, W_DIMS, W_DATA, W_ATTRS = 0, 1, 2, 3
    D_DTYPE, D_BYTES, D_FLOATS = 0, 1, 2


# attribute type -> how to read its value, which sits in field (type + 1)
_V3_VALUES: dict[int, str] = {1: "?", 2: "i", 3: "I", 4: "f", 5: "str", 7: "<i1", 8: "<i4", 9: "<f4", 11: "nested"}
# weight element codes seen in v3 params (Netron agrees: 6 uint8, 9 float32)
_V3_WEIGHT_TYPES = {6: DType.UINT8, 9: DType.FLOAT32}
# real files nest 3 deep (BufferInfos -> tensor -> fields; FxpData -> output -> fields)
_V3_MAX_DEPTH = 4
_V3_DATA_SIZE = {8: DType.UINT8, 16: DType.UINT16, 32: DType.FLOAT32}


def _v3_value(a: Table, obj: str, depth: int = 0) -> AttrValue:
    code = a.scalar(_V3.A_TYPE, "B")
    how = _V3_VALUES.get(code)
    field = code + 1
    if how is None:
        raise a.fb.error(f"attribute type {code} is not decoded by ctxbin", obj, a.pos)
    if how == "str":
        return a.string(field, obj=obj)
    if how == "nested":
        if depth >= _V3_MAX_DEPTH:
            raise a.fb.error(f"attributes nested deeper than {_V3_MAX_DEPTH}", obj, a.pos)
        return tuple(_v3_attrs(a.tables(field, obj), obj, depth + 1).items())
    if how.startswith("<"):
        return tuple(a.array(field, how, obj).tolist())
    value = a.scalar(field, how)
    if how == "?":
        return bool(value)
    return float(value) if how == "f" else value


def _v3_attrs(tables: Iterable[Table], obj: str, depth: int = 0) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for a in tables:
        key = a.string(_V3.A_NAME, obj=a.obj)
        out[key] = _v3_value(a, f"{obj}.{key}", depth)
    return out


def _nested(value: AttrValue | None) -> dict[str, AttrValue]:
    """The fields of a nested attribute; {} when ``value`` is something else
    (a number array is a tuple too, and a hostile file may put any type anywhere)."""
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value):
        return dict(value)
    return {}


def _dims(value: AttrValue | None) -> tuple[int, ...]:
    """A shape attribute, or () when it is not a tuple of non-negative ints."""
    if isinstance(value, tuple) and all(isinstance(d, int) and d >= 0 for d in value):
        return value  # type: ignore[return-value]
    return ()


def _v3_encoding(fxp: AttrValue, obj: str, doc: _Doc) -> QuantEncoding:
    f = _nested(fxp)
    try:
        delta, offset, precision = f["delta"], f.get("offset", 0.0), f["precision"]
    except KeyError as e:
        raise FormatError(f"FxpData lacks {e.args[0]!r}", path=doc.path, obj=obj) from None
    if not isinstance(delta, float) or not isinstance(offset, float) or not isinstance(precision, int):
        raise FormatError("FxpData fields have unexpected types", path=doc.path, obj=obj)
    return QuantEncoding(QuantKind.SCALE_OFFSET, (delta,), (int(round(offset)),), None, precision & 0xFF)


def _per_output(value: AttrValue | None, i: int) -> AttrValue | None:
    """``FxpData``/``OutputDims`` hold one nested attribute per output, named "0", "1", ..."""
    return _nested(value).get(str(i))


def _read_v3(doc: _Doc, model: memoryview) -> list[Graph]:
    root = _flatbuffer(doc, "model", model, b"NETD").root(obj="model")
    buffer_info = _v3_attrs(root.tables(_V3.M_ATTRS, "model.attributes"), "model").get("BufferInfos", ())
    infos = {k: _nested(v) for k, v in _nested(buffer_info).items()}
    weights = _v3_weights(doc) if "model.params" in doc.zf else {}
    tensors: dict[str, Tensor] = {}
    nodes: list[Node] = []
    for n in root.tables(_V3.M_NODES, "model.nodes"):
        name = n.string(_V3.N_NAME, obj=n.obj)
        op = n.string(_V3.N_TYPE, obj=name)
        attrs = _v3_attrs(n.tables(_V3.N_ATTRS, f"{name}.attributes"), name)
        fxp, dims = attrs.pop("FxpData", None), attrs.pop("OutputDims", None)
        outputs = tuple(n.strings(_V3.N_OUTPUTS, f"{name}.outputs"))
        for i, out in enumerate(outputs):
            enc_attr = _per_output(fxp, i)
            enc = _v3_encoding(enc_attr, f"{name}.FxpData", doc) if isinstance(enc_attr, tuple) else None
            shape = _per_output(dims, i) or infos.get(out, {}).get("dims", ())
            size = infos.get(out, {}).get("data_size", 32)
            dtype = DType(0x0400 | enc.bitwidth) if enc and enc.bitwidth in (8, 16) else _V3_DATA_SIZE.get(size, DType.FLOAT32)  # type: ignore[arg-type]
            kind = TensorKind.INPUT if op == "Input" else TensorKind.NATIVE
            tensors[out] = Tensor(out, dtype, _dims(shape), kind, enc)
        inputs = [i for i in n.strings(_V3.N_INPUTS, f"{name}.inputs") if not (op == "Input" and i in outputs)]
        for w in weights.pop(name, ()):
            tensors[w.name] = w
            inputs.append(w.name)
        nodes.append(Node(name, op, NAMESPACE_V3, tuple(inputs), outputs, attrs))
    if weights:
        raise FormatError(f"weights for layers the model lacks: {sorted(weights)[:5]}", path=doc.path, obj="model.params")
    consumed = {i for node in nodes for i in node.inputs}
    for t in list(tensors.values()):  # graph outputs: produced, never consumed
        if t.kind == TensorKind.NATIVE and t.data is None and t.name not in consumed:
            tensors[t.name] = Tensor(t.name, t.dtype, t.shape, TensorKind.OUTPUT, t.encoding)
    return [_graph(os.path.splitext(os.path.basename(doc.path))[0], tensors, nodes)]


def _v3_weights(doc: _Doc) -> dict[str, list[Tensor]]:
    """Layer name -> its weight tensors (named ``<layer>/<weight>``) from ``model.params``."""
    raw = doc.entry("model.params")
    major, _ = _prefix(raw, doc, "model.params")
    if major != 3:
        raise UnsupportedVersionError(f"model.params has major version {major} in a v3 DLC", path=doc.path, obj="model.params", offset=2)
    root = _flatbuffer(doc, "model.params", raw, b"NETP").root(obj="model.params")
    out: dict[str, list[Tensor]] = {}
    for np_ in root.tables(_V3.P_NODES, "model.params.nodes"):
        layer = np_.string(_V3.PN_NAME, obj=np_.obj)
        if layer in out:
            raise np_.fb.error("duplicate layer parameters", layer, np_.pos)
        out[layer] = [_v3_weight(w, doc, layer) for w in np_.tables(_V3.PN_WEIGHTS, f"{layer}.weights")]
    return out


def _v3_weight(w: Table, doc: _Doc, layer: str) -> Tensor:
    name = f"{layer}/{w.string(_V3.W_NAME, obj=w.obj)}"
    shape = tuple(int(d) for d in w.array(_V3.W_DIMS, "<u4", name))
    d = w.table(_V3.W_DATA, f"{name}.data")
    if d is None:
        raise w.fb.error("weight without data", name, w.pos)
    code = d.scalar(_V3.D_DTYPE, "B")
    if code not in _V3_WEIGHT_TYPES:
        raise d.fb.error(f"weight element type {code} is not decoded by ctxbin (known: 6 uint8, 9 float32)", name, d.pos)
    dtype = _V3_WEIGHT_TYPES[code]
    raw = d.bytes_(_V3.D_BYTES, name) if dtype == DType.UINT8 else None
    if raw is None:
        span = d.vector_span(_V3.D_FLOATS if dtype == DType.FLOAT32 else _V3.D_BYTES, dtype.itemsize, name)
        if span is None:
            raise d.fb.error("weight without bytes", name, d.pos)
        start, count = span
        raw = memoryview(d.fb.buf)[start : start + count * dtype.itemsize]
    fxp = _per_output(_v3_attrs(w.tables(_V3.W_ATTRS, f"{name}.attributes"), name).get("FxpData"), 0)
    enc = _v3_encoding(fxp, f"{name}.FxpData", doc) if isinstance(fxp, tuple) else None
    if enc is not None and dtype == DType.UINT8:
        dtype = DType.UFIXED8
    origin = doc.file_offset("model.params", d.pos + _PREFIX)
    blob = Blob(raw, origin=(doc.path, name, origin if origin is not None else d.pos))
    tensor = Tensor(name, dtype, shape, TensorKind.STATIC, enc, blob)
    _check_size(shape, dtype, blob, doc.path, name)
    return tensor


# --------------------------------------------------------------------------- v4 writer
#: Container metadata key holding the DLC's generation history (JSON list), kept
#: by the reader so a rewrite appends its own step instead of losing the others.
HISTORY_KEY = "dlc-generation-info"

_TOOL = "ctxbin"
_PARAMS_BIN = "model.params.bin"
_META_ENTRY = "dlc.metadata2.3.0"
_HISTORY_ENTRY = "dlc.metadata.history.2.3.0"
_V4_VERSION = (4, 1)  # what QNN 2.51 writes
_META_VERSION = {"major": 2, "minor": 3, "patch": 0}
_META_HEADER_VERSION = {"major": 0, "minor": 1, "patch": 0}
_EPOCH = "1970-01-01 00:00:00 UTC"  # written when the source has no timestamp: same input, same bytes
_PACKAGE = "qti.aisw"
_ALIGN = 64  # every entry's data, and every weight in model.params.bin, starts on this boundary


def check(path: str | os.PathLike) -> list[str]:
    """Problems of the DLC at ``path`` beyond what opening checks: every
    entry's CRC-32 (where recorded; the vendor's files record none, and
    ``model.params.bin`` is not read at open), then what :func:`read` checks
    (every table), making every node and tensor."""
    archive = ZipArchive.open(path)
    problems = []
    for name in archive.names():
        try:
            archive.read(name)
        except FormatError as e:
            problems.append(str(e))
    if problems:
        return problems
    try:
        for g in read(path).graphs:
            list(g.nodes)
            list(g.tensors.values())
    except FormatError as e:
        problems.append(str(e))
    return problems


def write(
    container: Container,
    path: str | os.PathLike,
    *,
    graphs: Sequence[str] | None = None,
    share: str = "name+content",
    durable: bool = True,
) -> None:
    """Write the qnn-namespace graphs of ``container`` (all, or those named in
    ``graphs``, in that order) as one DLC v4 file at ``path``.

    Weights equal by ``share`` (a :data:`ctxbin.dedup.MODES` mode: name and
    content by default) are stored once in ``model.params.bin`` and referenced
    by every graph that uses them. The file is written atomically, weights are
    streamed blob by blob from their mappings, and the same input always gives
    the same bytes (fixed ZIP timestamps; metadata timestamps come from the
    source). ONNX-namespace graphs must be lowered to QNN ops first
    (:func:`ctxbin.convert.convert`); v3 (SNPE layer) graphs cannot be written.
    ``durable=False`` skips the fsyncs (the rename stays atomic).
    Every CRC-32 is computed from the bytes written, except when the weights
    entry is a verbatim copy of a source DLC's that records one: that one is
    carried over (no weight is read again, and damage the source has taken
    since it was written stays detectable).
    """
    out = os.fspath(path)
    chosen = list(container.graphs) if graphs is None else [container.graph(n) for n in graphs]
    names = [g.name for g in chosen]
    if not chosen:
        raise FormatError("no graphs to write", path=out)
    if len(set(names)) != len(names):
        raise FormatError(f"graph names must be unique in a DLC, got {names}", path=out)
    plans = [_plan_graph(g, out) for g in chosen]
    statics = [s for p in plans for s in p.statics]
    weights = _layout(statics, share)
    meta, history = _metadata_entries(container.metadata, names)
    # The weights are copied (kernel, on a worker, no GIL) while this thread
    # builds the flatbuffers (Python), then takes their CRC-32 (recorded by
    # the source, or read by the C core without the GIL); the CRC goes into
    # the local header afterwards. The copy is prepared here (blobs verified,
    # sources opened, the header flushed), so the worker starts with the
    # copy itself instead of waiting for the GIL while this thread runs.
    # The worker ends before the sources and the file close.
    with atomic_write(out, fsync=durable) as f, weights.copy() as blobs, ThreadPoolExecutor(1) as pool:
        z = _ZipWriter(f)
        z.begin(_PARAMS_BIN, weights.size)
        f.flush()
        copy = pool.submit(blobs.write, f)
        model, params = _model_entry(plans), _params_entry(plans, weights.offsets)
        crc = weights.crc()
        copy.result()
        z.end(crc)
        for name, data in ((_HISTORY_ENTRY, history), (_META_ENTRY, meta), ("model", model), ("model.params", params)):
            z.add(name, data)
        z.close()


@dataclass(frozen=True)
class _GraphPlan:
    """One graph as it will be written: tensor ids and types, each node's
    params sorted by name (tensor params as static tensors, scalars as their
    QNN type and plain value), and its static tensors in ``model.params``
    order (graph weights by name, then node params)."""

    graph: Graph
    tensors: tuple[tuple[Tensor, TensorKind], ...]
    ids: Mapping[str, int]
    params: tuple[tuple[tuple[str, Any], ...], ...]
    weights: tuple[Tensor, ...]
    node_weights: tuple[tuple[Tensor, ...], ...]

    @property
    def statics(self) -> list[Tensor]:
        return [*self.weights, *(t for ts in self.node_weights for t in ts)]


def _plan_graph(g: Graph, path: str) -> _GraphPlan:
    foreign = sorted({n.namespace for n in g.nodes if n.namespace != NAMESPACE_V4})
    if NAMESPACE_V3 in foreign:
        raise FormatError(
            "holds SNPE layers (a v3 DLC graph); ctxbin writes DLC v4, whose nodes are QNN ops, "
            "and does not translate SNPE layers", path=path, obj=f"graph {g.name!r}",
        )
    if foreign:
        ops = sorted({n.op_type for n in g.nodes if n.namespace != NAMESPACE_V4})
        raise FormatError(
            f"holds {'/'.join(foreign)}-namespace nodes ({', '.join(ops[:8])}); a DLC holds QNN ops: "
            "convert the graph first (ctxbin convert, or ctxbin.convert.convert)",
            path=path, obj=f"graph {g.name!r}",
        )
    inputs = {t.name for t in g.inputs}
    outputs = {t.name for t in g.outputs}
    tensors = []
    for t in g.tensors.values():
        _check_writable(t, g.name, path)
        if t.data is not None:
            kind = TensorKind.STATIC
        elif t.kind == TensorKind.STATIC:
            raise FormatError("static tensor without data", path=path, obj=f"{g.name}/{t.name}")
        else:
            kind = TensorKind.INPUT if t.name in inputs else TensorKind.OUTPUT if t.name in outputs else t.kind
        tensors.append((t, kind))
    taken = set(g.tensors)
    used = [t.name for t in (*g.inputs, *g.outputs)]
    for n in g.nodes:
        used += n.inputs
        used += n.outputs
    missing = set(used).difference(taken, ("",))  # "" = an optional input left out
    if missing:
        raise FormatError(f"names tensors missing from the graph's tensor table: {sorted(missing)[:8]}",
                          path=path, obj=f"graph {g.name!r}")
    params, node_weights = [], []
    for n in g.nodes:
        items, weights = _node_params(n, g.name, taken, path)
        params.append(items)
        node_weights.append(weights)
    ids: dict[str, int] = {}
    for t in (*(t for t, _ in tensors), *(w for ws in node_weights for w in ws)):
        ids[t.name] = len(ids) + 1
    return _GraphPlan(
        g, tuple(tensors), ids, tuple(params),
        tuple(sorted((t for t, k in tensors if k == TensorKind.STATIC), key=lambda t: t.name)),
        tuple(node_weights),
    )


#: encodings the writer stores (the BW kinds: the same tables, their bitwidth in each ScaleOffset;
#: LPBQ: its own table, docs/DLC.md)
_WRITABLE = (QuantKind.SCALE_OFFSET, QuantKind.AXIS_SCALE_OFFSET, QuantKind.BW_SCALE_OFFSET,
             QuantKind.BW_AXIS_SCALE_OFFSET, QuantKind.BLOCKWISE_EXPANSION)
_BLOCK_SCALE_MAX = 255  # LPBQ block scales are stored one per byte (storage type 0, the only one seen)


def _check_writable(t: Tensor, graph: str, path: str) -> None:
    obj = f"{graph}/{t.name}"
    if any(not isinstance(d, int) or d < 0 for d in t.shape):
        raise FormatError(f"shape {t.shape} is not static; bind symbolic dimensions first", path=path, obj=obj)
    if t.dtype == DType.UNDEFINED:
        raise FormatError("data type is undefined", path=path, obj=obj)
    enc = t.encoding
    if enc is not None and enc.kind not in _WRITABLE:
        raise FormatError(f"the DLC writer does not encode {enc.kind.name} quantization yet", path=path, obj=obj)
    if enc is not None and len(enc.scales) != len(enc.offsets):
        raise FormatError(f"{len(enc.scales)} scales but {len(enc.offsets)} offsets", path=path, obj=obj)
    if enc is not None and enc.kind == QuantKind.BLOCKWISE_EXPANSION:
        _check_lpbq(enc, t.shape, path, obj)  # type: ignore[arg-type]
    if t.data is not None:
        count = 1
        for d in t.shape:
            count *= d  # type: ignore[operator]
        if count * t.dtype.itemsize != t.data.nbytes:
            raise FormatError(f"{t.data.nbytes} data bytes for shape {t.shape} of {t.dtype.name}", path=path, obj=obj)


def _check_lpbq(enc: QuantEncoding, shape: tuple[int, ...], path: str, obj: str) -> None:
    """FormatError naming the tensor unless its LPBQ encoding fits the DLC
    table: the grid the reader expects (``axis`` in 1..rank-1 with one scale/offset per
    channel, ``axis - 1`` split into equal blocks, whole dimensions elsewhere),
    channel-major integer block scales of 0..255 and a block-scale bitwidth of
    1..8."""
    axis, rank = enc.axis, len(shape)
    if axis is None or not 1 <= axis < rank or shape[axis] != len(enc.scales) or not enc.scales:
        raise FormatError(f"LPBQ axis {axis} with {len(enc.scales)} channels does not fit shape {shape}: "
                          "a DLC holds channels along axis 1..rank-1, blocks along the axis before it",
                          path=path, obj=obj)
    size = tuple(enc.block_size)
    step = size[axis - 1] if len(size) == rank else 0
    blocks = shape[axis - 1] // step if step > 0 and shape[axis - 1] % step == 0 else 0
    if not blocks or size != _lpbq_block_size(shape, axis, step):
        raise FormatError(f"LPBQ block size {size} does not fit shape {shape}: a DLC holds equal blocks of k "
                          f"along dimension {axis - 1} (k dividing {shape[axis - 1]}), 1 along the channel axis "
                          f"{axis}, whole dimensions elsewhere", path=path, obj=obj)
    if len(enc.block_scales) != len(enc.scales) * blocks:
        raise FormatError(f"{len(enc.block_scales)} LPBQ block scales, {len(enc.scales)} channels x {blocks} "
                          f"blocks need {len(enc.scales) * blocks}", path=path, obj=obj)
    bad = [s for s in enc.block_scales if not 0 <= s <= _BLOCK_SCALE_MAX]
    if bad:
        raise FormatError(f"LPBQ block scale {bad[0]} does not fit the DLC's 8-bit block scales (0..255)",
                          path=path, obj=obj)
    if not 1 <= enc.block_scale_bitwidth <= 8:
        raise FormatError(f"LPBQ block-scale bitwidth {enc.block_scale_bitwidth} does not fit the DLC's 8-bit "
                          "block scales (1..8)", path=path, obj=obj)


def _node_params(n: Node, graph: str, taken: set[str], path: str) -> tuple[tuple[tuple[str, Any], ...], tuple[Tensor, ...]]:
    """(name, static Tensor or (DType, plain scalar)) pairs sorted by name, as
    QNN stores them, and the tensors in that order."""
    items: list[tuple[str, Any]] = [("packageName", (DType.STRING, n.domain or _PACKAGE))]
    tensors = False
    for key, value in n.attrs.items():
        if key == "packageName":
            raise FormatError("packageName belongs in Node.domain", path=path, obj=f"{graph}/{n.name}.{key}")
        if isinstance(value, np.ndarray) and value.ndim > 0:
            name = f"{n.name}_{key}"
            k = 1
            while name in taken:  # tensor params have no name in the IR: make one that is free
                name, k = f"{n.name}_{key}_{k}", k + 1
            taken.add(name)
            try:
                dtype = DType.from_numpy(value.dtype)
            except TypeError as e:
                raise FormatError(str(e), path=path, obj=f"{graph}/{n.name}.{key}") from None
            items.append((key, Tensor(name, dtype, value.shape, TensorKind.STATIC, None, Blob.from_array(value))))
            tensors = True
        else:
            try:  # here, with the parameter's name, not mid-write
                items.append((key, _scalar_value(value)))
            except TypeError as e:
                raise FormatError(str(e), path=path, obj=f"{graph}/{n.name}.{key}") from None
    items.sort(key=lambda kv: kv[0])
    return tuple(items), tuple(t for _, t in items if isinstance(t, Tensor)) if tensors else ()


def _scalar_value(value: Any) -> tuple[DType, bool | int | float | str]:
    """The QNN type and plain value of a scalar parameter (0-d arrays keep
    their type); TypeError for values a DLC cannot hold."""
    if isinstance(value, np.ndarray):
        return DType.from_numpy(value.dtype), value.item()
    if isinstance(value, (bool, int, float, str)):
        dtype = _scalar_dtype(value)
        if dtype is not None:
            return dtype, value
    raise TypeError(
        f"parameter value {value!r} ({type(value).__name__}) has no DLC form: "
        "scalars are bool/int/float/str or 0-d arrays, tensor params numpy arrays"
    )


@dataclass(frozen=True)
class _Weights:
    """``model.params.bin`` as planned: each static tensor's offset (shared
    ones once), the (offset, blob) runs to copy, the entry's size, and the
    CRC-32s already known (by blob id) from the hash pass."""

    offsets: list[int]
    runs: list[tuple[int, Blob]]
    size: int
    known: Mapping[int, int]

    def copy(self) -> BlobCopy:
        """The entry's bytes, ready to append to a file: blobs mapped from a
        file are copied file to file in the kernel, runs of them laid out
        alike in one call."""
        return BlobCopy([b for _, b in self.runs], [o for o, _ in self.runs])

    def crc(self) -> int:
        """CRC-32 of the entry: the one the source records when the entry is
        a verbatim copy of a source DLC's (:func:`_recorded_crc`), else
        combined per blob. Blobs the layout did not hash are read here in one
        call of the C core (no GIL, one thread), which runs while
        :meth:`write` copies in the kernel."""
        recorded = _recorded_crc(self.runs, self.size)
        if recorded is not None:
            return recorded
        crcs = dict(self.known)
        todo = list({id(b): b for _, b in self.runs if id(b) not in crcs}.values())
        more = crc32_many([b.raw() for b in todo], release=[True] * len(todo), threads=1)
        crcs.update(zip(map(id, todo), more.tolist()))
        crc = end = 0
        for off, blob in self.runs:
            crc = crc32_combine(crc32(bytes(off - end), crc), crcs[id(blob)], blob.nbytes)
            end = off + blob.nbytes
        return crc


_SMALL_BLOB = 1 << 16  # in-memory blobs up to this size may be compared with a source's bytes


def _recorded_crc(runs: list[tuple[int, Blob]], size: int) -> int | None:
    """The CRC-32 the source archive records for the entry being written, when
    the entry is a verbatim copy of a stored source entry: every blob mapped
    from the source sits at its source position, the few small ones in
    memory (tensor params) hold the source's bytes there, the gaps are zero:
    e.g. a DLC rewritten with its weights unchanged. The archive is parsed
    from the blobs' own mapping, so the recorded value and the bytes belong
    to one file. Carrying it instead of reading every weight again also keeps
    damage the source has since taken detectable in the copy. None when the
    source records no CRC (QNN writes 0), is no ZIP archive, or differs."""
    first = next((b for _, b in runs if b.file is not None), None)
    if first is None:
        return None
    source = first.raw().obj  # the source file, mapped from byte 0
    try:
        entries = ZipArchive(source, path=first.file).entries
    except FormatError:
        return None
    base = first.offset - next(o for o, b in runs if b is first)
    entry = next((e for e in entries if e.method == 0 and e.data_offset == base and e.size == size and e.crc), None)
    if entry is None:
        return None
    src = memoryview(source).cast("B")[base : base + size]
    end = 0
    for off, blob in runs:
        if blob.file is not None:
            same = blob.offset == base + off and blob.raw().obj is source
        else:  # compared byte for byte: only small ones, larger ones are changed weights
            same = blob.nbytes <= _SMALL_BLOB and blob.raw() == src[off : off + blob.nbytes]
        if not same or any(src[end:off]):
            return None
        end = off + blob.nbytes
    return None if any(src[end:]) else entry.crc


def _layout(statics: list[Tensor], share: str) -> _Weights:
    """Where every static tensor goes in ``model.params.bin``. Only blobs that
    could be shared (another static tensor with the same length, and name for
    ``name+content``) or carry a recorded hash to check are hashed (XXH3 and
    CRC-32 in one pass, pages of mapped files dropped behind); the others are
    left to :meth:`_Weights.crc`."""
    from ..dedup import plan

    def key(t: Tensor) -> Any:
        return t.nbytes if share == "content" else (t.name, t.nbytes)

    count: dict[Any, int] = {}
    if share != "none":
        for t in statics:
            count[key(t)] = count.get(key(t), 0) + 1
    sharable = [i for i, t in enumerate(statics) if count.get(key(t), 0) > 1]
    blobs: dict[int, Blob] = {}  # the same blob may serve several tensors: read it once
    for i in sharable:
        blobs.setdefault(id(statics[i].data), statics[i].data)  # type: ignore[arg-type]
    for t in statics:
        assert t.data is not None
        if t.data.expected_hash is not None:
            blobs.setdefault(id(t.data), t.data)
    unique = list(blobs.values())
    views = [b.raw() for b in unique]
    hashes, crcs = hash_and_crc(views, release=[True] * len(views))
    for blob, h in zip(unique, hashes.tolist()):
        blob.set_hash(h)  # checks a recorded hash, as reading the bytes would
    at = {k: i for i, k in enumerate(blobs)}
    index = [at[id(statics[i].data)] for i in sharable]
    sub = plan([statics[i].name for i in sharable], [views[i] for i in index], hashes[index], mode=share)
    canon = list(range(len(statics)))
    for i, c in zip(sharable, sub.tolist()):
        canon[i] = sharable[c]
    offsets = [0] * len(statics)
    runs: list[tuple[int, Blob]] = []
    end = 0
    for i, c in enumerate(canon):
        if c != i:
            offsets[i] = offsets[c]
            continue
        blob = statics[i].data
        assert blob is not None
        end += -end % _ALIGN
        offsets[i] = end
        runs.append((end, blob))
        end += blob.nbytes
    return _Weights(offsets, runs, end, {k: int(c) for k, c in zip(blobs, crcs.tolist())})


def _prefixed(flatbuffer: bytes) -> bytes:
    major, minor = _V4_VERSION
    return _MAGIC + major.to_bytes(2, "little") + minor.to_bytes(2, "little") + bytes(2) + flatbuffer


# Tables as QNN writes them, fields in the order they are written (docs/DLC.md).
_SCALE_OFFSET = Layout((_V4.SO_BITWIDTH, "i"), (_V4.SO_SCALE, "f"), (_V4.SO_OFFSET, "i"), (_V4.SO_SYMMETRIC, "B"))
_AXIS = Layout((_V4.AX_AXIS, "i"), (_V4.AX_LIST, REF))
_QUANT = Layout((_V4.Q_ENCODING, "i"), (_V4.Q_DEFINED, "B"), (_V4.Q_SCALE_OFFSET, REF), (_V4.Q_AXIS, REF))
# LPBQ as QNN lays it out (its own field order; the storage-type field, 3, left out = 8-bit)
_QUANT_BLOCKWISE = Layout((_V4.Q_BLOCKWISE, REF), (_V4.Q_ENCODING, "i"), (_V4.Q_DEFINED, "B"))
_BLOCKWISE = Layout((_V4.BX_SCALES8, REF), (_V4.BX_BLOCKS, "i"), (_V4.BX_CHANNELS, REF), (_V4.BX_AXIS, "i"),
                    (_V4.BX_BITS, "B"))
_TENSOR = Layout(
    (_V4.T_ID, "I"), (_V4.T_NAME, REF), (_V4.T_TYPE, "i"), (_V4.T_DIMS, REF), (_V4.T_UNK4, "i"), (_V4.T_QUANT, REF),
    (_V4.T_DTYPE, "i"), (_V4.T_DTYPE2, "i"), (_V4.T_UNK8, "B"), (_V4.T_UNK12, "i"), (_V4.T_DYNAMIC, REF),
)
# one of string, double, unsigned or signed 64-bit value is given
_VALUE = Layout((_V4.V_DTYPE, "i"), (_V4.V_STRING, REF), (_V4.V_FLOAT, "d"), (_V4.V_INT, "Q"), (_V4.V_INT, "q"))
_ATTR = Layout((_V4.A_NAME, REF), (_V4.A_KIND, "i"), (_V4.A_FLAG, "B"), (_V4.A_VALUE, REF), (_V4.A_TENSOR, REF))
_NODE = Layout((_V4.N_NAME, REF), (_V4.N_TYPE, REF), (_V4.N_INPUTS, REF), (_V4.N_OUTPUTS, REF), (_V4.N_ATTRS, REF))
_GRAPH = Layout((_V4.G_NAME, REF), (_V4.G_NODES, REF), (_V4.G_TENSORS, REF), (_V4.G_NAME2, REF))
_MODEL = Layout((_V4.GRAPHS, REF))
_DATA_REF = Layout((_V4.REF_OFFSET, "Q"), (_V4.REF_SIZE, "Q"))
_TENSOR_DATA = Layout((_V4.TD_NAME, REF), (_V4.TD_REF, REF))
_NODE_PARAMS = Layout((_V4.PN_TENSORS, REF))
_GRAPH_PARAMS = Layout((_V4.PG_NAME, REF), (_V4.PG_TENSORS, REF), (_V4.PG_NODES, REF))
_PARAMS = Layout((_V4.P_GRAPHS, REF))


def _fb_quant(b: Builder, enc: QuantEncoding | None) -> int:
    if enc is None:
        return b.table(_QUANT, (QuantKind.NONE, None, None, None))
    bits, sym = enc.bitwidth, int(enc.is_symmetric)
    chans = [b.table(_SCALE_OFFSET, (bits, s, o, sym)) for s, o in zip(enc.scales, enc.offsets)]
    if enc.kind in (QuantKind.SCALE_OFFSET, QuantKind.BW_SCALE_OFFSET):
        return b.table(_QUANT, (enc.kind, 1, chans[0], None))
    if enc.kind == QuantKind.BLOCKWISE_EXPANSION:  # checked writable: channel-major, 8-bit block scales
        scales = b.byte_vector(bytes(enc.block_scales))
        blocks = len(enc.block_scales) // len(chans)
        table = b.table(_BLOCKWISE, (scales, blocks, b.refs(chans), enc.axis, enc.block_scale_bitwidth))
        return b.table(_QUANT_BLOCKWISE, (table, enc.kind, 1))
    axis = b.table(_AXIS, (enc.axis or 0, b.refs(chans)))
    return b.table(_QUANT, (enc.kind, 1, None, axis))


def _fb_tensor(b: Builder, t: Tensor, kind: TensorKind, tid: int) -> int:
    name = b.string(t.name)
    dims = b.vector(t.shape, np.uint32)
    quant = _fb_quant(b, t.encoding)
    dynamic = b.byte_vector(b"")
    dtype = t.dtype
    # QNN sets T_UNK8 on float32 and fixed-point tensors only (meaning unknown; docs/DLC.md)
    flag = int(dtype == DType.FLOAT32 or dtype.is_quantized)
    return b.table(_TENSOR, (tid, name, kind, dims, -1, quant, dtype, dtype, flag, -1, dynamic))


def _fb_scalar(b: Builder, dtype: DType, value: bool | int | float | str) -> int:
    cls = dtype >> 8
    if dtype == DType.STRING:
        return b.table(_VALUE, (dtype, b.string(value), None, None, None))  # type: ignore[arg-type]
    if cls == 2:  # floats are stored as doubles holding the value of their own type
        return b.table(_VALUE, (dtype, None, float(np.array(value, dtype.numpy)), None, None))
    if cls in (1, 4):
        return b.table(_VALUE, (dtype, None, None, int(value), None))
    return b.table(_VALUE, (dtype, None, None, None, int(value)))


def _fb_node(b: Builder, n: Node, params: tuple[tuple[str, Any], ...], plan: _GraphPlan) -> int:
    entries = []
    for key, value in params:
        if isinstance(value, Tensor):
            child = _fb_tensor(b, value, TensorKind.STATIC, plan.ids[value.name])
            entries.append(b.table(_ATTR, (b.string(key), 1, 1, None, child)))
        else:
            child = _fb_scalar(b, *value)
            # QNN marks string params 2 and all others 1 (meaning unknown; docs/DLC.md)
            entries.append(b.table(_ATTR, (b.string(key), 0, 2 if value[0] == DType.STRING else 1, child, None)))
    attrs = b.refs(entries)
    name, op = b.string(n.name), b.string(n.op_type)
    ins, outs = b.refs(b.strings(n.inputs)), b.refs(b.strings(n.outputs))
    return b.table(_NODE, (name, op, ins, outs, attrs))


def _model_entry(plans: list[_GraphPlan]) -> bytes:
    b = Builder()
    graphs = []
    for p in plans:
        nodes = b.refs([_fb_node(b, n, params, p) for n, params in zip(p.graph.nodes, p.params)])
        tensors = b.refs([_fb_tensor(b, t, kind, p.ids[t.name]) for t, kind in p.tensors])
        name, name2 = b.string(p.graph.name), b.string(p.graph.name)
        graphs.append(b.table(_GRAPH, (name, nodes, tensors, name2)))
    return _prefixed(b.finish(b.table(_MODEL, (b.refs(graphs),)), b"NETD"))


def _fb_tensor_data(b: Builder, name: str, offset: int, size: int) -> int:
    text = b.string(name)
    return b.table(_TENSOR_DATA, (text, b.table(_DATA_REF, (offset, size))))


def _params_entry(plans: list[_GraphPlan], offsets: list[int]) -> bytes:
    b = Builder()
    at = iter(offsets)  # offsets follow the plans' statics order
    graphs = []
    for p in plans:
        weights = b.refs([_fb_tensor_data(b, t.name, next(at), t.nbytes) for t in p.weights])
        nodes = [
            b.table(_NODE_PARAMS, (b.refs([_fb_tensor_data(b, t.name, next(at), t.nbytes) for t in ts]),))
            for ts in p.node_weights
        ]
        node_vec = b.refs(nodes)
        graphs.append(b.table(_GRAPH_PARAMS, (b.string(p.graph.name), weights, node_vec)))
    return _prefixed(b.finish(b.table(_PARAMS, (b.refs(graphs),)), b"NETP"))


def _metadata_entries(metadata: Mapping[str, str], names: list[str]) -> tuple[bytes, bytes]:
    """``dlc.metadata2.3.0`` and the history, which gets ctxbin's step appended
    to the source's steps (kept under :data:`HISTORY_KEY` by the reader)."""
    from .. import __version__

    stamp = metadata.get("timestamp") or _EPOCH
    try:
        steps = json.loads(metadata.get(HISTORY_KEY, "[]"))
    except (ValueError, RecursionError):  # not what the reader keeps there: no steps to carry over
        steps = []
    steps = [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    steps.append({"converterCommand": {
        "tool": _TOOL, "converterVersion": __version__, "args": {"graphs": ",".join(names)}, "timestamp": stamp,
    }})

    def header(kind: str) -> dict[str, Any]:
        return {"artifact_type": kind, "header_version": _META_HEADER_VERSION, "version": _META_VERSION, "timestamp": stamp}

    meta = {"header": header("DLC_METADATA")}
    history = {"header": header("DLC_METADATA_HISTORY"), "dlcGenerationInfo": steps}
    return (json.dumps(meta, indent=4, ensure_ascii=False).encode(), json.dumps(history, indent=4, ensure_ascii=False).encode())


_ZIP_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_ZIP_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP32_MAX = 0xFFFFFFFF  # a size or offset this large needs ZIP64 records
_ZIP64_MARK = 0xFFFFFFFF  # what a 32-bit field holds when its ZIP64 field has the value
_ZIP_DATE = (1 << 5) | 1  # 1980-01-01 00:00 (DOS): fixed, so the same input gives the same bytes
_ZIP_CRC_AT = 14  # where a local header holds the CRC-32
_ZIP_ALIGN_ID = 0xD935  # extra field that pads data to an alignment (as Android's zipalign writes)


class _ZipWriter:
    """Stored entries (no compression) with correct CRC-32s and fixed
    timestamps, each entry's data aligned to :data:`_ALIGN` by a padding extra
    field, ZIP64 records exactly where a size or offset needs them. An
    entry's CRC may be computed while its data is written: the local header
    gets it when the entry ends (the central directory comes last anyway)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.pos = f.tell()
        self.entries: list[tuple[bytes, int, int, int]] = []  # name, crc, size, header offset
        self.open: tuple[bytes, int, int, int] = (b"", 0, 0, 0)  # the entry begun last: name, size, header and data offsets

    def add(self, name: str, data: bytes) -> None:
        """One entry holding ``data``."""
        self.begin(name, len(data))
        self.f.write(data)
        self.end(crc32(data))

    def begin(self, name: str, size: int) -> None:
        """Start an entry of ``size`` bytes: its local header, with the CRC-32
        left for :meth:`end`; the caller appends the data."""
        raw = name.encode("utf-8")
        start = self.pos
        big = size >= _ZIP32_MAX
        z64 = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
        pad = -(start + _ZIP_LOCAL.size + len(raw) + len(z64) + 6) % _ALIGN
        extra = z64 + struct.pack("<HHH", _ZIP_ALIGN_ID, 2 + pad, _ALIGN) + bytes(pad)
        size32 = _ZIP64_MARK if big else size
        self.f.write(_ZIP_LOCAL.pack(b"PK\x03\x04", 45 if big else 20, 0, 0, 0, _ZIP_DATE, 0, size32, size32, len(raw), len(extra)))
        self.f.write(raw + extra)
        self.open = (raw, size, start, start + _ZIP_LOCAL.size + len(raw) + len(extra))

    def end(self, crc: int) -> None:
        """Finish the entry begun last, whose data has the CRC-32 ``crc``."""
        raw, size, start, begin = self.open
        end = self.f.tell()
        if end - begin != size:  # a blob changed size under us: never leave a lying header
            raise FormatError(f"wrote {end - begin} bytes where {size} were planned", obj=raw.decode())
        self.f.seek(start + _ZIP_CRC_AT)
        self.f.write(struct.pack("<I", crc))
        self.f.seek(end)
        self.pos = end
        self.entries.append((raw, crc, size, start))

    def close(self) -> None:
        cd_start = self.pos
        for raw, crc, size, offset in sorted(self.entries):
            fields = ([size, size] if size >= _ZIP32_MAX else []) + ([offset] if offset >= _ZIP32_MAX else [])
            extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
            version = 45 if fields else 20
            size32 = _ZIP64_MARK if size >= _ZIP32_MAX else size
            self.f.write(_ZIP_CENTRAL.pack(
                b"PK\x01\x02", version, version, 0, 0, 0, _ZIP_DATE, crc, size32, size32,
                len(raw), len(extra), 0, 0, 0, 0, _ZIP64_MARK if offset >= _ZIP32_MAX else offset,
            ))
            self.f.write(raw + extra)
        cd_end = self.f.tell()
        count, cd_size = len(self.entries), cd_end - cd_start
        z64 = cd_start >= _ZIP32_MAX or cd_size >= _ZIP32_MAX or count >= 0xFFFF
        if z64:
            self.f.write(_ZIP64_EOCD.pack(b"PK\x06\x06", _ZIP64_EOCD.size - 12, 45, 45, 0, 0, count, count, cd_size, cd_start))
            self.f.write(_ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, cd_end, 1))
        n16 = 0xFFFF if z64 else count
        self.f.write(_ZIP_EOCD.pack(
            b"PK\x05\x06", 0, 0, n16, n16, _ZIP64_MARK if z64 else cd_size, _ZIP64_MARK if z64 else cd_start, 0,
        ))
