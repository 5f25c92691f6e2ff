"""TopK: the ``k`` largest (or smallest) values along ``axis`` and their int64
indices, ties broken toward the lower index as ONNX requires."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import int_tuple, norm_axis

__all__: list[str] = []


@kernel("onnx", "TopK")
def _topk(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, k_in = inputs[0], inputs[1]
    assert x is not None and k_in is not None
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), x.ndim)
    (k,) = int_tuple(k_in)
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise InputError(f"node {node.name!r} (TopK): k={k} for a dimension of size {n}")
    if node.attrs.get("largest", 1):
        # a stable ascending sort of the reversed axis, read from its end, gives
        # descending values with equal values in increasing index order
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = n - 1 - np.flip(order, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64, copy=False)]
