"""ONNX → QNN DLC conversion (``ctxbin convert``).

Two routes lead from an ONNX model to a DLC v4 file whose one graph is named
as the user asks:

- ``"qnn-ir"``: the QNN IR backend of ``onnxruntime-qnn`` (``libQnnIr.so``,
  Qualcomm's own lowering). An ONNX Runtime session with the QNN execution
  provider dumps the graph as a DLC (``dump_qnn_ir_dlc``) while CPU fallback
  is disabled, so either the whole model becomes QNN ops or the conversion
  fails; ctxbin then rewrites that DLC under the requested graph name (ONNX
  Runtime names graphs ``QNNExecutionProvider_..._<hash>_1_0``). The session
  runs in a child process: the QNN libraries write to stderr and a crash in
  them must not take the caller down.
- ``"ctxbin"``: ctxbin's own lowering pass (:mod:`ctxbin.passes.onnx_to_qnn`)
  and DLC writer, with no vendor code.

``"auto"`` takes ``qnn-ir`` when ``onnxruntime-qnn`` is usable here, else ``ctxbin``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import BackendError, BackendUnavailableError, FormatError, InputError
from .formats import dlc
from .formats import onnx as onnx_format
from .ir import Container

__all__ = ["ROUTES", "convert", "route_problem"]

#: Conversion routes ``convert`` accepts.
ROUTES = ("auto", "qnn-ir", "ctxbin")

_TIMEOUT = 600.0

# The child: one session with the QNN EP dumping the graph as a DLC; every node
# must go to QNN (no CPU fallback), else session creation fails and says which.
_CHILD = r"""
import json, sys
import onnxruntime as ort, onnxruntime_qnn as oq
model, out_dir = sys.argv[1], sys.argv[2]
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
so = ort.SessionOptions()
so.log_severity_level = 3
so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
so.add_provider_for_devices(devs, json.loads(sys.argv[3]))
ort.InferenceSession(model, so)
"""

# HTP settings the dump is made with: float graphs need fp16 precision mode,
# which needs a SoC model and HTP architecture (ORACLES.md).
_PROVIDER_OPTIONS = {
    "backend_type": "htp",
    "soc_model": "60",
    "htp_arch": "75",
    "enable_htp_fp16_precision": "1",
    "dump_qnn_ir_dlc": "1",
}


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise InputError(f"unknown conversion route {route!r}; expected one of {', '.join(ROUTES)}")


def route_problem(route: str) -> str:
    """Why ``route`` (``"qnn-ir"`` or ``"ctxbin"``) cannot run here; "" when it can."""
    _check_route(route)
    if route != "qnn-ir":
        return ""  # ctxbin's own lowering is pure Python
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        return "the QNN IR backend in onnxruntime-qnn runs on Linux x86_64 only"
    for mod in ("onnxruntime", "onnxruntime_qnn"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install 'ctxbin[htp]')"
    return ""


def convert(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    name: str | None = None,
    route: str = "auto",
) -> Container:
    """Convert the ONNX model at ``onnx_path`` into a DLC v4 at ``out_path``
    holding one graph named ``name`` (default: the ONNX graph's name, else the
    file stem); returns the written container, read back from ``out_path``."""
    _check_route(route)
    source = onnx_format.read(onnx_path, name=name)  # validates the model; gives the graph's name
    graph_name = source.graphs[0].name
    if route == "auto":
        route = "qnn-ir" if not route_problem("qnn-ir") else "ctxbin"
    problem = route_problem(route)
    if problem:
        other = "ctxbin" if route == "qnn-ir" else "qnn-ir"
        raise BackendUnavailableError(f"conversion route {route!r} is unavailable: {problem}; try route={other!r}")
    if route == "qnn-ir":
        _convert_qnn_ir(Path(os.fspath(onnx_path)), Path(os.fspath(out_path)), graph_name, source)
    else:
        from .passes.onnx_to_qnn import lower

        lowered = lower(source.graphs[0])
        dlc.write(dataclasses.replace(source, graphs=(dataclasses.replace(lowered, name=graph_name),)), out_path)
    return dlc.read(out_path)


def _convert_qnn_ir(onnx_path: Path, out_path: Path, graph_name: str, source: Container) -> None:
    with tempfile.TemporaryDirectory(prefix="ctxbin-convert-") as tmp:
        options = {**_PROVIDER_OPTIONS, "dump_qnn_ir_dlc_dir": tmp}
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, str(onnx_path.resolve()), tmp, json.dumps(options)],
                capture_output=True, text=True, timeout=_TIMEOUT, cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise BackendError(f"the QNN IR backend did not finish converting {onnx_path} within {_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise BackendError(f"the QNN IR backend could not convert {onnx_path}: {why}")
        dumped = sorted(Path(tmp).glob("*.dlc"))
        if len(dumped) != 1:
            raise BackendError(
                f"the QNN IR backend wrote {len(dumped)} DLC files for {onnx_path}; expected one graph"
            )
        made = dlc.read(dumped[0])
        if len(made.graphs) != 1:
            raise FormatError(f"the QNN IR backend's DLC holds {len(made.graphs)} graphs; expected one", path=dumped[0])
        graph = made.graphs[0]
        want = ({t.name for t in source.graphs[0].inputs}, {t.name for t in source.graphs[0].outputs})
        got = ({t.name for t in graph.inputs}, {t.name for t in graph.outputs})
        if got != want:
            raise FormatError(
                f"the QNN IR backend's graph has inputs {sorted(got[0])} and outputs {sorted(got[1])}, "
                f"the model {sorted(want[0])} and {sorted(want[1])}",
                path=dumped[0], obj=graph.name,
            )
        dlc.write(dataclasses.replace(made, graphs=(dataclasses.replace(graph, name=graph_name),)), out_path)
