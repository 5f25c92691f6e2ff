"""Comparisons and boolean logic with broadcasting: Equal, Less, LessOrEqual,
Greater, GreaterOrEqual, And, Or, Xor, Not. Outputs are bool."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []

_UFUNCS = {
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}


@kernel("onnx", *_UFUNCS)
def _binary(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    return [_UFUNCS[node.op_type](a, b)]


@kernel("onnx", "Not")
def _not(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [np.logical_not(x)]
