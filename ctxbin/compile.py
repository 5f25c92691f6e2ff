"""Compile and link graphs into one QNN HTP context binary (``ctxbin link --target htp``).

Inputs (DLC files, ONNX models, ``.ctxbin`` containers, or loaded
:class:`~ctxbin.ir.Container` objects with qnn-namespace graphs) are linked
under the names the user gives (:func:`ctxbin.link.link`: weights shared by
name and content, the report says what was shared and what was not), written
as one multi-graph DLC, and composed into one HTP context with weight sharing
enabled (:mod:`ctxbin.runtime.qnn_compose`). ONNX models are lowered first,
all at once and in memory (:func:`ctxbin.convert.convert_many`).

Where the time goes (full FCN pair, QNN 2.51, see ``benchmarks/RESULTS.md``):
almost all of it is the HTP graph preparation in ``graphFinalize``, which
ONNX Runtime does too; the default optimization level is the HTP backend's
own default (2, what ONNX Runtime and the vendor's tools use): level 3 gave a
0.15% smaller binary for ~1.8x the preparation time.

Output formats:

- ``"bin"``: the QNN context binary at ``out_path``;
- ``"epcontext"``: the binary at ``out_path`` plus one ``<graph>_ctx.onnx``
  EPContext wrapper per graph next to it, each pointing at the one binary
  (the first owns it: ``main_context=1``), so ONNX Runtime loads them;
- ``"ctxbin"``: a ``.ctxbin`` container at ``out_path`` holding the linked IR,
  its weights, and the compiled binary as every graph's
  :class:`~ctxbin.ir.BackendBinary` (one file: device binary + emulatable graphs).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Union

from .convert import ROUTES, convert_many
from .errors import InputError, LinkError
from .fileio import write_bytes_atomic
from .formats import ctxbin as ctxbin_format
from .formats import dlc, qnn
from .formats import load as load_container
from .ir import Container, Target
from .link import LinkReport, link
from .runtime.qnn_compose import DEFAULT_TIMEOUT, ComposeOptions, compose_dlc

__all__ = ["OUTPUT_FORMATS", "compile_htp", "write_epcontext_wrappers"]

#: Output formats :func:`compile_htp` writes.
OUTPUT_FORMATS = ("bin", "epcontext", "ctxbin")

Input = Union[Container, str, "os.PathLike[str]"]
_EP = "QNNExecutionProvider"


def _load_all(inputs: Sequence[Input], names: Sequence[str], work: Path, route: str) -> list[Container]:
    """``inputs`` as containers of qnn-namespace graphs; ONNX models (one
    graph each, taking the next name) are converted together."""
    loaded: list[Container | None] = []
    onnx_at: list[tuple[int, Path, str | None]] = []
    first = 0  # index of the item's first graph among all inputs'
    for i, item in enumerate(inputs):
        path = None if isinstance(item, Container) else Path(os.fspath(item))
        if path is not None and path.suffix.lower() == ".onnx":
            onnx_at.append((i, path, names[first] if first < len(names) else None))
            loaded.append(None)
            first += 1
            continue
        c = item if isinstance(item, Container) else load_container(path)
        loaded.append(c)
        first += len(c.graphs)
    if onnx_at:
        made = convert_many([p for _, p, _ in onnx_at], [n for _, _, n in onnx_at], work, route=route)
        for (i, _, _), c in zip(onnx_at, made):
            loaded[i] = c
    return [c for c in loaded if c is not None]


def _check_target(c: Container, want: Target, where: str) -> None:
    have = Target(soc_model=c.target.soc_model, htp_arch=c.target.htp_arch)
    if not have.compatible(want):
        raise LinkError(f"{where} is built for {have.describe()}, but the link targets {want.describe()}")


def compile_htp(
    inputs: Sequence[Input],
    names: Sequence[str],
    out_path: str | os.PathLike[str],
    *,
    soc_model: int,
    htp_arch: int,
    share: str = "name+content",
    fmt: str = "bin",
    route: str = "auto",
    optimization: int = 2,
    vtcm_mb: int = 0,
    fp16: bool = True,
    library: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> LinkReport:
    """Link the graphs of ``inputs`` (in order) under ``names`` into one HTP
    context binary for ``soc_model`` / ``htp_arch``; returns the link report.

    ``share`` is a :data:`ctxbin.link.SHARE_MODES` mode; with ``"none"`` the
    context is made without HTP weight sharing. ``route`` is how ONNX inputs
    are lowered (:func:`ctxbin.convert.convert_many`; ``"auto"``: the vendor's
    QNN IR lowering where onnxruntime-qnn runs, else ctxbin's; ``"ctxbin"`` is
    several times faster). Inputs built for another
    SoC or architecture, or names that collide, raise :class:`LinkError`.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if route not in ROUTES:
        raise InputError(f"unknown conversion route {route!r}; choose one of {', '.join(ROUTES)}")
    names = list(names)
    if not all(isinstance(n, str) and n for n in names):
        raise InputError(f"graph names must be non-empty strings, got {names}")
    options = ComposeOptions(soc_model, htp_arch, weight_sharing=share != "none", fp16=fp16,
                             optimization=optimization, vtcm_mb=vtcm_mb)
    options.check()
    want = Target(soc_model=soc_model, htp_arch=htp_arch)
    out = Path(os.fspath(out_path))
    with tempfile.TemporaryDirectory(prefix="ctxbin-compile-") as tmp:
        work = Path(tmp)
        containers = _load_all(inputs, names, work, route)
        for i, c in enumerate(containers):
            _check_target(c, want, c.source or f"input {i}")
        linked, report = link(containers, share=share, names=names)
        linked_dlc = work / "linked.dlc"
        dlc.write(linked, linked_dlc, share=share)
        binary = work / "linked.bin" if fmt == "ctxbin" else out
        compose_dlc(linked_dlc, binary, graphs=names, options=options, library=library, timeout=timeout)
        if fmt == "epcontext":
            write_epcontext_wrappers(binary)
        elif fmt == "ctxbin":
            _write_ctxbin(linked, binary, out)
    return report


