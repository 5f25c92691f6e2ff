"""Constant folding for ``onnx``-namespace graphs whose shapes are known.

A node whose inputs are all static (weights, earlier folded results) becomes a
static tensor, computed by the emulator's own ONNX kernel; ``Shape`` of any
tensor becomes its (known) dimensions. What a vendor converter does too:
``Constant`` nodes, shape arithmetic, a positional table sliced by constants
all end up as weights. Results larger than :data:`MAX_FOLD_BYTES` stay nodes
(the size is known before anything is computed), so a hostile
``ConstantOfShape`` cannot exhaust memory here.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node, Tensor, TensorKind
from ..runtime.emulator.registry import lookup
from ..weights import Blob
from .rewrite import rebuild

__all__ = ["MAX_FOLD_BYTES", "fold_constants"]

MAX_FOLD_BYTES = 64 << 20
#: Ops whose result is not a function of their inputs.
_NOT_FOLDABLE = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"})


def _foldable(node: Node, graph_tensors: dict[str, Tensor], values: dict[str, np.ndarray],
              keep: set[str]) -> bool:
    # graph outputs stay produced by a node: a graph has no static outputs
    if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDABLE or keep.intersection(node.outputs):
        return False
    if node.op_type != "Shape" and any(x and x not in values for x in node.inputs):
        return False
    for x in node.outputs:
        t = graph_tensors.get(x) if x else None
        if x and (t is None or t.is_symbolic or math.prod(t.shape) * t.dtype.itemsize > MAX_FOLD_BYTES):  # type: ignore[arg-type]
            return False
    return lookup("onnx", node.op_type) is not None


def fold_constants(graph: Graph) -> Graph:
    """``graph`` with every foldable node replaced by static tensors (see module doc).

    Needs a tensor table with static shapes for node outputs
    (:func:`ctxbin.passes.shapes.infer_shapes`).
    """
    tensors = dict(graph.tensors)
    values: dict[str, np.ndarray] = {t.name: t.numpy() for t in graph.weights}
    graph_outputs = {t.name for t in graph.outputs}
    nodes: list[Node] = []
    for n in graph.nodes:
        if not _foldable(n, tensors, values, graph_outputs):
            nodes.append(n)
            continue
        if n.op_type == "Shape":
            t = tensors[n.inputs[0]]
            # a zero-stride view: the kernel sees the shape, no memory is used
            args = [np.broadcast_to(np.zeros((), t.dtype.numpy), tuple(t.shape))]  # type: ignore[arg-type]
        else:
            args = [values[x] if x else None for x in n.inputs]
        results = lookup("onnx", n.op_type)(n, args)  # type: ignore[misc]
        for name, value in zip(n.outputs, results):
            if not name:
                continue
            declared = tensors[name]
            arr = np.ascontiguousarray(np.asarray(value).astype(declared.dtype.numpy, copy=False)).reshape(declared.shape)  # type: ignore[arg-type]
            values[name] = arr
            tensors[name] = Tensor(name, declared.dtype, declared.shape, TensorKind.STATIC, declared.encoding,
                                   Blob.from_array(arr))
    return rebuild(graph, nodes, tensors)
