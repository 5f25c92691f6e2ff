"""QNN activations: ``Neuron`` / ``ElementWiseNeuron`` (the function chosen by
scalar param ``operation``, QNN's ElementWiseNeuron codes) and ``Prelu``.

Codes checked against real DLCs written from ONNX Elu, Gelu (an Erf pattern the
converter fuses), HardSigmoid, HardSwish, Relu, Clip, Sigmoid, Softplus, Tanh."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ....ir import Node
from ..primitives import choice
from ..registry import kernel
from .erf import erf

__all__: list[str] = []


def _param(node: Node, name: str, default: float) -> float:
    return float(node.attrs.get(name, default))  # type: ignore[arg-type]


def _softplus(x: np.ndarray, node: Node) -> np.ndarray:
    beta, threshold = _param(node, "beta", 1.0), _param(node, "threshold", 20.0)
    bx = beta * x
    # linear above the threshold, as the op defines (and exp would overflow)
    return np.where(bx > threshold, x, np.logaddexp(0, np.minimum(bx, threshold)) / beta)


_OPERATIONS: dict[int, Callable[[np.ndarray, Node], np.ndarray]] = {
    0: lambda x, n: np.where(x > 0, x, _param(n, "alpha", 1.0) * np.expm1(np.minimum(x, 0))),  # ELU
    1: lambda x, n: 0.5 * x * (1 + erf(x / np.sqrt(2).astype(x.dtype))),  # GELU
    2: lambda x, n: np.clip(_param(n, "alpha", 0.2) * x + _param(n, "beta", 0.5), 0, 1),  # HARD_SIGMOID
    3: lambda x, n: x * np.clip(x + 3, 0, 6) / 6,  # HARD_SWISH
    4: lambda x, n: np.maximum(x, 0),  # RELU
    5: lambda x, n: np.clip(x, _param(n, "min_value", 0.0), _param(n, "max_value", np.inf)),  # RELU_MIN_MAX
    6: lambda x, n: 0.5 * (1 + np.tanh(0.5 * x)),  # SIGMOID (tanh form: no overflow)
    7: _softplus,  # SOFTPLUS
    8: lambda x, n: np.tanh(x),  # TANH
}


@kernel("qnn", "Neuron", "ElementWiseNeuron")
def _neuron(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    fn = choice(node, "operation", _OPERATIONS, -1)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return [np.asarray(fn(work, node)).astype(x.dtype, copy=False)]


@kernel("qnn", "Prelu")
def _prelu(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, alpha = inputs[0], inputs[1]
    assert x is not None and alpha is not None
    return [np.where(x >= 0, x, x * alpha).astype(x.dtype, copy=False)]