def _write_ctxbin(linked: Container, binary: Path, out: Path) -> None:
    info, blob = qnn.map_binary(binary)
    try:
        compiled = {g.name: g.binary for g in qnn.graphs_of(info, blob, str(binary))}
        graphs = tuple(dataclasses.replace(g, binary=compiled[g.name]) for g in linked.graphs)
        # what the compiler built for (the SoC model can override the arch asked for)
        target = qnn.target_of(info)
        ctxbin_format.write(dataclasses.replace(linked, graphs=graphs, target=target), out)
    finally:
        blob.release()


def write_epcontext_wrappers(binary: str | os.PathLike[str]) -> list[Path]:
    """Write one ``<graph>_ctx.onnx`` ONNX Runtime EPContext wrapper per graph
    of the QNN context binary ``binary``, next to it (``embed_mode=0``, the
    binary referenced by its file name); returns their paths."""
    import onnx
    from onnx import helper

    def vi(t: qnn.IOTensor) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(t.dtype.numpy), list(t.shape))

    path = Path(os.fspath(binary))
    info = qnn.read_info(path)
    max_size = info.spill_fill_buffer_size
    written = []
    for i, g in enumerate(info.graphs):
        node = helper.make_node(
            "EPContext", [t.name for t in g.inputs], [t.name for t in g.outputs], name=g.name,
            domain="com.microsoft", main_context=1 if i == 0 else 0, ep_cache_context=path.name,
            embed_mode=0, ep_sdk_version=info.build_id, partition_name=g.name, source=_EP, max_size=max_size,
        )
        graph = helper.make_graph([node], g.name, [vi(t) for t in g.inputs], [vi(t) for t in g.outputs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8  # what onnxruntime releases of this era accept
        wrapper = path.with_name(f"{g.name}_ctx.onnx")
        write_bytes_atomic(wrapper, model.SerializeToString())
        written.append(wrapper)
    return written
