"""ONNX models to and from ctxbin's IR (one graph per file).

Reading keeps ONNX semantics (nodes in the ``onnx`` namespace); weights stay
where they are: external data is memory-mapped read-only, inline ``raw_data``
is referenced, only typed fields (``float_data`` ...) are converted. External
data locations must stay inside the model's directory and every offset/length
is checked against the file. Model-local functions are inlined; ops carrying
subgraphs (``If``, ``Loop``, ``Scan``) are refused with
:class:`~ctxbin.errors.UnsupportedOpError` since the IR has no subgraphs.

Container metadata keys: ``producer``, ``producer_version``, ``onnx.ir_version``,
``onnx.domain``, ``onnx.model_version``, ``onnx.doc_string`` and
``onnx.meta.<key>`` for ``metadata_props``. Graph metadata: ``doc_string``, and
``onnx.unranked`` (JSON list of I/O names whose rank is unknown).
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
from pathlib import Path, PureWindowsPath
from typing import Any, Iterable, Mapping, Union

import numpy as np
import onnx
import onnx.inliner
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from ..errors import CtxbinError, FormatError, UnsupportedOpError
from ..fileio import atomic_write
from ..ir import AttrValue, Container, Dim, DType, Graph, Node, Tensor, TensorKind
from ..weights import Blob
from .sniff import onnx as sniff

__all__ = ["sniff", "load_model", "read", "write"]

PathLike = Union[str, "os.PathLike[str]"]

_DTYPE_OF_ONNX: dict[int, DType] = {
    TensorProto.FLOAT: DType.FLOAT32,
    TensorProto.UINT8: DType.UINT8,
    TensorProto.INT8: DType.INT8,
    TensorProto.UINT16: DType.UINT16,
    TensorProto.INT16: DType.INT16,
    TensorProto.INT32: DType.INT32,
    TensorProto.INT64: DType.INT64,
    TensorProto.STRING: DType.STRING,
    TensorProto.BOOL: DType.BOOL8,
    TensorProto.FLOAT16: DType.FLOAT16,
    TensorProto.DOUBLE: DType.FLOAT64,
    TensorProto.UINT32: DType.UINT32,
    TensorProto.UINT64: DType.UINT64,
    TensorProto.UNDEFINED: DType.UNDEFINED,
}
_ONNX_OF_DTYPE = {v: k for k, v in _DTYPE_OF_ONNX.items()}

#: Which typed field holds a tensor's values when it has no raw_data (ONNX spec).
_TYPED_FIELD = {
    DType.FLOAT32: ("float_data", np.float32),
    DType.FLOAT64: ("double_data", np.float64),
    DType.INT64: ("int64_data", np.int64),
    DType.UINT32: ("uint64_data", np.uint64),
    DType.UINT64: ("uint64_data", np.uint64),
    DType.INT32: ("int32_data", np.int32),
    DType.INT16: ("int32_data", np.int32),
    DType.INT8: ("int32_data", np.int32),
    DType.UINT16: ("int32_data", np.int32),
    DType.UINT8: ("int32_data", np.int32),
    DType.BOOL8: ("int32_data", np.int32),
    DType.FLOAT16: ("int32_data", np.int32),  # the float16 bit patterns
}

#: ModelProto field number -> protobuf wire type, for sniffing.
_SUBGRAPH_ATTRS = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
#: protobuf refuses messages of 2 GiB; keep headroom for the graph itself.
_INLINE_LIMIT = 2**31 - 2**26
_ALIGN = 64
#: Smaller weights stay inline even with external data: onnxruntime's shape
#: inference cannot read shape constants (Reshape shapes, Slice starts) from outside.
_INLINE_BELOW = 1024
#: Written when a graph carries no opsets: the first with LayerNormalization.
_DEFAULT_OPSET = 17
#: Models up to this size have their strings checked by parsing them again
#: (one C pass, two transient copies); larger ones (inline weights) by
#: walking their fields, which copies nothing.
_REPARSE_MAX = 16 << 20


# ---------------------------------------------------------------- sniffing


# ---------------------------------------------------------------- reading


def _require_utf8(msg: Any, path: PathLike) -> None:
    """Reject a proto2 ``string`` field holding invalid UTF-8 anywhere in ``msg``.

    Python protobuf hands such a field back as ``bytes`` instead of failing,
    which would let bytes pose as names (op types, tensor names, file locations).
    A model is parsed again as a message whose strings protobuf verifies (the
    common, clean case: a fraction of walking it); otherwise, and to name the
    culprit, one flat pass over the fields, then a second one naming it.
    """
    verifying = _verifying_model()
    if isinstance(msg, onnx.ModelProto) and verifying is not None and msg.ByteSize() <= _REPARSE_MAX:
        try:
            verifying.FromString(msg.SerializeToString())
            return
        except DecodeError:
            pass  # the walk names the field
    message, string = FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING
    stack = [msg]
    while stack:
        for fd, value in stack.pop().ListFields():
            kind = fd.type
            if kind == message:
                if fd.is_repeated:
                    stack.extend(value)
                else:
                    stack.append(value)
            elif kind == string:
                if fd.is_repeated:
                    if bytes in set(map(type, value)):
                        _name_bad_utf8(msg, path, "ModelProto")
                elif value.__class__ is bytes:
                    _name_bad_utf8(msg, path, "ModelProto")


@functools.cache
def _verifying_model() -> Any:
    """A ModelProto class of the same wire format whose string fields protobuf
    checks for UTF-8 while parsing (ONNX's proto2 schema restated in edition
    2023 with verified strings). None where this protobuf cannot build it
    (no editions): the walk then does the check."""
    try:
        proto = descriptor_pb2.FileDescriptorProto()
        onnx.ModelProto.DESCRIPTOR.file.CopyToProto(proto)
        if proto.syntax not in ("", "proto2"):
            return None
        _to_edition_2023(proto)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(proto)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(onnx.ModelProto.DESCRIPTOR.full_name))
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def _to_edition_2023(proto: Any) -> None:
    """Restate a proto2 file in edition 2023 with the same semantics (closed
    enums, explicit presence, required fields, repeated fields expanded
    unless packed), its strings verified as UTF-8."""
    features = descriptor_pb2.FeatureSet
    proto.syntax = "editions"
    proto.edition = descriptor_pb2.EDITION_2023
    proto.options.features.utf8_validation = features.VERIFY
    proto.options.features.enum_type = features.CLOSED
    proto.options.features.repeated_field_encoding = features.EXPANDED
    messages = list(proto.message_type)
    while messages:
        m = messages.pop()
        messages.extend(m.nested_type)
        for f in m.field:
            if f.label == f.LABEL_REQUIRED:  # spelled as features in editions
                f.label = f.LABEL_OPTIONAL
                f.options.features.field_presence = features.LEGACY_REQUIRED
            if f.options.HasField("packed"):
                f.options.features.repeated_field_encoding = features.PACKED if f.options.packed else features.EXPANDED
                f.options.ClearField("packed")


def _name_bad_utf8(msg: Any, path: PathLike, where: str) -> None:
    """FormatError naming the first string field of ``msg`` holding bytes."""
    for fd, value in msg.ListFields():
        if fd.type not in (fd.TYPE_MESSAGE, fd.TYPE_STRING):
            continue
        for i, v in enumerate(value if fd.is_repeated else (value,)):
            obj = f"{where}.{fd.name}" + (f"[{i}]" if fd.is_repeated else "")
            if fd.type == fd.TYPE_MESSAGE:
                _name_bad_utf8(v, path, obj)
            elif isinstance(v, bytes):
                raise FormatError(f"string field is not valid UTF-8: {v[:40]!r}", path=path, obj=obj)


class _ExternalFiles:
    """External data files of one model, each mapped once, read-only."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.base = os.path.realpath(model_path.parent)
        self.maps: dict[str, Any] = {}
        self.located: dict[str, tuple[str, Any]] = {}  # location -> (file, mapping), once checked

    def buffer(self, location: str, obj: str) -> tuple[str, Any]:
        """The file behind ``location`` (relative, inside the model's directory,
        a regular file) and its mapping; each location is resolved once."""
        hit = self.located.get(location)
        if hit is not None:
            return hit
        if (
            not location
            or "\0" in location
            or os.path.isabs(location)
            or PureWindowsPath(location).drive
        ):
            raise FormatError(f"external data location {location!r} is not a relative path",
                              path=self.model_path, obj=obj)
        target = os.path.realpath(os.path.join(self.base, location))
        if os.path.commonpath([self.base, target]) != self.base:
            raise FormatError(
                f"external data location {location!r} points outside the model's directory",
                path=self.model_path, obj=obj,
            )
        if target not in self.maps:
            if not os.path.isfile(target):  # a FIFO or device would block or never end
                raise FormatError(f"external data {location!r} is not a regular file",
                                  path=self.model_path, obj=obj)
            try:
                with open(target, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    # mmap cannot map an empty file; zero-length tensors need no bytes.
                    self.maps[target] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            except OSError as e:
                raise FormatError(f"cannot open external data {location!r}: {e.strerror or e}",
                                  path=self.model_path, obj=obj) from None
        hit = self.located[location] = (target, self.maps[target])
        return hit


def _dtype(code: int, path: Path, obj: str) -> DType:
    try:
        return _DTYPE_OF_ONNX[code]
    except KeyError:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        raise FormatError(f"element type {name} is not supported", path=path, obj=obj) from None


def _static_shape(dims: Iterable[int], path: Path, obj: str) -> tuple[int, ...]:
    shape = tuple(dims)  # protobuf hands int64 fields over as ints
    if shape and min(shape) < 0:
        raise FormatError(f"negative dimension in shape {shape}", path=path, obj=obj)
    return shape


def _external_blob(t: TensorProto, nbytes: int, files: _ExternalFiles, obj: str) -> Blob:
    info = {e.key: e.value for e in t.external_data}
    path = files.model_path
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(nbytes)))
    except ValueError:
        raise FormatError(f"external data offset/length {info} are not integers", path=path, obj=obj) from None
    if length != nbytes:
        raise FormatError(f"external data holds {length} bytes but the shape needs {nbytes}",
                          path=path, obj=obj)
    target, buf = files.buffer(info.get("location", ""), obj)
    size = len(buf)
    if offset < 0 or offset + length > size:
        raise FormatError(
            f"external data of {length} bytes at offset {offset} lies outside the {size}-byte file",
            path=target, obj=obj, offset=offset,
        )
    return Blob(buf, offset, length, origin=(target, obj, offset), file=str(target))


