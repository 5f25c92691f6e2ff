"""ONNX LRN: each element divided by ``(bias + alpha/size * sum of squares over
a window of channels) ** beta``. The window sums come from one cumulative sum
along the channel axis."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "LRN")
def _lrn(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    size = int(node.attrs.get("size", 0))
    if size < 1 or x.ndim < 2:
        raise InputError(f"node {node.name!r} (LRN): size {size} on rank {x.ndim} input")
    alpha = float(node.attrs.get("alpha", 1e-4))
    beta = float(node.attrs.get("beta", 0.75))
    bias = float(node.attrs.get("bias", 1.0))
    dt = compute_dtype(x)
    c = x.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.square(x, dtype=dt)
    csum = np.zeros((x.shape[0], c + 1) + x.shape[2:], dt)
    np.cumsum(sq, axis=1, out=csum[:, 1:])
    hi = np.minimum(np.arange(c) + after + 1, c)
    lo = np.maximum(np.arange(c) - before, 0)
    window = csum[:, hi] - csum[:, lo]
    y = x / (dt.type(bias) + dt.type(alpha / size) * window) ** dt.type(beta)
    return [y.astype(x.dtype, copy=False)]
