"""QNN context binaries (``*.bin``), read in pure Python.

There is no public specification; the layout below is ctxbin's own reading of
files written by the QNN 2.51 HTP backend, checked field by field against what
the vendor's ``libQnnSystem.so`` reports for the same files (see
``docs/QNN_CONTEXT_BINARY.md`` and ``tests/test_qnn_read.py``)::

    0      4 x u32 big-endian   version words, e.g. (2, 3, 0, 1)
    16     u64                  size of the metadata flatbuffer
    24     u64                  offset of the backend's context blob
    32     u64                  size of the backend's context blob
    40     flatbuffer           metadata: mirrors QnnSystemContext_BinaryInfo_t
    ...    backend blob         HTP: a directory flatbuffer naming records
                                (``ROOT``, ``PICKLE/<n>/<graph>``, ``WEIGHTS/<n>``)

The metadata flatbuffer mirrors the C structures the system library returns:
versioned unions are tables holding ``(version, union type, value)``, and a
newer struct version is a table whose first field is the previous version's
table. Every offset and size is checked; malformed files raise
:class:`~ctxbin.errors.FormatError` naming the file, the object and the offset.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any, Union

from ..errors import FormatError, UnsupportedVersionError
from ..flatbuf import FlatBuffer, Table
from ..ir import BackendBinary, Container, DType, Graph, QuantEncoding, QuantKind, Target, Tensor, TensorKind
from ..weights import Blob
from .sniff import qnn as sniff

__all__ = [
    "sniff",
    "read",
    "read_info",
    "BinaryInfo",
    "GraphInfo",
    "IOTensor",
    "HtpGraphBlobInfo",
    "BlobRecord",
    "decode_htp_graph_blob",
    "map_binary",
    "graphs_of",
    "target_of",
    "BACKEND_NAMES",
    "KNOWN_VERSIONS",
]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
Version = tuple[int, int, int]

#: Version words whose layout ctxbin has checked against libQnnSystem.
KNOWN_VERSIONS: frozenset[tuple[int, int, int, int]] = frozenset({(2, 3, 0, 1)})

#: QNN backend ids (``QNN_BACKEND_ID_*``) and the names ctxbin uses for them.
BACKEND_NAMES: dict[int, str] = {
    0: "null", 2: "saver", 3: "cpu", 4: "gpu", 5: "dsp", 6: "htp", 7: "hta",
    9: "ir", 12: "lpai", 13: "htp_qemu", 14: "genai_transformer", 16: "lpai_island",
}

_HEADER = struct.Struct("<QQQ")  # after the 16 version bytes
_HEADER_SIZE = 16 + _HEADER.size
_BLOB_HEADER = 32  # HTP blob: 24 bytes, u64 directory size, then the directory
_DEFINED = 1  # QNN_DEFINITION_DEFINED
_UNDEFINED = 0x7FFFFFFF


@dataclass(frozen=True)
class IOTensor:
    """A graph input or output as the binary records it (``Qnn_Tensor_t``)."""

    id: int
    name: str
    kind: TensorKind | int
    data_format: int
    dtype: DType | int
    shape: tuple[int, ...]
    encoding: QuantEncoding | None


@dataclass(frozen=True)
class HtpGraphBlobInfo:
    """The HTP backend's per-graph info blob (``QnnHtpSystemContext_GraphBlobInfo*``).

    QNN 2.51 writes a v1 record followed by a v2 record; fields of a record
    that is absent are ``None``.
    """

    spill_fill_buffer_size: int | None = None  # v1
    vtcm_size: int | None = None  # v1
    optimization_level: int | None = None  # v1
    htp_dlbc: int | None = None  # v1
    num_hvx_threads: int | None = None  # v1
    native_k_channel_size: int | None = None  # v2
    native_v_channel_size: int | None = None  # v2
    is_safe_share_io: int | None = None  # v2
    io_tensor_size: int | None = None  # v2
    op_data_size: int | None = None  # v2
    const_size: int | None = None  # v2
    ddr_tensor_size: int | None = None  # v2
    shared_weights_size: int | None = None  # v2


@dataclass(frozen=True)
class BlobRecord:
    """One entry of the HTP blob's directory; ``offset`` is from the start of the file."""

    name: str
    offset: int
    size: int
    alignment: int


