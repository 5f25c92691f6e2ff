"""ONNX activations of one input: Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid,
HardSwish. Outputs keep the input's dtype."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(x * x.dtype.type(alpha) + x.dtype.type(beta), 0, 1)


_FUNCS: dict[str, Callable[[Node, np.ndarray], np.ndarray]] = {
    "Relu": lambda node, x: np.maximum(x, x.dtype.type(0)),
    "LeakyRelu": lambda node, x: np.where(x >= 0, x, x * x.dtype.type(node.attrs.get("alpha", 0.01))),
    "Sigmoid": lambda node, x: _sigmoid(x),
    "Tanh": lambda node, x: np.tanh(x),
    "HardSigmoid": lambda node, x: _hard_sigmoid(
        x, float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    ),
    "HardSwish": lambda node, x: x * _hard_sigmoid(x, 1 / 6, 0.5),
}


@kernel("onnx", *_FUNCS)
def _activation(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    with np.errstate(over="ignore"):
        return [np.asarray(_FUNCS[node.op_type](node, x)).astype(x.dtype, copy=False)]
