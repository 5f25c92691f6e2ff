"""Elementwise arithmetic with numpy (multidirectional) broadcasting:
Add, Sub, Mul, Div, Pow, Mod. The output keeps the first input's dtype."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__ = ["trunc_divide"]


def trunc_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero (C semantics, as ONNX Div specifies),
    done in integers so large int64 values stay exact."""
    with np.errstate(divide="ignore"):
        q = np.floor_divide(a, b)
        if a.dtype.kind == "u":
            return q
        r = np.remainder(a, b)
    fix = (r != 0) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


@kernel("onnx", "Add", "Sub", "Mul", "Div")
def _basic(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    op = node.op_type
    if op == "Add":
        out = np.add(a, b)
    elif op == "Sub":
        out = np.subtract(a, b)
    elif op == "Mul":
        out = np.multiply(a, b)
    elif a.dtype.kind in "iu":
        out = trunc_divide(a, b)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.divide(a, b)
    return [out.astype(a.dtype, copy=False)]


@kernel("onnx", "Pow")
def _pow(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, y = inputs[0], inputs[1]
    assert x is not None and y is not None
    # the exponent may have another type than the base; the result has the base's
    if x.dtype.kind == "f":
        if y.ndim == 0 or y.size == 1:
            e = float(y.reshape(-1)[0]) if y.size else 0.0
            if e == 2.0:  # the common case in normalisations: a plain square
                return [np.square(x)]
            if e == 0.5:
                return [np.sqrt(x)]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return [np.power(x, y.astype(x.dtype, copy=False))]
    if y.dtype.kind == "f":
        return [np.power(x.astype(np.float64), y).astype(x.dtype)]
    return [np.power(x, y.astype(x.dtype, copy=False))]


@kernel("onnx", "Mod")
def _mod(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    # fmod=1: sign of the dividend (C fmod); fmod=0: sign of the divisor (Python %)
    fn = np.fmod if int(node.attrs.get("fmod", 0)) else np.mod
    with np.errstate(divide="ignore", invalid="ignore"):
        return [fn(a, b).astype(a.dtype, copy=False)]
