"""The Reduce* family: Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp,
SumSquare over ``axes`` given as attribute (older opsets) or input (ReduceSum 13+,
the rest 18+). No axes reduces everything, unless ``noop_with_empty_axes=1``,
which passes the input through. Results keep the input's dtype."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import axes_of, norm_axes

__all__: list[str] = []

Axes = tuple[int, ...]


def _extreme(fn: Callable, sign: float) -> Callable[[np.ndarray, Axes], np.ndarray]:
    # an empty reduction gives the identity element (-inf for max, +inf for min)
    def reduce(x: np.ndarray, axes: Axes) -> np.ndarray:
        if x.dtype.kind == "f":
            start = sign * np.inf
        elif x.dtype.kind == "b":
            start = sign > 0
        else:
            info = np.iinfo(x.dtype)
            start = info.min if sign < 0 else info.max
        return fn(x, axis=axes, keepdims=True, initial=start)

    return reduce


def _log_sum_exp(x: np.ndarray, axes: Axes) -> np.ndarray:
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axes, keepdims=True))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    return np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m


_REDUCERS: dict[str, Callable[[np.ndarray, Axes], np.ndarray]] = {
    "ReduceSum": lambda x, a: np.sum(x, axis=a, keepdims=True, dtype=x.dtype),
    "ReduceMean": lambda x, a: np.mean(x, axis=a, keepdims=True),
    "ReduceMax": _extreme(np.max, -1.0),
    "ReduceMin": _extreme(np.min, 1.0),
    "ReduceProd": lambda x, a: np.prod(x, axis=a, keepdims=True, dtype=x.dtype),
    "ReduceL1": lambda x, a: np.sum(np.abs(x), axis=a, keepdims=True, dtype=x.dtype),
    "ReduceL2": lambda x, a: np.sqrt(np.sum(np.square(x), axis=a, keepdims=True, dtype=x.dtype)),
    "ReduceSumSquare": lambda x, a: np.sum(np.square(x), axis=a, keepdims=True, dtype=x.dtype),
    "ReduceLogSum": lambda x, a: np.log(np.sum(x, axis=a, keepdims=True, dtype=x.dtype)),
    "ReduceLogSumExp": _log_sum_exp,
}


@kernel("onnx", *_REDUCERS)
def _reduce(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axes = axes_of(node, list(inputs), 1)
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = tuple(range(x.ndim))
    axes = norm_axes(node, axes, x.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _REDUCERS[node.op_type](x, axes)
    if not node.attrs.get("keepdims", 1):
        out = np.squeeze(out, axis=axes)
    return [np.asarray(out).astype(x.dtype, copy=False)]