def _tensor_data(t: TensorProto, files: _ExternalFiles, obj: str) -> tuple[DType, tuple[int, ...], Blob]:
    """Element type, shape and bytes of a TensorProto (initializer or attribute)."""
    path = files.model_path
    dtype = _dtype(t.data_type, path, obj)
    shape = _static_shape(t.dims, path, obj)
    if dtype in (DType.STRING, DType.UNDEFINED):
        raise FormatError(f"{dtype.name} tensors are not supported as constants", path=path, obj=obj)
    if t.HasField("segment"):
        raise FormatError("segmented tensors are not supported", path=path, obj=obj)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if t.data_location == TensorProto.EXTERNAL:
        return dtype, shape, _external_blob(t, nbytes, files, obj)
    if t.HasField("raw_data"):
        raw = t.raw_data
        if len(raw) != nbytes:
            raise FormatError(f"raw_data holds {len(raw)} bytes but the shape needs {nbytes}",
                              path=path, obj=obj)
        return dtype, shape, Blob(raw)
    field, stored = _TYPED_FIELD[dtype]
    values = getattr(t, field)
    if len(values) != count:
        raise FormatError(f"{field} holds {len(values)} values but the shape needs {count}",
                          path=path, obj=obj)
    arr = np.asarray(values, dtype=stored)
    arr = arr.astype(np.uint16).view(np.float16) if dtype == DType.FLOAT16 else arr.astype(dtype.numpy)
    return dtype, shape, Blob.from_array(arr)


