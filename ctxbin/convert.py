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

:func:`convert_many` converts several models for linking without writing a
DLC per model: ctxbin's lowering stays in memory, and the vendor's route runs
one child process for all models (one ONNX Runtime start, not one per model).
Its ``"auto"`` resolves as :func:`convert`'s does; ``"ctxbin"`` is the faster
choice (measured ~4x faster than the vendor's on the full FCN, and
bit-identical on HTP on the tested models: ``tests/test_emulator_vs_htp.py``).
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
from collections.abc import Sequence
from pathlib import Path

from .errors import BackendError, BackendUnavailableError, FormatError, InputError
from .formats import dlc
from .formats import onnx as onnx_format
from .ir import Container
from .passes.shapes import require_static_inputs

__all__ = ["ROUTES", "convert", "convert_many", "route_problem"]

#: Conversion routes ``convert`` accepts.
ROUTES = ("auto", "qnn-ir", "ctxbin")

_TIMEOUT = 600.0

# The child: one session per model with the QNN EP dumping the graph as a DLC
# into that model's folder; every node must go to QNN (no CPU fallback), else
# session creation fails and says which. It names each model before starting
# it, so the parent knows which one failed.
_CHILD = r"""
import json, sys
import onnxruntime as ort, onnxruntime_qnn as oq
jobs, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
for i, (model, out_dir) in enumerate(jobs):
    print("ctxbin-convert-model", i, flush=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_provider_for_devices(devs, {**options, "dump_qnn_ir_dlc_dir": out_dir})
    ort.InferenceSession(model, so)
"""

_STARTED = "ctxbin-convert-model"  # the child's line before each model

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


def _resolve(route: str) -> str:
    """The concrete route ``route`` means for one model; raises when it cannot run here."""
    _check_route(route)
    if route == "auto":
        route = "qnn-ir" if not route_problem("qnn-ir") else "ctxbin"
    problem = route_problem(route)
    if problem:
        other = "ctxbin" if route == "qnn-ir" else "qnn-ir"
        raise BackendUnavailableError(f"conversion route {route!r} is unavailable: {problem}; try route={other!r}")
    return route


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
    route = _resolve(route)
    source = onnx_format.read(onnx_path, name=name)  # validates the model; gives the graph's name
    require_static_inputs(source.graphs[0])  # before the vendor's route fails on it obscurely
    with tempfile.TemporaryDirectory(prefix="ctxbin-convert-") as tmp:
        if route == "qnn-ir":
            (made,) = _convert_qnn_ir([Path(os.fspath(onnx_path))], [source], Path(tmp))
        else:
            made = _lower(source)
        dlc.write(made, out_path)
    return dlc.read(out_path)


def convert_many(
    onnx_paths: Sequence[str | os.PathLike],
    names: Sequence[str | None],
    work: str | os.PathLike,
    *,
    route: str = "auto",
) -> list[Container]:
    """Convert each ONNX model of ``onnx_paths`` into a container holding one
    qnn-namespace graph named as ``names`` says (None: the ONNX graph's name),
    for linking; nothing is written but the vendor route's dumps in ``work``,
    which the returned containers read their weights from (keep it until they
    are written out).

    ``route`` as for :func:`convert`: ``"auto"`` is the vendor's lowering
    (``"qnn-ir"``) where onnxruntime-qnn runs, else ctxbin's (``"ctxbin"``),
    which is several times faster and was checked against the vendor's
    (same ops and params; bit-identical HTP outputs on the tested models)."""
    route = _resolve(route)
    if len(names) != len(onnx_paths):
        raise InputError(f"{len(onnx_paths)} models but {len(names)} names")
    paths = [Path(os.fspath(p)) for p in onnx_paths]
    sources = [onnx_format.read(p, name=n) for p, n in zip(paths, names)]
    for src in sources:
        require_static_inputs(src.graphs[0])
    if route == "ctxbin":
        return [_lower(src) for src in sources]
    return list(_convert_qnn_ir(paths, sources, Path(work)))


def _lower(source: Container) -> Container:
    """ctxbin's own lowering of ``source``'s one graph, under its name, in memory."""
    from .passes.onnx_to_qnn import lower

    graph = source.graphs[0]
    return dataclasses.replace(source, graphs=(dataclasses.replace(lower(graph), name=graph.name),))


def _convert_qnn_ir(onnx_paths: list[Path], sources: list[Container], work: Path) -> list[Container]:
    """The vendor's lowering of every model, in one child process; each result
    reads its weights from its dump in a fresh folder under ``work``."""
    folders = [Path(tempfile.mkdtemp(prefix=f"{p.stem}-", dir=work)) for p in onnx_paths]
    jobs = [[str(p.resolve()), str(f)] for p, f in zip(onnx_paths, folders)]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(jobs), json.dumps(_PROVIDER_OPTIONS)],
            capture_output=True, text=True, timeout=_TIMEOUT * len(jobs), cwd=work, check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackendError(
            f"the QNN IR backend did not finish converting {', '.join(map(str, onnx_paths))} "
            f"within {_TIMEOUT * len(jobs):g} s"
        ) from None
    if proc.returncode != 0:
        started = [ln.split()[-1] for ln in proc.stdout.splitlines() if ln.startswith(_STARTED)]
        failed = onnx_paths[int(started[-1])] if started else onnx_paths[0]
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        raise BackendError(f"the QNN IR backend could not convert {failed}: {why}")
    return [_renamed_dump(p, f, src) for p, f, src in zip(onnx_paths, folders, sources)]


def _renamed_dump(onnx_path: Path, folder: Path, source: Container) -> Container:
    """The QNN IR backend's one-graph dump in ``folder``, checked against
    ``source`` and renamed as ``source``'s graph."""
    dumped = sorted(folder.glob("*.dlc"))
    if len(dumped) != 1:
        raise BackendError(f"the QNN IR backend wrote {len(dumped)} DLC files for {onnx_path}; expected one graph")
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
    return dataclasses.replace(made, graphs=(dataclasses.replace(graph, name=source.graphs[0].name),))
