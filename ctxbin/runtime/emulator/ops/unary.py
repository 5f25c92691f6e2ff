"""Elementwise math functions that are one numpy ufunc each (Sqrt, Exp, Log, Neg,
Abs, Reciprocal, Floor, Ceil, Round, Sign, trigonometric and hyperbolic
functions). The output has the input's dtype."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []

_UFUNCS = {
    "Sqrt": np.sqrt,
    "Exp": np.exp,
    "Log": np.log,
    "Neg": np.negative,
    "Abs": np.abs,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": np.rint,  # ONNX rounds halves to even, as rint does
    "Sign": np.sign,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
}


@kernel("onnx", *_UFUNCS)
def _unary(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return [_UFUNCS[node.op_type](x).astype(x.dtype, copy=False)]
