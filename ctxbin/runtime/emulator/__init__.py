"""ctxbin's numpy emulator: runs a graph node by node with registered kernels.

Every op type is checked when the emulator is built, so a graph with
unsupported ops fails at load with the full list, not at the first run.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...errors import InputError, UnsupportedOpError
from ...ir import DType, Graph, Node, Tensor
from .registry import Kernel, lookup

__all__ = ["Emulator", "supported"]


def _kernel_for(graph: Graph, node: Node) -> Kernel | None:
    opset = None
    if node.namespace == "onnx":
        domain = node.domain or ""
        opset = graph.opsets.get(domain, graph.opsets.get("ai.onnx") if domain == "" else None)
    return lookup(node.namespace, node.op_type, opset)


def supported(graph: Graph) -> list[str]:
    """Op types of ``graph`` that have no kernel, as ``namespace:op`` (empty = runnable)."""
    return sorted({f"{n.namespace}:{n.op_type}" for n in graph.nodes if _kernel_for(graph, n) is None})


def _quantized(t: Tensor) -> bool:
    return t.encoding is not None and t.dtype.is_quantized


def _constant(t: Tensor) -> np.ndarray:
    # quantized weights run in float: dequantize once, at load
    return t.encoding.dequantize(t.numpy()) if _quantized(t) else t.numpy()  # type: ignore[union-attr]


def _fake_quantize(t: Tensor, x: np.ndarray) -> np.ndarray:
    # the real values a quantized tensor can hold: what hardware passes on
    return t.encoding.dequantize(t.encoding.quantize(x, t.dtype))  # type: ignore[union-attr]


class Emulator:
    """A graph prepared for repeated runs on the CPU.

    Quantized activations run as float32 real values: a quantized graph input
    is dequantized (or, given as floats, put on its grid), every node output
    whose tensor has a fixed-point type and an encoding is fake-quantized, and a
    quantized graph output comes back as its real values (float32), as the HTP
    backend returns them by default.
    """

    def __init__(self, graph: Graph) -> None:
        missing = supported(graph)
        if missing:
            raise UnsupportedOpError(graph.name, missing)
        strings = [t.name for t in graph.inputs if t.dtype == DType.STRING]
        if strings:
            raise InputError(f"graph {graph.name!r}: the emulator cannot take string inputs {strings}")
        self.graph = graph
        self._steps = []
        for n in graph.nodes:
            fn = _kernel_for(graph, n)
            declared = [graph.tensors.get(o) for o in n.outputs] if fn.wants_outputs else None  # type: ignore[union-attr]
            self._steps.append((n, fn, declared))
        self._constants = {t.name: _constant(t) for t in graph.weights}
        self._fake = {t.name: t for t in graph.tensors.values() if t.data is None and _quantized(t)}
        # Free each intermediate after its last reader so peak memory stays
        # near the widest layer rather than the sum of all activations.
        keep = {t.name for t in graph.outputs}
        last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for name in n.inputs:
                if name:
                    last_use[name] = i
        self._release = [
            [x for x in n.inputs if x and last_use.get(x) == i and x not in keep and x not in self._constants]
            for i, n in enumerate(graph.nodes)
        ]

    def _check_inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.graph
        names = [t.name for t in g.inputs]
        unknown = sorted(set(feeds) - set(names))
        missing = [n for n in names if n not in feeds]
        if unknown or missing:
            raise InputError(
                f"graph {g.name!r} takes inputs {names}; "
                + (f"missing {missing}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown {unknown}" if unknown else "")
            )
        env: dict[str, np.ndarray] = {}
        for t in g.inputs:
            a = np.asarray(feeds[t.name])
            if len(a.shape) != len(t.shape) or any(
                isinstance(d, int) and d != s for d, s in zip(t.shape, a.shape)
            ):
                raise InputError(f"input {t.name!r} of graph {g.name!r} has shape {a.shape}, expected {t.shape}")
            want = t.dtype.numpy
            if _quantized(t) and (a.dtype == want or a.dtype.kind == "f"):
                # integers of the input's type are codes; real values snap to its grid
                a = t.encoding.dequantize(a) if a.dtype == want else _fake_quantize(t, a)  # type: ignore[union-attr]
            elif a.dtype != want:
                if t.dtype.is_quantized or not np.can_cast(a.dtype, want, "same_kind"):
                    raise InputError(f"input {t.name!r} of graph {g.name!r} is {a.dtype}, expected {want}")
                a = a.astype(want)
            env[t.name] = a
        return env

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = self._check_inputs(feeds)
        env.update(self._constants)
        for (node, fn, declared), release in zip(self._steps, self._release):
            args = [env[x] if x else None for x in node.inputs]
            outs = fn(node, args, outputs=declared) if declared is not None else fn(node, args)
            for name, value in zip(node.outputs, outs):
                if name:
                    spec = self._fake.get(name)
                    env[name] = value if spec is None else _fake_quantize(spec, value)
            for x in release:
                env.pop(x, None)
        return {t.name: env[t.name] for t in self.graph.outputs}