@dataclass(frozen=True)
class GraphInfo:
    name: str
    inputs: tuple[IOTensor, ...]
    outputs: tuple[IOTensor, ...]
    updateable: tuple[IOTensor, ...] = ()
    blob_info: bytes = b""  # the backend's raw per-graph info
    htp: HtpGraphBlobInfo | None = None
    blob_size: int | None = None  # size of this graph's record in the backend blob
    start_op_index: int = 0
    end_op_index: int = 0

    @property
    def spill_fill_buffer_size(self) -> int | None:
        return None if self.htp is None else self.htp.spill_fill_buffer_size

    @property
    def shared_weights_size(self) -> int | None:
        return None if self.htp is None else self.htp.shared_weights_size


@dataclass(frozen=True)
class BinaryInfo:
    """Metadata of a QNN context binary (no graph blob is read)."""

    version_words: tuple[int, int, int, int]
    info_version: int  # QnnSystemContext_BinaryInfo_t version
    backend_id: int
    build_id: str
    core_api_version: Version
    backend_api_version: Version
    soc_version: str
    context_blob_version: Version
    context_blob_offset: int
    context_blob_size: int
    graphs: tuple[GraphInfo, ...]
    soc_model: int | None = None
    dsp_arch: int | None = None  # HTP architecture, e.g. 73 for v73
    context_metadata: bytes = b""
    num_context_tensors: int = 0
    records: tuple[BlobRecord, ...] = ()  # HTP blob directory

    @property
    def backend_name(self) -> str:
        return BACKEND_NAMES.get(self.backend_id, f"backend{self.backend_id}")

    @property
    def sdk_version(self) -> str:
        """``2.51.0`` from a build id like ``v2.51.0.260929181845``."""
        parts = self.build_id.lstrip("v").split(".")
        return ".".join(parts[:3])

    @property
    def graph_names(self) -> list[str]:
        return [g.name for g in self.graphs]

    @property
    def spill_fill_buffer_size(self) -> int:
        """The largest spill-fill buffer any graph needs (what a loader reserves)."""
        return max((g.spill_fill_buffer_size or 0 for g in self.graphs), default=0)

    @property
    def shared_weights_size(self) -> int:
        """Bytes of the ``WEIGHTS/*`` records (weights shared between graphs)."""
        return sum(r.size for r in self.records if r.name.startswith("WEIGHTS/"))


def decode_htp_graph_blob(raw: bytes | memoryview) -> HtpGraphBlobInfo | None:
    """Decode the HTP per-graph info: a sequence of versioned C-layout records."""
    fields: dict[str, int] = {}
    at = 0
    raw = bytes(raw)
    while at + 4 <= len(raw):
        (version,) = struct.unpack_from("<I", raw, at)
        if version == 1 and at + 40 <= len(raw):
            # u32 version, pad, {u64 spillFill; u32 vtcm; u32 optLevel; u8 dlbc; pad; u64 hvx}
            sf, vtcm, opt, dlbc, hvx = struct.unpack_from("<QIIB7xQ", raw, at + 8)
            fields.update(spill_fill_buffer_size=sf, vtcm_size=vtcm, optimization_level=opt,
                          htp_dlbc=dlbc, num_hvx_threads=hvx)
            at += 40
        elif version == 2 and at + 72 <= len(raw):
            k, v, safe, io, op, const, ddr, shared = struct.unpack_from("<QQI4xQQQQQ", raw, at + 8)
            fields.update(native_k_channel_size=k, native_v_channel_size=v, is_safe_share_io=safe,
                          io_tensor_size=io, op_data_size=op, const_size=const, ddr_tensor_size=ddr,
                          shared_weights_size=shared)
            at += 72
        else:
            break
    return HtpGraphBlobInfo(**fields) if fields else None


