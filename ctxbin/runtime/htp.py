"""The QNN HTP backend: run one graph of a QNN context binary by name.

The graph runs through the QNN C API of ``libQnnHtp.so`` (a QNN SDK via
``$QNN_SDK_ROOT``, or the libraries of the ``onnxruntime-qnn`` wheel); on an
x86_64 machine that is the vendor's HTP simulation. Each run happens in a
fresh child process (:mod:`ctxbin.runtime.htp_worker`) that asks for only the
graph wanted (context config ``ENABLE_GRAPHS``), so a crash inside the native
library becomes :class:`~ctxbin.errors.BackendError` naming the signal and the
graph, never a crash of the caller.

Multi-graph binaries, as seen with QNN 2.51's x86 simulation: graphs run by
name when the binary has no shared-weights record; a binary whose graphs share
weights is refused ("Shared weights buffer isn't supported on this platform")
and the library then segfaults inside ``contextCreateFromBinary`` whatever the
configs, which surfaces here as a ``BackendError`` saying so. That build
accepts ``ENABLE_GRAPHS`` but does not enforce it (every graph is deserialized).

Callers pass and get float arrays: quantized (fixed-point) tensors are
quantized / dequantized with their encoding and float16 tensors converted
from / to float32 at the boundary; ``raw=True`` passes and returns the
tensors' own storage types instead.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BackendError, BackendUnavailableError, CtxbinError, FormatError, InputError
from ..ir import DType, Graph, Tensor
from . import worker
from .qnn_api import HTP_LIBRARY, find_library, platform_problem

__all__ = ["unavailable_reason", "run", "DEFAULT_TIMEOUT"]

#: Seconds a run may take (context load + one execution) before the child is killed.
DEFAULT_TIMEOUT = 600.0

_ERRORS: dict[str, type[CtxbinError]] = {
    c.__name__: c for c in (BackendError, BackendUnavailableError, FormatError, InputError)
}
_PACKED = (DType.SFIXED4, DType.UFIXED4)  # two elements per byte in QNN buffers


def unavailable_reason(library: str | os.PathLike[str] | None = None) -> str:
    """Why the HTP backend cannot run here ("" when it can). Cheap: looks for
    files and modules, loads nothing."""
    why = platform_problem()
    if why:
        return why
    try:
        find_library(HTP_LIBRARY, library)
    except BackendUnavailableError as exc:
        return str(exc)
    if importlib.util.find_spec("cffi") is None:
        return "the cffi package is not installed (pip install 'ctxbin[htp]')"
    return ""


def _to_storage(t: Tensor, value: Any, raw: bool, graph: str) -> np.ndarray:
    """``value`` as the C-contiguous array the graph's input ``t`` stores."""
    where = f"graph {graph!r} input {t.name!r}"
    arr = np.asarray(value)
    shape = tuple(t.shape)
    if arr.shape != shape:
        raise InputError(f"{where}: shape {arr.shape}, expected {shape}")
    if t.dtype in _PACKED:
        raise InputError(f"{where}: 4-bit ({t.dtype.name}) graph inputs are not supported")
    store = t.dtype.numpy
    if raw:
        if arr.dtype != store:
            raise InputError(f"{where}: raw=True needs {store} data ({t.dtype.name}), got {arr.dtype}")
        return np.ascontiguousarray(arr)
    if t.dtype.is_quantized:
        if t.encoding is None:
            raise InputError(f"{where}: {t.dtype.name} tensor without an encoding; pass raw=True")
        return np.ascontiguousarray(t.encoding.quantize(arr.astype(np.float32), t.dtype))
    try:
        out = arr.astype(store, casting="same_kind")
    except TypeError:
        raise InputError(f"{where}: cannot use {arr.dtype} data for a {t.dtype.name} tensor") from None
    if store.kind in "iu" and not np.array_equal(out, arr):
        raise InputError(f"{where}: values do not fit {t.dtype.name}")
    return np.ascontiguousarray(out)


def _from_storage(t: Tensor, arr: np.ndarray, raw: bool) -> np.ndarray:
    if raw:
        return arr
    if t.dtype.is_quantized and t.encoding is not None:
        return t.encoding.dequantize(arr)
    if t.dtype == DType.FLOAT16:
        return arr.astype(np.float32)
    return arr


def _binary_file(graph: Graph, folder: Path) -> str:
    """A file holding exactly the graph's context binary: the file it was
    mapped from, or a copy in ``folder`` (embedded or in-memory binaries)."""
    blob = graph.binary.blob  # type: ignore[union-attr]
    path = (blob.origin or ("",))[0]
    if path and blob.offset == 0 and os.path.isfile(path) and os.path.getsize(path) == blob.nbytes:
        return path
    copy = folder / "binary.bin"
    copy.write_bytes(blob.raw())
    return str(copy)


def _crash(graph: Graph, done: worker.Outcome) -> BackendError:
    msg = f"the QNN HTP library crashed running graph {graph.name!r}: the worker process {done.death()}"
    said = worker.library_says(done.output)
    if said:
        msg += f"; the library said: {said}"
    if "shared weights" in said.lower():
        msg += (
            " (this binary's graphs share weights, which the HTP x86 simulation cannot load;"
            " run it on a device, or link the graphs without weight sharing)"
        )
    return BackendError(msg)


def run(
    graph: Graph,
    inputs: Mapping[str, Any],
    *,
    raw: bool = False,
    library: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, np.ndarray]:
    """Run ``graph`` (which must carry an HTP context binary) on QNN HTP.

    ``inputs`` maps every graph input name to an array of the input's shape
    (floats, or the storage type with ``raw=True``); returns
    ``{output name: array}`` in the graph's output order. ``library`` is an
    explicit ``libQnnHtp.so`` (file or directory).
    """
    binary = graph.binary
    if binary is None:
        raise BackendUnavailableError(f"graph {graph.name!r} has no compiled HTP binary")
    if binary.backend != "htp":
        raise BackendUnavailableError(f"graph {graph.name!r} is compiled for the {binary.backend!r} backend, not htp")
    why = unavailable_reason(library)
    if why:
        raise BackendUnavailableError(f"cannot run on HTP: {why}")
    unknown = sorted(set(inputs) - {t.name for t in graph.inputs})
    if unknown:
        raise InputError(f"graph {graph.name!r} has no input(s) {', '.join(map(repr, unknown))}")
    missing = [t.name for t in graph.inputs if t.name not in inputs]
    if missing:
        raise InputError(f"graph {graph.name!r}: missing input(s) {', '.join(map(repr, missing))}")
    with tempfile.TemporaryDirectory(prefix="ctxbin-htp-") as tmp:
        folder = Path(tmp)
        entries = []
        for i, t in enumerate(graph.inputs):
            file = f"in{i}.npy"
            np.save(folder / file, _to_storage(t, inputs[t.name], raw, graph.name), allow_pickle=False)
            entries.append({"name": t.name, "file": file})
        request = {
            "binary": _binary_file(graph, folder),
            "graph": binary.graph_name,
            "library": None if library is None else str(find_library(HTP_LIBRARY, library)),
            "inputs": entries,
        }
        done = worker.call("ctxbin.runtime.htp_worker", request, timeout=timeout,
                           what=f"graph {graph.name!r} on HTP", folder=folder)
        if done.result is None:
            raise _crash(graph, done)
        done.raise_failure(_ERRORS)
        result = done.result
        files = {e["name"]: e["file"] for e in result["outputs"]}
        return {t.name: _from_storage(t, np.load(folder / files[t.name], allow_pickle=False), raw) for t in graph.outputs}
