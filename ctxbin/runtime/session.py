"""Running a graph by name on a backend: the emulator or QNN HTP."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import BackendError, BackendUnavailableError, InputError
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


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray], backend: str = "auto", **options: Any) -> RunResult:
    """Run ``graph`` on ``backend`` (one of :data:`BACKENDS`). ``"auto"`` tries HTP
    and runs the emulator when HTP cannot be used here or (for a graph the
    emulator can run) fails, saying why in ``.note``. ``options`` go to
    :func:`ctxbin.runtime.htp.run`."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(inputs, Mapping):
        names = [t.name for t in graph.inputs]
        raise InputError(f"inputs must be a mapping {{input name: array}} for {names}, not {type(inputs).__name__}")
    note = ""
    if backend != "emulator":
        from . import htp

        try:
            return RunResult(htp.run(graph, inputs, **options), "htp")
        except BackendUnavailableError as e:
            if backend == "htp":
                raise
            note = f"HTP not used: {e}"
        except BackendError as e:
            # a failing HTP library (e.g. the x86 simulation refusing shared
            # weights) is not the last word when the graph can be emulated
            if backend == "htp" or not graph.nodes:
                raise
            note = f"HTP failed, ran on the emulator: {e}"
    if options:
        if backend == "emulator":
            raise InputError(f"options {sorted(options)} apply to the htp backend only")
        note += f"; the HTP options {sorted(options)} did not apply"
    from .emulator import Emulator

    return RunResult(Emulator(graph).run(inputs), "emulator", note)
