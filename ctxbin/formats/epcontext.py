"""ONNX Runtime EPContext wrappers (``*_ctx.onnx``) around QNN context binaries.

An EPContext model is an ONNX model with nodes of type ``com.microsoft:EPContext``;
each stands for one compiled graph: ``partition_name`` names the graph inside
the context binary, which is either embedded in ``ep_cache_context``
(``embed_mode=1``) or stored in a file whose path, relative to the ``.onnx``,
``ep_cache_context`` holds (``embed_mode=0``). Several wrappers may name
graphs of one shared binary. Reading resolves each node to its binary (read by
:mod:`ctxbin.formats.qnn`) and its graph; external paths may not leave the
wrapper's directory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import FormatError
from ..ir import Container, Graph, Target
from . import qnn
from .sniff import epcontext as sniff

__all__ = [
    "sniff",
    "is_epcontext_model",
    "EPContextNode",
    "read_nodes",
    "read",
    "read_many",
]

_DOMAIN = "com.microsoft"
_OP = "EPContext"
# op_type is field 4 of NodeProto (tag 0x22), written before the attributes


@dataclass(frozen=True)
class EPContextNode:
    """One ``EPContext`` node's attributes."""

    name: str
    partition_name: str
    main_context: bool
    embed_mode: bool
    cache_path: str | None  # relative path of the binary (embed_mode 0)
    sdk_version: str
    source: str
    max_size: int
    hardware_architecture: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def is_epcontext_model(model: Any) -> bool:
    """True when the ``onnx.ModelProto`` has at least one ``com.microsoft:EPContext`` node."""
    return any(n.op_type == _OP and n.domain == _DOMAIN for n in model.graph.node)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def _int(a: dict[str, Any], key: str, default: int, path: str, obj: str) -> int:
    """An INT attribute (a hostile wrapper may give it any attribute type)."""
    v = a.get(key, default)
    if not isinstance(v, int):
        raise FormatError(f"attribute {key} is {type(v).__name__}, not an integer", path=path, obj=obj)
    return v


def _node(node: Any, path: str) -> tuple[EPContextNode, bytes | None]:
    a = _attrs(node)
    obj = f"EPContext node {node.name!r}"
    embed = _int(a, "embed_mode", 1, path, obj)
    cache = a.get("ep_cache_context")
    if not isinstance(cache, bytes) or not cache:
        raise FormatError("has no ep_cache_context", path=path, obj=obj)
    if embed not in (0, 1):
        raise FormatError(f"embed_mode {embed} is neither 0 nor 1", path=path, obj=obj)
    partition = _text(a.get("partition_name")) or node.name
    info = EPContextNode(
        name=node.name,
        partition_name=partition,
        main_context=bool(_int(a, "main_context", 1, path, obj)),
        embed_mode=bool(embed),
        cache_path=None if embed else _text(cache),
        sdk_version=_text(a.get("ep_sdk_version")),
        source=_text(a.get("source")),
        max_size=_int(a, "max_size", 0, path, obj),
        hardware_architecture=_text(a.get("hardware_architecture")),
        inputs=tuple(node.input),
        outputs=tuple(node.output),
    )
    return info, (cache if embed else None)


def _load_model(path: str) -> Any:
    from .onnx import load_model

    model = load_model(path)
    if not is_epcontext_model(model):
        raise FormatError("the ONNX model has no com.microsoft:EPContext node", path=path, obj="model")
    return model


def read_nodes(path: str | os.PathLike[str]) -> list[EPContextNode]:
    """The EPContext nodes of the wrapper at ``path``, in graph order."""
    p = os.fspath(path)
    model = _load_model(p)
    return [_node(n, p)[0] for n in model.graph.node if n.op_type == _OP and n.domain == _DOMAIN]


def _resolve(wrapper: str, rel: str, obj: str) -> Path:
    """The binary's path: relative to the wrapper's directory and inside it."""
    base = Path(wrapper).resolve().parent
    if "\0" in rel:
        raise FormatError(f"ep_cache_context {rel!r} holds a NUL byte", path=wrapper, obj=obj)
    if os.path.isabs(rel):
        raise FormatError(f"ep_cache_context {rel!r} is an absolute path", path=wrapper, obj=obj)
    target = (base / rel).resolve()
    try:
        target.relative_to(base)
    except ValueError:
        raise FormatError(f"ep_cache_context {rel!r} leaves the directory {str(base)!r}",
                          path=wrapper, obj=obj) from None
    if not target.is_file():
        raise FormatError(f"context binary {rel!r} does not exist", path=wrapper, obj=obj)
    return target


