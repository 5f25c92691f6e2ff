"""Small IR graphs built in memory for tests that need weights, not a real model."""

from __future__ import annotations

import numpy as np

from ctxbin.ir import DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob

__all__ = ["add_chain"]


def add_chain(name: str, weights: dict[str, np.ndarray], width: int = 4) -> Graph:
    """x -> Add(w0) -> Add(w1) ...: one static tensor per weight, runnable on
    the emulator when every weight broadcasts against ``x`` of shape (width,)."""
    tensors: dict[str, Tensor] = {}
    nodes = []
    prev = "x"
    for i, (wname, arr) in enumerate(weights.items()):
        tensors[wname] = Tensor(wname, DType.FLOAT32, arr.shape, TensorKind.STATIC, data=Blob.from_array(arr))
        out = f"{name}_a{i}"
        nodes.append(Node(f"add{i}", "Add", "onnx", (prev, wname), (out,)))
        prev = out
    x = Tensor("x", DType.FLOAT32, (width,), TensorKind.INPUT)
    y = Tensor(prev, DType.FLOAT32, (width,), TensorKind.OUTPUT)
    tensors.update({"x": x, prev: y})
    return Graph(name, (x,), (y,), tuple(nodes), tensors, opsets={"": 17})