def _attr_value(a: AttributeProto, node: onnx.NodeProto, files: _ExternalFiles) -> AttrValue:
    A = AttributeProto
    obj = f"node {node.name!r} attribute {a.name!r}"
    if a.type == A.FLOAT:
        return float(a.f)
    if a.type == A.INT:
        return int(a.i)
    if a.type == A.STRING:
        return _text(a.s)
    if a.type == A.FLOATS:
        return tuple(a.floats)  # floats and ints already, as protobuf hands them over
    if a.type == A.INTS:
        return tuple(a.ints)
    if a.type == A.STRINGS:
        return tuple(_text(s) for s in a.strings)
    if a.type == A.TENSOR:
        return _attr_array(a.t, files, obj)
    if a.type == A.TENSORS:
        return tuple(_attr_array(t, files, obj) for t in a.tensors)
    kind = A.AttributeType.Name(a.type) if a.type in A.AttributeType.values() else str(a.type)
    raise FormatError(f"attribute type {kind} is not supported", path=files.model_path, obj=obj)


def _attr_array(t: TensorProto, files: _ExternalFiles, obj: str) -> np.ndarray:
    dtype, shape, blob = _tensor_data(t, files, obj)
    return blob.array(dtype.numpy, shape)


def _text(s: bytes) -> str | bytes:
    """ONNX STRING attributes are bytes: text when valid UTF-8, else kept as bytes."""
    try:
        return s.decode("utf-8")
    except UnicodeDecodeError:
        return s


