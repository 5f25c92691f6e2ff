"""The child-process side of the HTP backend: ``python -m ctxbin.runtime.htp_worker DIR``.

QNN's native libraries can crash the process that calls them (a multi-graph
binary with shared weights makes the x86 simulation segfault inside
``contextCreateFromBinary``), so :mod:`ctxbin.runtime.htp` never loads them
itself: it writes a request into a fresh directory and runs this module in a
child process. Everything crosses as JSON and ``.npy`` files (read with
``allow_pickle=False``), nothing as pickles:

``DIR/request.json``
    ``{"binary": path, "graph": name, "library": path or null,
    "inputs": [{"name": ..., "file": "in0.npy"}, ...]}``
``DIR/result.json`` (written by the child)
    ``{"ok": true, "outputs": [{"name", "file"}], "seconds": {"load", "execute"}}``
    or ``{"ok": false, "error": class name, "message": ..., "available": [...]}``

A child that dies without writing ``result.json`` has crashed; the parent
reports its exit status.
"""

from __future__ import annotations

import json
import mmap
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphNotFoundError, InputError
from .worker import REQUEST, serve_main

__all__ = ["main", "serve"]


def _load_input(folder: Path, entry: dict[str, Any], spec: Any) -> np.ndarray:
    arr = np.load(folder / entry["file"], allow_pickle=False)
    want = spec.dtype.numpy
    if arr.dtype != want or tuple(arr.shape) != tuple(spec.shape):
        raise InputError(
            f"input {spec.name!r}: got {arr.dtype} {tuple(arr.shape)}, the graph wants {want} {tuple(spec.shape)}"
        )
    return np.ascontiguousarray(arr)


def serve(folder: Path) -> dict[str, Any]:
    """Run the request in ``folder``; returns the result record (outputs written)."""
    from ..formats import qnn
    from .qnn_api import QnnBackendLib

    req = json.loads((folder / REQUEST).read_text("utf-8"))
    path, name = str(req["binary"]), str(req["graph"])
    info = qnn.read_info(path)  # bounds-checked before any native code sees the bytes
    graph = next((g for g in info.graphs if g.name == name), None)
    if graph is None:
        raise GraphNotFoundError(name, info.graph_names)
    given = {e["name"]: e for e in req["inputs"]}
    missing = [t.name for t in graph.inputs if t.name not in given]
    if missing:
        raise InputError(f"graph {name!r}: missing input(s) {', '.join(missing)}")
    inputs = [_load_input(folder, given[t.name], t) for t in graph.inputs]
    outputs = [np.zeros(t.shape, t.dtype.numpy) for t in graph.outputs]
    lib = QnnBackendLib(req.get("library"))
    with open(path, "rb") as f:
        # a private copy-on-write mapping: the library gets a writable pointer
        # without a copy of the file, and cannot change the file
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        t0 = time.perf_counter()
        with lib.session(buf, [name]) as context:
            handle = lib.retrieve(context, name)
            t1 = time.perf_counter()
            # the second values own the names, dimensions and buffer views the
            # tensor structs point to: they live until the end of this block
            ins, _in_refs = lib.tensors(graph.inputs, inputs)
            outs, _out_refs = lib.tensors(graph.outputs, outputs)
            lib.execute(handle, ins, len(inputs), outs, len(outputs), name)
            t2 = time.perf_counter()
    finally:
        buf.close()
    files = []
    for i, (spec, arr) in enumerate(zip(graph.outputs, outputs)):
        file = f"out{i}.npy"
        np.save(folder / file, arr, allow_pickle=False)
        files.append({"name": spec.name, "file": file})
    return {"ok": True, "outputs": files, "seconds": {"load": t1 - t0, "execute": t2 - t1}}


def main(argv: list[str] | None = None) -> int:
    return serve_main(argv, serve, "ctxbin.runtime.htp_worker")


if __name__ == "__main__":
    sys.exit(main())
