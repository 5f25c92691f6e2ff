"""QNN DLC files (``*.dlc``): reading versions 4.x and 3.x into ctxbin's IR.

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
mapping (stored ZIP entries). The module is split into readers per version so
a writer can sit next to them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import FormatError, UnsupportedVersionError
from ..flatbuf import FlatBuffer, Table
from ..ir import AttrValue, Container, DType, Graph, Node, QuantEncoding, QuantKind, Target, Tensor, TensorKind
from ..weights import Blob
from ..ziparchive import ZipArchive

__all__ = ["sniff", "read", "NAMESPACE_V4", "NAMESPACE_V3"]

#: Namespace of v4 nodes (QNN op definitions as the QNN IR stores them).
NAMESPACE_V4 = "qnn"
#: Namespace of v3 nodes (SNPE layer types, not QNN ops).
NAMESPACE_V3 = "snpe"

_MAGIC = b"\xd5\x0a"
_PREFIX = 8
_ENTRY_PREFIXES = ("model", "dlc.", "aip.", "quant_params")
_QNN_UNDEFINED = 0x7FFFFFFF


def sniff(head: bytes) -> bool:
    """True when ``head`` starts a ZIP whose first entry has a DLC entry name.

    DLC writers put ``model*``, ``dlc.metadata*`` or ``aip.metadata*`` first.
    """
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return False
    nlen = int.from_bytes(head[26:28], "little")
    name = head[30 : 30 + nlen]
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(name) == nlen and text.startswith(_ENTRY_PREFIXES)


def read(path: str | os.PathLike, **_options: Any) -> Container:
    """Every graph of the DLC at ``path`` (weights stay in the file mapping)."""
    zf = ZipArchive.open(path)
    doc = _Doc(zf, os.fspath(path))
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
    graphs = _read_v4(doc, model) if major == 4 else _read_v3(doc, model)
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
    """The archive being read, where errors point, and a work budget.

    Flatbuffer references may share one table many times over (a vector of a
    million offsets to one node holding a million params): the budget counts
    every table visited and stops a read once it exceeds what the entries'
    sizes allow for unshared tables (a table takes at least 4 bytes).
    """

    __slots__ = ("zf", "path", "_budget", "_text_budget")

    def __init__(self, zf: ZipArchive, path: str) -> None:
        self.zf = zf
        self.path = path
        size = sum(e.size for e in zf.entries if e.name in ("model", "model.params"))
        self._budget = 1024 + size // 4
        self._text_budget = (1 << 20) + 8 * size  # strings may be shared, but not without bound

    def spend_text(self, nbytes: int, obj: str) -> None:
        self._text_budget -= nbytes
        if self._text_budget < 0:
            raise FormatError("strings are shared beyond what the file size allows (hostile file?)", path=self.path, obj=obj)

    def spend(self, tables: list[Table], obj: str) -> list[Table]:
        self._budget -= len(tables)
        if self._budget < 0:
            raise FormatError("tables are shared beyond what the file size allows (hostile file?)", path=self.path, obj=obj)
        return tables

    def entry(self, name: str) -> memoryview:
        return self.zf.read(name)

    def file_offset(self, name: str, at: int) -> int | None:
        """File offset of byte ``at`` of entry ``name`` (None when it was inflated)."""
        e = self.zf.entry(name)
        return e.data_offset + at if e.method == 0 else None

    def error(self, msg: str, obj: str, entry: str, at: int = 0) -> FormatError:
        off = self.file_offset(entry, at)
        return FormatError(msg, path=self.path, obj=obj, offset=off if off is not None else at)


def _tables(doc: _Doc, t: Table, index: int, obj: str) -> list[Table]:
    return doc.spend(t.tables(index, obj), obj)


def _strings(doc: _Doc, t: Table, index: int, obj: str) -> tuple[str, ...]:
    """A string vector, charging its total length to the budget before decoding."""
    span = t.vector_span(index, 4, obj)
    if span is None:
        return ()
    fb, (start, count) = t.fb, span
    rel = start - fb.start
    total = 0
    for i in range(count):
        total += fb.scalar("I", fb.deref(rel + 4 * i, obj), obj)
    doc.spend_text(total, obj)
    return tuple(t.strings(index, obj))


def _prefix(data: memoryview, doc: _Doc, entry: str) -> tuple[int, int]:
    if len(data) < _PREFIX or bytes(data[:2]) != _MAGIC:
        raise doc.error(f"missing the D5 0A DLC prefix (got {bytes(data[:8]).hex(' ')})", entry, entry)
    return int.from_bytes(data[2:4], "little"), int.from_bytes(data[4:6], "little")


def _flatbuffer(doc: _Doc, entry: str, data: memoryview, ident: bytes) -> Table:
    base = doc.file_offset(entry, _PREFIX) or 0
    fb = FlatBuffer(data, start=_PREFIX, path=doc.path, what=entry, base=base)
    got = fb.identifier()
    if got != ident:
        raise UnsupportedVersionError(
            f"flatbuffer identifier {got!r}, ctxbin reads {ident!r} here", path=doc.path, obj=entry, offset=base + 4
        )
    return fb.root(obj=entry)


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
        if not isinstance(obj, dict):
            raise doc.error("metadata JSON is not an object", name, name)
        header = obj.get("header")
        version = header.get("version") if isinstance(header, dict) else None
        if isinstance(version, dict):
            meta["dlc-metadata-version"] = ".".join(str(version.get(k, "")) for k in ("major", "minor", "patch"))
        if isinstance(header, dict) and isinstance(header.get("timestamp"), str):
            meta.setdefault("timestamp", header["timestamp"])
        for info in obj.get("dlcGenerationInfo") or ():
            cmd = info.get("converterCommand") if isinstance(info, dict) else None
            if isinstance(cmd, dict):  # the last generation step wins
                args = cmd.get("args")
                argv = " ".join(f"{k}={v}" for k, v in args.items()) if isinstance(args, dict) else ""
                meta["converter-command"] = f"{cmd.get('tool', '')} {argv}".strip()
                meta["converter-version"] = str(cmd.get("converterVersion", ""))
    return meta


def _text(doc: _Doc, name: str) -> str:
    try:
        return bytes(doc.entry(name)).decode("utf-8")
    except UnicodeDecodeError as e:
        raise doc.error("metadata is not UTF-8 text", name, name, e.start) from None


def _dtype(code: int, doc: _Doc, obj: str, entry: str) -> DType:
    try:
        return DType(code)
    except ValueError:
        raise doc.error(f"unknown QNN data type 0x{code:04x}", obj, entry) from None


def _check_size(t: Tensor, blob: Blob, doc: _Doc, entry: str) -> None:
    count = 1
    for d in t.shape:
        count *= int(d)  # type: ignore[arg-type]
    if count * t.dtype.itemsize != blob.nbytes:
        raise FormatError(
            f"{blob.nbytes} data bytes for shape {t.shape} of {t.dtype.name} ({count * t.dtype.itemsize} bytes)",
            path=doc.path, obj=t.name, offset=blob.origin[2] if blob.origin else None,
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
    G_NAME, G_NODES, G_TENSORS = 0, 1, 2
    N_NAME, N_TYPE, N_INPUTS, N_OUTPUTS, N_ATTRS = 0, 1, 2, 3, 4
    A_NAME, A_KIND, A_VALUE, A_TENSOR = 0, 1, 3, 4
    V_DTYPE, V_INT, V_FLOAT, V_STRING = 0, 1, 2, 3
    T_ID, T_NAME, T_TYPE, T_DIMS, T_QUANT, T_DTYPE = 0, 1, 2, 3, 5, 6
    Q_ENCODING, Q_SCALE_OFFSET, Q_AXIS = 0, 2, 3
    SO_BITWIDTH, SO_SCALE, SO_OFFSET, SO_SYMMETRIC = 0, 3, 4, 5
    AX_AXIS, AX_LIST = 0, 1
    P_GRAPHS = 0
    PG_NAME, PG_TENSORS, PG_NODES = 0, 1, 2
    PN_TENSORS = 0
    TD_NAME, TD_BYTES, TD_REF = 0, 1, 3
    REF_OFFSET, REF_SIZE = 0, 1


@dataclass(frozen=True)
class _V4Data:
    """Where static bytes live: ``model.params`` inline vectors or ``model.params.bin``."""

    doc: _Doc
    params_bin: memoryview | None

    def blob(self, td: Table, graph: str, tensor: str) -> Blob:
        obj = f"{graph}/{tensor}"
        ref = td.table(_V4.TD_REF, obj)
        if ref is not None:
            if self.params_bin is None:
                raise self.doc.error("refers to model.params.bin, which the archive lacks", obj, "model.params")
            off = ref.scalar(_V4.REF_OFFSET, "Q")
            size = ref.scalar(_V4.REF_SIZE, "Q")
            where = self.doc.file_offset("model.params.bin", off)
            return Blob(self.params_bin, off, size, origin=(self.doc.path, obj, where if where is not None else off))
        raw = td.bytes_(_V4.TD_BYTES, obj)
        if raw is None:
            raise td.fb.error("static tensor has neither inline bytes nor a model.params.bin reference", obj, td.pos)
        return Blob(raw, origin=(self.doc.path, obj, td.fb.base + td.pos))


def _read_v4(doc: _Doc, model: memoryview) -> list[Graph]:
    root = _flatbuffer(doc, "model", model, b"NETD")
    data, params = _v4_params(doc)
    graphs = []
    for g in _tables(doc, root, _V4.GRAPHS, "model.graphs"):
        name = g.string(_V4.G_NAME, obj=g.obj)
        if name not in params:
            raise doc.error("graph has no parameters in model.params", name, "model")
        tensor_data, node_data = params[name]
        tensors: dict[str, Tensor] = {}
        for t in _tables(doc, g, _V4.G_TENSORS, f"{name}.tensors"):
            tensor = _v4_tensor(t, doc, name, tensor_data, data)
            if tensor.name in tensors:
                raise doc.error("duplicate tensor name", f"{name}/{tensor.name}", "model")
            tensors[tensor.name] = tensor
        nodes = [
            _v4_node(n, doc, name, node_data[i] if i < len(node_data) else {}, data)
            for i, n in enumerate(_tables(doc, g, _V4.G_NODES, f"{name}.nodes"))
        ]
        graphs.append(_graph(name, tensors, nodes))
    return graphs


def _v4_params(doc: _Doc) -> tuple[_V4Data, dict[str, tuple[dict[str, Table], list[dict[str, Table]]]]]:
    """Per graph: static tensor name -> TensorData, and per node index the same for tensor params."""
    raw = doc.entry("model.params")
    major, _ = _prefix(raw, doc, "model.params")
    if major != 4:
        raise UnsupportedVersionError(f"model.params has major version {major} in a v4 DLC", path=doc.path, obj="model.params", offset=2)
    root = _flatbuffer(doc, "model.params", raw, b"NETP")
    params_bin = doc.entry("model.params.bin") if "model.params.bin" in doc.zf else None
    out = {}
    for g in _tables(doc, root, _V4.P_GRAPHS, "model.params.graphs"):
        name = g.string(_V4.PG_NAME, obj=g.obj)
        nodes = [_by_name(_tables(doc, n, _V4.PN_TENSORS, f"{name}.node_params"), doc) for n in _tables(doc, g, _V4.PG_NODES, f"{name}.node_params")]
        out[name] = (_by_name(_tables(doc, g, _V4.PG_TENSORS, f"{name}.tensor_params"), doc), nodes)
    return _V4Data(doc, params_bin), out


def _by_name(tables: Iterable[Table], doc: _Doc) -> dict[str, Table]:
    out = {}
    for t in tables:
        name = t.string(_V4.TD_NAME, obj=t.obj)
        if name in out:
            raise t.fb.error(f"duplicate tensor data {name!r}", t.obj, t.pos)
        out[name] = t
    return out


def _v4_tensor(t: Table, doc: _Doc, graph: str, tensor_data: Mapping[str, Table], data: _V4Data) -> Tensor:
    name = t.string(_V4.T_NAME, obj=t.obj)
    obj = f"{graph}/{name}"
    code = t.scalar(_V4.T_TYPE, "i")
    try:
        kind = TensorKind(code)
    except ValueError:
        raise t.fb.error(f"tensor type {code} is not one ctxbin models", obj, t.pos) from None
    dtype = _dtype(t.scalar(_V4.T_DTYPE, "i", _QNN_UNDEFINED), doc, obj, "model")
    shape = tuple(int(d) for d in t.array(_V4.T_DIMS, "<u4", obj))
    q = t.table(_V4.T_QUANT, f"{obj}.quantization")
    tensor = Tensor(name=name, dtype=dtype, shape=shape, kind=kind, encoding=_v4_quant(q, obj, doc) if q else None)
    if kind != TensorKind.STATIC:
        return tensor
    td = tensor_data.get(name)
    if td is None:
        raise t.fb.error("static tensor has no data in model.params", obj, t.pos)
    blob = data.blob(td, graph, name)
    tensor = Tensor(name, dtype, shape, kind, tensor.encoding, blob)
    _check_size(tensor, blob, doc, "model")
    return tensor


def _v4_scale_offset(so: Table) -> tuple[float, int, int, bool]:
    return (
        float(so.scalar(_V4.SO_SCALE, "f", 0.0)),
        int(so.scalar(_V4.SO_OFFSET, "i")),
        int(so.scalar(_V4.SO_BITWIDTH, "i")),
        bool(so.scalar(_V4.SO_SYMMETRIC, "B")),
    )


def _v4_quant(q: Table, obj: str, doc: _Doc) -> QuantEncoding | None:
    code = q.scalar(_V4.Q_ENCODING, "i")  # absent = 0 = SCALE_OFFSET
    if code == QuantKind.NONE:
        return None
    if code == QuantKind.SCALE_OFFSET:
        so = q.table(_V4.Q_SCALE_OFFSET, f"{obj}.scale_offset")
        if so is None:
            raise q.fb.error("scale/offset encoding without its scale/offset table", obj, q.pos)
        scale, offset, bits, sym = _v4_scale_offset(so)
        return QuantEncoding(QuantKind.SCALE_OFFSET, (scale,), (offset,), None, bits, sym)
    if code == QuantKind.AXIS_SCALE_OFFSET:
        ax = q.table(_V4.Q_AXIS, f"{obj}.axis_scale_offset")
        if ax is None:
            raise q.fb.error("per-axis encoding without its axis table", obj, q.pos)
        chans = [_v4_scale_offset(so) for so in _tables(doc, ax, _V4.AX_LIST, f"{obj}.axis_scale_offset.list")]
        if not chans:
            raise ax.fb.error("per-axis encoding with no channels", obj, ax.pos)
        return QuantEncoding(
            QuantKind.AXIS_SCALE_OFFSET,
            tuple(c[0] for c in chans), tuple(c[1] for c in chans), int(ax.scalar(_V4.AX_AXIS, "i")),
            chans[0][2], all(c[3] for c in chans),
        )
    try:
        label = QuantKind(code).name
    except ValueError:
        label = "unknown"
    raise q.fb.error(f"quantization encoding {code} ({label}) is not decoded by ctxbin yet", obj, q.pos)


def _v4_scalar(v: Table, obj: str) -> AttrValue:
    code = v.scalar(_V4.V_DTYPE, "i", _QNN_UNDEFINED)
    cls = code >> 8
    if code == DType.STRING:
        return v.string(_V4.V_STRING, obj=obj)
    if code == DType.BOOL8:
        return bool(v.scalar(_V4.V_INT, "q"))
    if cls in (0, 3):  # signed ints, signed fixed point
        return int(v.scalar(_V4.V_INT, "q"))
    if cls in (1, 4):  # unsigned
        return int(v.scalar(_V4.V_INT, "Q"))
    if cls == 2:
        return float(v.scalar(_V4.V_FLOAT, "d"))
    raise v.fb.error(f"scalar parameter of unknown data type 0x{code:04x}", obj, v.pos)


def _v4_node(n: Table, doc: _Doc, graph: str, params: Mapping[str, Table], data: _V4Data) -> Node:
    name = n.string(_V4.N_NAME, obj=n.obj)
    obj = f"{graph}/{name}"
    attrs: dict[str, AttrValue] = {}
    package = ""
    for a in _tables(doc, n, _V4.N_ATTRS, f"{obj}.params"):
        key = a.string(_V4.A_NAME, obj=a.obj)
        kind = a.scalar(_V4.A_KIND, "i")
        if kind == 0:
            v = a.table(_V4.A_VALUE, f"{obj}.{key}")
            if v is None:
                raise a.fb.error("scalar parameter without a value", f"{obj}.{key}", a.pos)
            value = _v4_scalar(v, f"{obj}.{key}")
        elif kind == 1:
            t = a.table(_V4.A_TENSOR, f"{obj}.{key}")
            if t is None:
                raise a.fb.error("tensor parameter without a tensor", f"{obj}.{key}", a.pos)
            value = _v4_param_tensor(t, doc, graph, params, data)
        else:
            raise a.fb.error(f"parameter kind {kind} is unknown (0 scalar, 1 tensor)", f"{obj}.{key}", a.pos)
        if key == "packageName" and isinstance(value, str):
            package = value
        else:
            attrs[key] = value
    return Node(
        name=name,
        op_type=n.string(_V4.N_TYPE, obj=obj),
        namespace=NAMESPACE_V4,
        inputs=_strings(doc, n, _V4.N_INPUTS, f"{obj}.inputs"),
        outputs=_strings(doc, n, _V4.N_OUTPUTS, f"{obj}.outputs"),
        attrs=attrs,
        domain=package,
    )


def _v4_param_tensor(t: Table, doc: _Doc, graph: str, params: Mapping[str, Table], data: _V4Data) -> np.ndarray:
    tensor = _v4_tensor(t, doc, graph, params, data)
    if tensor.data is None:
        raise t.fb.error("tensor parameter is not static", f"{graph}/{tensor.name}", t.pos)
    return tensor.numpy()


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


def _v3_value(a: Table, obj: str, doc: _Doc, depth: int = 0) -> AttrValue:
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
        return tuple(_v3_attrs(_tables(doc, a, field, obj), obj, doc, depth + 1).items())
    if how.startswith("<"):
        return tuple(a.array(field, how, obj).tolist())
    value = a.scalar(field, how)
    if how == "?":
        return bool(value)
    return float(value) if how == "f" else value


def _v3_attrs(tables: Iterable[Table], obj: str, doc: _Doc, depth: int = 0) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for a in tables:
        key = a.string(_V3.A_NAME, obj=a.obj)
        out[key] = _v3_value(a, f"{obj}.{key}", doc, depth)
    return out


def _v3_encoding(fxp: Mapping[str, AttrValue] | tuple, obj: str, doc: _Doc) -> QuantEncoding:
    f = dict(fxp)  # type: ignore[arg-type]
    try:
        delta, offset, precision = f["delta"], f.get("offset", 0.0), f["precision"]
    except KeyError as e:
        raise FormatError(f"FxpData lacks {e.args[0]!r}", path=doc.path, obj=obj) from None
    if not isinstance(delta, float) or not isinstance(offset, float) or not isinstance(precision, int):
        raise FormatError("FxpData fields have unexpected types", path=doc.path, obj=obj)
    return QuantEncoding(QuantKind.SCALE_OFFSET, (delta,), (int(round(offset)),), None, precision & 0xFF)


def _per_output(value: AttrValue | None, i: int) -> AttrValue | None:
    """``FxpData``/``OutputDims`` hold one nested attribute per output, named "0", "1", ..."""
    if not isinstance(value, tuple):
        return None
    for key, v in value:
        if key == str(i):
            return v
    return None


def _read_v3(doc: _Doc, model: memoryview) -> list[Graph]:
    root = _flatbuffer(doc, "model", model, b"NETD")
    buffer_info = _v3_attrs(_tables(doc, root, _V3.M_ATTRS, "model.attributes"), "model", doc).get("BufferInfos", ())
    infos = {k: dict(v) for k, v in buffer_info if isinstance(v, tuple)} if isinstance(buffer_info, tuple) else {}
    weights = _v3_weights(doc) if "model.params" in doc.zf else {}
    tensors: dict[str, Tensor] = {}
    nodes: list[Node] = []
    for n in _tables(doc, root, _V3.M_NODES, "model.nodes"):
        name = n.string(_V3.N_NAME, obj=n.obj)
        op = n.string(_V3.N_TYPE, obj=name)
        attrs = _v3_attrs(_tables(doc, n, _V3.N_ATTRS, f"{name}.attributes"), name, doc)
        fxp, dims = attrs.pop("FxpData", None), attrs.pop("OutputDims", None)
        outputs = _strings(doc, n, _V3.N_OUTPUTS, f"{name}.outputs")
        for i, out in enumerate(outputs):
            enc_attr = _per_output(fxp, i)
            enc = _v3_encoding(enc_attr, f"{name}.FxpData", doc) if isinstance(enc_attr, tuple) else None
            shape = _per_output(dims, i) or infos.get(out, {}).get("dims", ())
            size = infos.get(out, {}).get("data_size", 32)
            dtype = DType(0x0400 | enc.bitwidth) if enc and enc.bitwidth in (8, 16) else _V3_DATA_SIZE.get(size, DType.FLOAT32)  # type: ignore[arg-type]
            kind = TensorKind.INPUT if op == "Input" else TensorKind.NATIVE
            tensors[out] = Tensor(out, dtype, tuple(shape) if isinstance(shape, tuple) else (), kind, enc)
        inputs = [i for i in _strings(doc, n, _V3.N_INPUTS, f"{name}.inputs") if not (op == "Input" and i in outputs)]
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
    root = _flatbuffer(doc, "model.params", raw, b"NETP")
    out: dict[str, list[Tensor]] = {}
    for np_ in _tables(doc, root, _V3.P_NODES, "model.params.nodes"):
        layer = np_.string(_V3.PN_NAME, obj=np_.obj)
        if layer in out:
            raise np_.fb.error("duplicate layer parameters", layer, np_.pos)
        out[layer] = [_v3_weight(w, doc, layer) for w in _tables(doc, np_, _V3.PN_WEIGHTS, f"{layer}.weights")]
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
    fxp = _per_output(_v3_attrs(_tables(doc, w, _V3.W_ATTRS, f"{name}.attributes"), name, doc).get("FxpData"), 0)
    enc = _v3_encoding(fxp, f"{name}.FxpData", doc) if isinstance(fxp, tuple) else None
    if enc is not None and dtype == DType.UINT8:
        dtype = DType.UFIXED8
    origin = doc.file_offset("model.params", d.pos + _PREFIX)
    blob = Blob(raw, origin=(doc.path, name, origin if origin is not None else d.pos))
    tensor = Tensor(name, dtype, shape, TensorKind.STATIC, enc, blob)
    _check_size(tensor, blob, doc, "model.params")
    return tensor