def _value_info(vi: onnx.ValueInfoProto, kind: TensorKind, path: Path) -> tuple[Tensor, bool]:
    """The tensor a ValueInfoProto declares, and whether its rank is known."""
    which = vi.type.WhichOneof("value")
    if which not in (None, "tensor_type"):
        raise FormatError(f"{which} values are not supported (tensors only)", path=path,
                          obj=f"value {vi.name!r}")
    tt = vi.type.tensor_type
    dtype = _dtype(tt.elem_type, path, f"value {vi.name!r}")
    dims: list[Dim] = []
    for d in tt.shape.dim:
        which_dim = d.WhichOneof("value")
        dims.append(int(d.dim_value) if which_dim == "dim_value" else d.dim_param if which_dim == "dim_param" else None)
    return Tensor(vi.name, dtype, tuple(dims), kind), tt.HasField("shape")


def _check_single_definitions(g: onnx.GraphProto, path: Path) -> None:
    """FormatError for a name defined twice (ONNX graphs are in SSA form): two
    initializers, two graph inputs, or two node outputs; ``""`` marks an
    omitted optional output and may repeat."""
    for what, names in (
        ("initializer", (t.name for t in g.initializer)),
        ("graph input", (vi.name for vi in g.input)),
        ("node output", (o for n in g.node for o in n.output if o)),
    ):
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise FormatError(f"{what} name {n!r} is defined more than once", path=path, obj=f"{what} {i}")
            seen.add(n)


def _graph(model: onnx.ModelProto, name: str, path: Path) -> Graph:
    g = model.graph
    files = _ExternalFiles(path)
    if g.sparse_initializer:
        raise FormatError("sparse initializers are not supported", path=path,
                          obj=f"sparse initializer {g.sparse_initializer[0].values.name!r}")
    with_subgraphs = sorted({n.op_type for n in g.node if any(a.type in _SUBGRAPH_ATTRS for a in n.attribute)})
    if with_subgraphs:
        raise UnsupportedOpError(name, with_subgraphs, backend="ONNX reader (ops with subgraphs)")

    unranked: list[str] = []

    def declared(vis: Iterable[onnx.ValueInfoProto], kind: TensorKind) -> list[Tensor]:
        out = []
        for vi in vis:
            t, ranked = _value_info(vi, kind, path)
            if not ranked:
                unranked.append(vi.name)
            out.append(t)
        return out

    _check_single_definitions(g, path)
    static = {init.name for init in g.initializer}
    inputs = declared((vi for vi in g.input if vi.name not in static), TensorKind.INPUT)
    outputs = declared(g.output, TensorKind.OUTPUT)
    # Table order: inputs, initializers, value_info, outputs (the order write() emits).
    table: dict[str, Tensor] = {t.name: t for t in inputs}
    for init in g.initializer:
        dtype, shape, blob = _tensor_data(init, files, f"initializer {init.name!r}")
        table[init.name] = Tensor(init.name, dtype, shape, TensorKind.STATIC, data=blob)
    for vi in g.value_info:
        if vi.name not in table and vi.type.tensor_type.HasField("shape"):
            table[vi.name] = _value_info(vi, TensorKind.NATIVE, path)[0]
    for t in outputs:
        if t.name not in static:
            table.pop(t.name, None)
            table[t.name] = t

    nodes = tuple(
        Node(
            name=n.name,
            op_type=n.op_type,
            namespace="onnx",
            inputs=tuple(n.input),
            outputs=tuple(n.output),
            attrs={a.name: _attr_value(a, n, files) for a in n.attribute},
            domain=n.domain,
        )
        for n in g.node
    )
    metadata = {}
    if g.doc_string:
        metadata["doc_string"] = g.doc_string
    if unranked:
        metadata["onnx.unranked"] = json.dumps(unranked)
    return Graph(
        name=name,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        nodes=nodes,
        tensors=table,
        opsets={op.domain: int(op.version) for op in model.opset_import},
        metadata=metadata,
    )


