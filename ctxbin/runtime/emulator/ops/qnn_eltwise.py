"""QNN element-wise ops as the QNN IR stores them: ``Eltwise_Binary`` and
``Eltwise_Unary`` (function in scalar param ``operation``, QNN's
ElementWiseBinary/ElementWiseUnary codes) and ``Eltwise_Ternary``
(``eltwise_type`` ``ElementWiseSelect``). Inputs broadcast numpy-style."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import choice
from ..registry import kernel

__all__: list[str] = []


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and np.asarray(b).dtype.kind in "iu":
        # integer division truncates toward zero (C semantics), not toward -inf
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
    return np.true_divide(a, b)


def _floor_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.floor_divide(a, b) if a.dtype.kind in "iu" else np.floor(a / b)


_BINARY: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    0: np.add,
    1: np.logical_and,
    2: _divide,
    3: np.equal,
    4: _floor_div,
    5: np.fmod,
    6: np.greater,
    7: np.greater_equal,
    8: np.less,
    9: np.less_equal,
    10: np.maximum,
    11: np.minimum,
    12: np.mod,
    13: np.multiply,
    14: np.not_equal,
    15: np.logical_or,
    16: np.power,
    17: lambda a, b: np.square(a - b),
    18: np.subtract,
    19: np.logical_xor,
}

_UNARY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    0: np.abs,
    1: np.arcsin,
    2: np.arctan,
    3: np.ceil,
    4: np.cos,
    5: np.exp,
    6: np.floor,
    7: np.log,
    8: np.negative,
    9: np.logical_not,
    10: np.reciprocal,
    11: np.rint,  # half to even, as ONNX Round
    12: lambda x: 1 / np.sqrt(x),
    13: np.sign,
    14: np.sin,
    15: np.sqrt,
}


@kernel("qnn", "Eltwise_Binary")
def _binary(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    fn = choice(node, "operation", _BINARY, -1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return [np.asarray(fn(a, b))]


@kernel("qnn", "Eltwise_Unary")
def _unary(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    fn = choice(node, "operation", _UNARY, -1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return [np.asarray(fn(x)).astype(x.dtype, copy=False) if x.dtype.kind == "f" else np.asarray(fn(x))]


@kernel("qnn", "Eltwise_Ternary")
def _ternary(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    cond, a, b = inputs[0], inputs[1], inputs[2]
    assert cond is not None and a is not None and b is not None
    kind = str(node.attrs.get("eltwise_type", ""))
    if kind != "ElementWiseSelect":
        raise InputError(f"node {node.name!r} (Eltwise_Ternary): eltwise_type {kind!r} is not ElementWiseSelect")
    return [np.where(cond.astype(bool), a, b)]