class _Binaries:
    """Context binaries mapped so far, so wrappers sharing one file share one blob."""

    def __init__(self) -> None:
        self.by_path: dict[Path, tuple[qnn.BinaryInfo, tuple[Graph, ...]]] = {}

    def external(self, file: Path) -> tuple[qnn.BinaryInfo, tuple[Graph, ...]]:
        if file not in self.by_path:
            info, blob = qnn.map_binary(file)
            self.by_path[file] = (info, qnn.graphs_of(info, blob, str(file)))
        return self.by_path[file]


def _embedded(data: bytes, path: str, obj: str) -> tuple[qnn.BinaryInfo, tuple[Graph, ...]]:
    try:
        info, blob = qnn.map_binary(data)
        return info, qnn.graphs_of(info, blob)
    except FormatError as exc:
        where = f"{obj} embedded binary" + (f" {exc.obj}" if exc.obj else "")
        raise FormatError(exc.reason, path=path, obj=where, offset=exc.offset) from None


def _graphs(path: str, binaries: _Binaries) -> tuple[list[Graph], list[qnn.BinaryInfo], int]:
    model = _load_model(path)
    graphs: list[Graph] = []
    infos: list[qnn.BinaryInfo] = []
    others = 0
    for n in model.graph.node:
        if not (n.op_type == _OP and n.domain == _DOMAIN):
            others += 1
            continue
        node, embedded = _node(n, path)
        obj = f"EPContext node {node.name!r}"
        if embedded is not None:
            info, compiled = _embedded(embedded, path, obj)
        else:
            info, compiled = binaries.external(_resolve(path, node.cache_path or "", obj))
        try:
            g = next(g for g in compiled if g.name == node.partition_name)
        except StopIteration:
            raise FormatError(
                f"partition_name {node.partition_name!r} is not a graph of its context binary "
                f"(graphs: {', '.join(info.graph_names) or 'none'})", path=path, obj=obj,
            ) from None
        meta = dict(g.metadata, ep_sdk_version=node.sdk_version, source=node.source, max_size=str(node.max_size))
        if node.cache_path:
            meta["context_binary"] = node.cache_path
        graphs.append(dataclasses.replace(g, metadata=meta))
        infos.append(info)
    return graphs, infos, others


def _container(graphs: list[Graph], infos: list[qnn.BinaryInfo], source: str, others: int, what: str) -> Container:
    names = [g.name for g in graphs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FormatError(f"graph(s) named more than once: {', '.join(dup)}", path=source, obj=what)
    target = Target()
    for info in infos:
        t = qnn.target_of(info)
        if not target.compatible(t):
            raise FormatError(f"context binaries built for different targets: {target.describe()} "
                              f"and {t.describe()}", path=source, obj=what)
        target = target.merged(t)
    meta = {"onnx_nodes_outside_context": str(others)} if others else {}
    return Container(graphs=tuple(graphs), target=target, metadata=meta, source=source,
                     format="epcontext", format_version="1")


def read(path: str | os.PathLike[str]) -> Container:
    """The compiled graphs an EPContext wrapper names (I/O only, binaries attached)."""
    p = os.fspath(path)
    graphs, infos, others = _graphs(p, _Binaries())
    return _container(graphs, infos, p, others, "model")


def read_many(paths: Sequence[str | os.PathLike[str]]) -> Container:
    """Several wrappers as one container; wrappers naming one shared binary share its blob."""
    binaries = _Binaries()
    graphs: list[Graph] = []
    infos: list[qnn.BinaryInfo] = []
    others = 0
    for p in paths:
        g, i, o = _graphs(os.fspath(p), binaries)
        graphs += g
        infos += i
        others += o
    return _container(graphs, infos, ", ".join(os.fspath(p) for p in paths), others, "wrappers")