def _model_metadata(model: onnx.ModelProto) -> dict[str, str]:
    meta = {
        "producer": model.producer_name,
        "producer_version": model.producer_version,
        "onnx.ir_version": str(model.ir_version) if model.ir_version else "",
        "onnx.domain": model.domain,
        "onnx.model_version": str(model.model_version) if model.model_version else "",
        "onnx.doc_string": model.doc_string,
    }
    meta.update({f"onnx.meta.{p.key}": p.value for p in model.metadata_props})
    return {k: v for k, v in meta.items() if v}


def load_model(path: PathLike) -> onnx.ModelProto:
    """The ONNX model at ``path`` (external data not loaded), checked to have a
    graph and valid UTF-8 strings; :class:`FormatError` when it is not one."""
    p = Path(os.fspath(path))
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except OSError as e:
        raise FormatError(f"cannot open: {e.strerror or e}", path=p) from None
    except (DecodeError, ValueError, RuntimeError) as e:
        raise FormatError(f"not a valid ONNX model ({e})", path=p, obj="ModelProto", offset=0) from None
    if not model.HasField("graph"):
        raise FormatError("not an ONNX model: no graph", path=p, obj="ModelProto", offset=0)
    _require_utf8(model, p)
    return model


def read(path: PathLike, *, name: str | None = None) -> Container:
    """Read an ONNX model as a one-graph container (weights mapped, not copied).

    The graph is named ``name``, else the ONNX graph's name, else the file stem.
    """
    p = Path(os.fspath(path))
    model = load_model(p)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    graph = _graph(model, name or model.graph.name or p.stem, p)
    return Container(
        graphs=(graph,),
        metadata=_model_metadata(model),
        source=str(p),
        format="onnx",
        format_version=str(model.ir_version),
    )


# ---------------------------------------------------------------- writing


def _pick(container: Container, graph: str | None) -> Graph:
    if graph is not None:
        return container.graph(graph)
    if len(container.graphs) != 1:
        names = ", ".join(repr(n) for n in container.graph_names) or "(none)"
        raise CtxbinError(
            f"an ONNX file holds one graph and this container has {len(container.graphs)}: "
            f"save one with graph=NAME (one of {names}), or keep them all in a .ctxbin or .dlc"
        )
    return container.graphs[0]


def _onnx_dtype(t: Tensor, path: Path) -> int:
    if t.encoding is not None or t.dtype.is_quantized:
        raise FormatError(
            f"{t.dtype.name} tensor with a quantization encoding cannot be written to ONNX "
            "(lower it to QuantizeLinear/DequantizeLinear first)",
            path=path, obj=f"tensor {t.name!r}",
        )
    try:
        return _ONNX_OF_DTYPE[t.dtype]
    except KeyError:
        raise FormatError(f"{t.dtype.name} has no ONNX element type", path=path,
                          obj=f"tensor {t.name!r}") from None