class _Reader:
    """Decodes one binary held in ``buf`` (bytes or an mmap)."""

    def __init__(self, buf: Any, path: str) -> None:
        self.buf = buf
        self.path = path
        self.size = len(buf)

    def error(self, msg: str, obj: str, offset: int) -> FormatError:
        return FormatError(msg, path=self.path or None, obj=obj, offset=offset)

    def header(self) -> tuple[tuple[int, int, int, int], int, int, int]:
        if self.size < _HEADER_SIZE:
            raise self.error(f"{self.size} bytes is too short for a QNN context binary header", "header", 0)
        words = struct.unpack_from(">4I", self.buf, 0)
        if words not in KNOWN_VERSIONS:
            known = ", ".join(str(list(v)) for v in sorted(KNOWN_VERSIONS))
            raise UnsupportedVersionError(
                f"version words {list(words)} are not supported (known: {known})",
                path=self.path or None, obj="header", offset=0,
            )
        meta_size, blob_off, blob_size = _HEADER.unpack_from(self.buf, 16)
        if meta_size > self.size - _HEADER_SIZE:
            raise self.error(f"metadata of {meta_size} bytes runs past the end of the {self.size}-byte file",
                             "header", 16)
        if blob_off < _HEADER_SIZE + meta_size or blob_off > self.size or blob_size > self.size - blob_off:
            raise self.error(f"context blob at {blob_off} of {blob_size} bytes lies outside the file "
                             f"({self.size} bytes, metadata ends at {_HEADER_SIZE + meta_size})", "header", 24)
        return words, meta_size, blob_off, blob_size

    def versioned(self, t: Table, expect: int, obj: str) -> tuple[int, Table]:
        """A ``{version, union type, value}`` table: returns (version, value table)."""
        version = t.scalar(0, "I")
        kind = t.scalar(1, "B")
        value = t.table(2, obj)
        if value is None or kind != version or not 1 <= version <= expect:
            raise t.fb.error(f"unsupported {obj} version {version} (union type {kind})", obj, t.pos)
        return version, value

    def tensor(self, t: Table, obj: str) -> IOTensor:
        name = t.string(9, obj=obj)
        obj = f"{obj} {name!r}"
        rank = t.scalar(6, "I")
        dims = t.array(7, "<u4", obj=obj)
        if len(dims) != rank:
            raise t.fb.error(f"rank {rank} but {len(dims)} dimensions", obj, t.pos)
        code = t.scalar(3, "I", _UNDEFINED)
        try:
            dtype: DType | int = DType(code)
        except ValueError:
            dtype = code
        kind_code = t.scalar(1, "I")
        try:
            kind: TensorKind | int = TensorKind(kind_code)
        except ValueError:
            kind = kind_code
        return IOTensor(
            id=t.scalar(0, "I"),
            name=name,
            kind=kind,
            data_format=t.scalar(2, "I"),
            dtype=dtype,
            shape=tuple(int(d) for d in dims),
            encoding=self.encoding(t, dtype, obj),
        )

    def encoding(self, t: Table, dtype: DType | int, obj: str) -> QuantEncoding | None:
        if t.scalar(4, "I", _UNDEFINED) != _DEFINED:
            return None
        kind = t.scalar(5, "I")
        if kind != QuantKind.SCALE_OFFSET:
            # only per-tensor scale/offset has been seen on graph I/O and checked
            raise t.fb.error(f"quantization encoding {kind} is not supported yet", obj, t.pos)
        so = t.table(15, f"{obj}.scaleOffset")
        scale = 0.0 if so is None else so.scalar(0, "f", 0.0)
        offset = 0 if so is None else so.scalar(1, "i", 0)
        # the low byte of a QNN data type spells the width in hex digits: 0x16 = 16 bits
        bits = int(f"{int(dtype) & 0xFF:x}") if isinstance(dtype, DType) and dtype.is_quantized else 8
        return QuantEncoding(QuantKind.SCALE_OFFSET, (scale,), (offset,), bitwidth=bits)

    def tensors(self, t: Table, index: int, count_index: int, obj: str) -> tuple[IOTensor, ...]:
        tables = t.tables(index, obj)
        count = t.scalar(count_index, "I")
        if count != len(tables):
            raise t.fb.error(f"{count} {obj} declared but {len(tables)} stored", obj, t.pos)
        return tuple(self.tensor(x, f"{obj}[{i}]") for i, x in enumerate(tables))

    def graph(self, wrapper: Table, index: int, records: dict[str, BlobRecord]) -> GraphInfo:
        obj = f"graph[{index}]"
        version, v = self.versioned(wrapper, 3, obj)
        # v3 = {v2 table, blob info size, blob info, start op, end op}; v2 = {v1, n, updateable}
        v3 = v if version == 3 else None
        v2 = v3.table(0, f"{obj}.v2") if v3 is not None else (v if version == 2 else None)
        v1 = v2.table(0, f"{obj}.v1") if v2 is not None else v
        if v1 is None:
            raise wrapper.fb.error("graph info has no name/tensor table", obj, wrapper.pos)
        name = v1.string(0, obj=obj)
        obj = f"graph {name!r}"
        inputs = self.tensors(v1, 2, 1, f"{obj} input")
        outputs = self.tensors(v1, 4, 3, f"{obj} output")
        upd = self.tensors(v2, 2, 1, f"{obj} updateable tensor") if v2 is not None else ()
        blob = b""
        start = end = 0
        if v3 is not None:
            raw = v3.bytes_(2, obj=f"{obj} blob info")
            blob = b"" if raw is None else bytes(raw)
            declared = v3.scalar(1, "I")
            if declared != len(blob):
                raise v3.fb.error(f"blob info declares {declared} bytes but holds {len(blob)}", obj, v3.pos)
            start, end = v3.scalar(3, "I"), v3.scalar(4, "I")
        rec = next((r for k, r in records.items() if k.startswith("PICKLE/") and k.split("/", 2)[-1] == name), None)
        return GraphInfo(
            name=name, inputs=inputs, outputs=outputs, updateable=upd, blob_info=blob,
            htp=decode_htp_graph_blob(blob), blob_size=None if rec is None else rec.size,
            start_op_index=start, end_op_index=end,
        )

    def records(self, blob_off: int, blob_size: int) -> tuple[BlobRecord, ...]:
        """The HTP blob's directory of named records."""
        if blob_size < _BLOB_HEADER:
            raise self.error(f"context blob of {blob_size} bytes has no directory", "context blob", blob_off)
        (dir_size,) = struct.unpack_from("<Q", self.buf, blob_off + 24)
        if dir_size > blob_size - _BLOB_HEADER:
            raise self.error(f"directory of {dir_size} bytes runs past the {blob_size}-byte context blob",
                             "context blob directory", blob_off + 24)
        fb = FlatBuffer(self.buf, start=blob_off + _BLOB_HEADER, size=dir_size, path=self.path or None,
                        what="context blob directory", base=blob_off + _BLOB_HEADER)
        root = fb.root()
        total = root.scalar(1, "Q")
        if total != blob_size:
            raise fb.error(f"directory says the blob has {total} bytes, the header {blob_size}", None, root.pos)
        out = []
        for i, r in enumerate(root.tables(2, "record")):
            name = r.string(0, obj=f"record[{i}]")
            size, align, off = r.scalar(1, "Q"), r.scalar(2, "Q"), r.scalar(4, "Q")
            if off > blob_size or size > blob_size - off:
                raise fb.error(f"record {name!r} ({size} bytes at {off}) lies outside the context blob",
                               f"record[{i}]", r.pos)
            out.append(BlobRecord(name, blob_off + off, size, align))
        return tuple(out)

    def info(self) -> BinaryInfo:
        words, meta_size, blob_off, blob_size = self.header()
        fb = FlatBuffer(self.buf, start=_HEADER_SIZE, size=meta_size, path=self.path or None,
                        what="metadata", base=_HEADER_SIZE)
        top = fb.root(obj="metadata").table(0, "binary info")
        if top is None:
            raise fb.error("no binary info table", "metadata", 0)
        version, b = self.versioned(top, 3, "binary info")
        if version != 3:
            raise UnsupportedVersionError(
                f"binary info version {version} is not supported (known: 3)",
                path=self.path or None, obj="binary info", offset=_HEADER_SIZE + top.pos,
            )
        declared = b.scalar(11, "Q")
        if declared != blob_size:
            raise fb.error(f"metadata says the context blob has {declared} bytes, the header {blob_size}",
                           "binary info", b.pos)
        backend = b.scalar(0, "I")
        records = self.records(blob_off, blob_size) if backend == 6 else ()
        by_name = {r.name: r for r in records}
        wrappers = b.tables(10, "graph")
        if b.scalar(9, "I") != len(wrappers):
            raise fb.error(f"{b.scalar(9, 'I')} graphs declared but {len(wrappers)} stored", "binary info", b.pos)
        graphs = tuple(self.graph(w, i, by_name) for i, w in enumerate(wrappers))
        names = [g.name for g in graphs]
        if len(set(names)) != len(names):
            raise fb.error("two graphs have the same name", "binary info", b.pos)
        meta_raw = b.bytes_(15, obj="context metadata")
        meta = b"" if meta_raw is None else bytes(meta_raw)
        if b.scalar(14, "I") != len(meta):
            raise fb.error(f"context metadata declares {b.scalar(14, 'I')} bytes but holds {len(meta)}",
                           "binary info", b.pos)
        dsp = None
        # HTP context metadata: {u32 version = 1; u32 dspArch}
        if backend == 6 and len(meta) >= 8 and struct.unpack_from("<I", meta, 0)[0] == 1:
            dsp = struct.unpack_from("<I", meta, 4)[0]
        return BinaryInfo(
            version_words=words,
            info_version=version,
            backend_id=backend,
            build_id=b.string(1, obj="build id"),
            core_api_version=self.version(b, 2),
            backend_api_version=self.version(b, 3),
            soc_version=b.string(4, obj="soc version"),
            context_blob_version=self.version(b, 5),
            context_blob_offset=blob_off,
            context_blob_size=blob_size,
            graphs=graphs,
            soc_model=b.scalar(16, "I") if b.has(16) else None,
            dsp_arch=dsp,
            context_metadata=meta,
            num_context_tensors=b.scalar(7, "I"),
            records=records,
        )

    @staticmethod
    def version(t: Table, index: int) -> Version:
        """An inline ``Qnn_Version_t`` struct (3 x u32)."""
        at = t.struct(index, 12)
        if at is None:
            return (0, 0, 0)
        return (t.fb.scalar("I", at), t.fb.scalar("I", at + 4), t.fb.scalar("I", at + 8))


