"""Running a graph by name on a backend: the emulator or QNN HTP."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import BackendError, BackendUnavailableError, CtxbinError
from ..ir import Graph

__all__ = ["RunResult", "run_graph", "BACKENDS"]

BACKENDS = ("auto", "emulator", "htp")


class RunResult(dict):
    """``{output name: array}``; ``.backend`` says which backend produced it and
    ``.note`` why (e.g. why ``auto`` fell back to the emulator)."""

    def __init__(self, outputs: Mapping[str, np.ndarray], backend: str, note: str = "") -> None:
        super().__init__(outputs)
        self.backend = backend
        self.note = note


def _htp_unusable(graph: Graph, library: Any = None) -> str:
    """Why HTP cannot run ``graph`` here ("" when it can)."""
    if graph.binary is None:
        return f"graph {graph.name!r} has no compiled HTP binary"
    if graph.binary.backend != "htp":
        return f"graph {graph.name!r} is compiled for {graph.binary.backend!r}, not htp"
    from . import htp

    return htp.unavailable_reason(library)


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray], backend: str = "auto", **options: Any) -> RunResult:
    if backend not in BACKENDS:
        raise CtxbinError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    note = ""
    if backend in ("auto", "htp"):
        why = _htp_unusable(graph, options.get("library"))
        if not why:
            from . import htp

            if backend == "htp" or not graph.nodes:
                return RunResult(htp.run(graph, inputs, **options), "htp")
            try:
                return RunResult(htp.run(graph, inputs, **options), "htp")
            except BackendError as e:
                # auto with an emulatable graph: a failing HTP library (e.g. the
                # x86 simulation refusing shared weights) is not the last word
                note = f"HTP failed, ran on the emulator: {e}"
        elif backend == "htp":
            raise BackendUnavailableError(f"cannot run on HTP: {why}")
        else:
            note = f"HTP not used: {why}"
    from .emulator import Emulator

    return RunResult(Emulator(graph).run(inputs), "emulator", note)