def _unranked(g: Graph, path: Path) -> set[str]:
    """The names the graph's ``onnx.unranked`` metadata lists (the reader's JSON list)."""
    text = g.metadata.get("onnx.unranked", "[]")
    try:
        names = json.loads(text)
    except (ValueError, RecursionError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError(f"metadata 'onnx.unranked' is not a JSON list of tensor names: {text[:60]!r}",
                          path=path, obj=f"graph {g.name!r}")
    return set(names)


def _value_info_proto(t: Tensor, unranked: set[str], path: Path) -> onnx.ValueInfoProto:
    shape = None if t.name in unranked else list(t.shape)
    return helper.make_tensor_value_info(t.name, _onnx_dtype(t, path), shape)


def _infer_attr_type(value: Any) -> int:
    A = AttributeProto
    scalar = {bool: A.INT, int: A.INT, float: A.FLOAT, str: A.STRING, bytes: A.STRING}
    for py, kind in scalar.items():
        if isinstance(value, py):
            return kind
    if isinstance(value, np.integer):
        return A.INT
    if isinstance(value, np.floating):
        return A.FLOAT
    if isinstance(value, np.ndarray):
        return A.TENSOR
    if isinstance(value, (tuple, list)):
        kinds = {_infer_attr_type(v) for v in value}
        if kinds <= {A.INT}:
            return A.INTS
        if kinds <= {A.INT, A.FLOAT}:
            return A.FLOATS
        if kinds == {A.STRING}:
            return A.STRINGS
        if kinds == {A.TENSOR}:
            return A.TENSORS
    raise TypeError(f"{type(value).__name__} values cannot be ONNX attributes")


def _bytes(v: str | bytes) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _attr_proto(name: str, value: AttrValue, declared: int | None) -> AttributeProto:
    A = AttributeProto
    # The schema's declared type wins: it is the only way to type an empty list
    # or an integral float (e.g. alpha=1 coming from another format).
    kind = declared if declared not in (None, A.UNDEFINED) else _infer_attr_type(value)
    a = AttributeProto(name=name, type=kind)
    if kind == A.FLOAT:
        a.f = float(value)  # type: ignore[arg-type]
    elif kind == A.INT:
        a.i = int(value)  # type: ignore[arg-type]
    elif kind == A.STRING:
        a.s = _bytes(value)  # type: ignore[arg-type]
    elif kind == A.FLOATS:
        a.floats.extend(float(v) for v in value)  # type: ignore[union-attr]
    elif kind == A.INTS:
        a.ints.extend(int(v) for v in value)  # type: ignore[union-attr]
    elif kind == A.STRINGS:
        a.strings.extend(_bytes(v) for v in value)  # type: ignore[union-attr]
    elif kind == A.TENSOR:
        a.t.CopyFrom(numpy_helper.from_array(np.asarray(value)))
    elif kind == A.TENSORS:
        a.tensors.extend(numpy_helper.from_array(np.asarray(v)) for v in value)  # type: ignore[union-attr]
    else:
        raise TypeError(f"attribute type {A.AttributeType.Name(kind)} cannot be written")
    return a


def _declared_attr_types(node: Node, opsets: Mapping[str, int]) -> dict[str, int]:
    domain = "" if node.domain == "ai.onnx" else node.domain
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, _DEFAULT_OPSET), domain)
    except onnx.defs.SchemaError:  # custom ops: types come from the values
        return {}
    return {k: int(v.type) for k, v in schema.attributes.items()}


def _node_proto(node: Node, opsets: Mapping[str, int], path: Path) -> onnx.NodeProto:
    declared = _declared_attr_types(node, opsets)
    attrs = []
    for k, v in node.attrs.items():
        try:
            attrs.append(_attr_proto(k, v, declared.get(k)))
        except (TypeError, ValueError) as e:
            raise FormatError(f"attribute {k!r} = {v!r} cannot be written: {e}", path=path,
                              obj=f"node {node.name!r}") from None
    n = onnx.NodeProto(name=node.name, op_type=node.op_type, domain=node.domain)
    n.input.extend(node.inputs)
    n.output.extend(node.outputs)
    n.attribute.extend(attrs)
    return n