def _open(source: Source) -> tuple[Any, str]:
    """(buffer, path) of ``source``: a read-only mmap of a file, or the given bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source, ""
    path = os.fspath(source)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise FormatError("empty file", path=path, obj="header", offset=0)
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), path


def read_info(source: Source) -> BinaryInfo:
    """The metadata of a QNN context binary (a path, or its bytes)."""
    buf, path = _open(source)
    try:
        return _Reader(buf, path).info()  # the result holds copies, never views
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _io(t: IOTensor, kind: TensorKind, path: str, graph: str) -> Tensor:
    if not isinstance(t.dtype, DType):
        raise FormatError(f"unknown data type {t.dtype:#x}", path=path or None, obj=f"graph {graph!r} tensor {t.name!r}")
    return Tensor(name=t.name, dtype=t.dtype, shape=t.shape, kind=kind, encoding=t.encoding)


def map_binary(source: Source) -> tuple[BinaryInfo, Blob]:
    """The metadata of a binary and a blob over all of its bytes (a file is mmap'd, not read)."""
    buf, p = _open(source)
    info = _Reader(buf, p).info()
    return info, Blob(buf, 0, len(buf), origin=(p, "context binary", 0), file=p or None)


def target_of(info: BinaryInfo) -> Target:
    """The backend, SoC model, HTP architecture and SDK version a binary was built for."""
    return Target(backend=info.backend_name, soc_model=info.soc_model, htp_arch=info.dsp_arch,
                  sdk_version=info.sdk_version)


def graphs_of(info: BinaryInfo, blob: Blob, path: str = "") -> tuple[Graph, ...]:
    """One compiled :class:`~ctxbin.ir.Graph` per graph: I/O tensors, no nodes, the binary attached."""
    graphs = []
    for g in info.graphs:
        inputs = tuple(_io(t, TensorKind.INPUT, path, g.name) for t in g.inputs)
        outputs = tuple(_io(t, TensorKind.OUTPUT, path, g.name) for t in g.outputs)
        meta = {}
        if g.spill_fill_buffer_size is not None:
            meta["spill_fill_buffer_size"] = str(g.spill_fill_buffer_size)
        if g.blob_size is not None:
            meta["blob_size"] = str(g.blob_size)
        if g.shared_weights_size is not None:
            meta["shared_weights_size"] = str(g.shared_weights_size)
        if g.htp is not None:
            meta["vtcm_size"] = str(g.htp.vtcm_size)
        graphs.append(Graph(
            name=g.name, inputs=inputs, outputs=outputs,
            tensors={t.name: t for t in inputs + outputs}, metadata=meta,
            binary=BackendBinary(backend=info.backend_name, blob=blob, graph_name=g.name),
        ))
    return tuple(graphs)


def _container_metadata(info: BinaryInfo) -> dict[str, str]:
    """What ``ctxbin inspect`` shows about the binary as a whole."""
    v = ".".join
    meta = {
        "build_id": info.build_id,
        "backend": f"{info.backend_name} (id {info.backend_id})",
        "core_api_version": v(map(str, info.core_api_version)),
        "backend_api_version": v(map(str, info.backend_api_version)),
        "context_blob_version": v(map(str, info.context_blob_version)),
        "context_blob_size": str(info.context_blob_size),
        "max_spill_fill_buffer_size": str(info.spill_fill_buffer_size),
    }
    if info.soc_version:
        meta["soc_version"] = info.soc_version
    if info.shared_weights_size:
        meta["shared_weights_size"] = str(info.shared_weights_size)
    return meta


def read(path: str | os.PathLike[str]) -> Container:
    """A container with one compiled graph per graph in the binary (I/O only, no nodes)."""
    info, blob = map_binary(path)
    p = os.fspath(path)
    return Container(
        graphs=graphs_of(info, blob, p),
        target=target_of(info),
        metadata=_container_metadata(info),
        source=p,
        format="qnn",
        format_version=".".join(map(str, info.version_words)),
    )
