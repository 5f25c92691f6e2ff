"""Gemm: ``alpha * op(A) @ op(B) + beta * C`` with optional transposes and a
unidirectionally broadcast, optional ``C``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Gemm")
def _gemm(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    assert a is not None and b is not None
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    y = np.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else beta * c)
    return [y.astype(a.dtype, copy=False)]
