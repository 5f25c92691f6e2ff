"""Softmax and LogSoftmax along one axis (opset 13 semantics: default axis -1).

Opsets 1-12 defined both on the input coerced to 2-D at ``axis`` (default 1):
:func:`softmax_2d` implements that form for graphs whose opset says so.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__ = ["softmax", "softmax_2d"]


def softmax(x: np.ndarray, axis: int, log: bool = False) -> np.ndarray:
    """(Log)softmax of ``x`` along ``axis``, max-shifted for stability, in x's dtype."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    if log:
        shifted -= np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        return shifted
    np.exp(shifted, out=shifted)
    shifted /= np.sum(shifted, axis=axis, keepdims=True)
    return shifted


def softmax_2d(x: np.ndarray, axis: int, log: bool = False) -> np.ndarray:
    """Opset < 13 semantics: flatten to ``[prod(shape[:axis]), prod(shape[axis:])]``,
    normalise each row, restore the shape."""
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = x.reshape(rows, -1) if x.size else x.reshape(rows, int(np.prod(x.shape[axis:])))
    return softmax(flat, 1, log).reshape(x.shape)


@kernel("onnx", "Softmax", "LogSoftmax", since=1)
def _softmax_v1(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 1)), x.ndim)
    return [softmax_2d(x, axis, log=node.op_type == "LogSoftmax")]


@kernel("onnx", "Softmax", "LogSoftmax", since=13)
def _softmax(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), x.ndim)
    return [softmax(x, axis, log=node.op_type == "LogSoftmax")]