def _initializers(g: Graph, path: Path, external: bool | None) -> list[TensorProto]:
    """TensorProtos of the graph's weights; with external data, also writes ``<path>.data``."""
    weights = g.weights
    for t in weights:
        if t.is_symbolic:
            raise FormatError(f"weight has a symbolic shape {t.shape}", path=path, obj=f"tensor {t.name!r}")
    total = sum(t.nbytes for t in weights)
    if external is None:
        external = total > _INLINE_LIMIT
    elif not external and total > _INLINE_LIMIT:
        raise FormatError(f"{total} bytes of weights do not fit in one ONNX file: use external_data=True",
                          path=path, obj=f"graph {g.name!r}")
    protos, outside = [], []
    for t in weights:
        tp = TensorProto(name=t.name, data_type=_onnx_dtype(t, path))
        tp.dims.extend(int(d) for d in t.shape)  # type: ignore[arg-type]
        if external and t.nbytes >= _INLINE_BELOW:
            outside.append((t, tp))
        else:
            tp.raw_data = bytes(t.data.raw())  # type: ignore[union-attr]
        protos.append(tp)
    if external:
        data_path = path.with_name(path.name + ".data")
        with atomic_write(data_path) as f:
            pos = 0
            for t, tp in outside:
                pad = -pos % _ALIGN
                f.write(b"\0" * pad)
                pos += pad
                f.write(t.data.raw())  # type: ignore[union-attr]
                tp.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_path.name), ("offset", pos), ("length", t.nbytes)):
                    tp.external_data.add(key=key, value=str(value))
                pos += t.nbytes
    return protos


def _ir_version(container: Container, opsets: Mapping[str, int]) -> int:
    recorded = container.metadata.get("onnx.ir_version", "")
    if recorded.isdigit():
        return int(recorded)
    return helper.find_min_ir_version_for(
        [helper.make_opsetid(d, v) for d, v in opsets.items()], ignore_unknown=True
    )


def write(
    container: Container,
    path: PathLike,
    *,
    graph: str | None = None,
    external_data: bool | None = None,
) -> None:
    """Write one graph (``graph`` picks it when the container holds several) as ONNX.

    Weights go to ``<path>.data`` (64-byte aligned) when ``external_data`` is
    true, or, by default, when they would not fit in a 2 GiB protobuf. Both
    files are written atomically. Only ``onnx``-namespace nodes can be written.
    """
    p = Path(os.fspath(path))
    g = _pick(container, graph)
    foreign = sorted({f"{n.namespace}:{n.op_type}" for n in g.nodes if n.namespace != "onnx"})
    if foreign:
        raise UnsupportedOpError(g.name, foreign, backend="ONNX writer (onnx-namespace ops only)")
    opsets = dict(g.opsets) or {"": _DEFAULT_OPSET}
    for n in g.nodes:
        opsets.setdefault(n.domain, 1)
    unranked = _unranked(g, p)
    io = {t.name for t in g.inputs} | {t.name for t in g.outputs}
    # Everything that can fail is converted before any file is written.
    nodes = [_node_proto(n, opsets, p) for n in g.nodes]
    value_info = [
        _value_info_proto(t, unranked, p)
        for t in g.tensors.values()
        if t.data is None and t.name not in io and t.kind == TensorKind.NATIVE
    ]
    inputs = [_value_info_proto(t, unranked, p) for t in g.inputs]
    outputs = [_value_info_proto(t, unranked, p) for t in g.outputs]
    gp = helper.make_graph(
        nodes,
        g.name,
        inputs,
        outputs,
        _initializers(g, p, external_data),
        doc_string=g.metadata.get("doc_string") or None,
        value_info=value_info,
    )
    meta = container.metadata
    model = helper.make_model(gp, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = _ir_version(container, opsets)
    model.producer_name = meta.get("producer", "")
    model.producer_version = meta.get("producer_version", "")
    model.domain = meta.get("onnx.domain", "")
    model.doc_string = meta.get("onnx.doc_string", "")
    if meta.get("onnx.model_version", "").lstrip("-").isdigit():
        model.model_version = int(meta["onnx.model_version"])
    helper.set_model_props(
        model, {k[len("onnx.meta."):]: v for k, v in meta.items() if k.startswith("onnx.meta.")}
    )
    with atomic_write(p) as f:
        f.write(model.SerializeToString(deterministic=True))
