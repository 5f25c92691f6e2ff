"""LayerNormalization: normalise over the trailing axes from ``axis`` on, then
scale and shift. Statistics are computed in float32 at least (``stash_type=1``);
the optional Mean and InvStdDev outputs keep the reduced axes as size 1."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("onnx", "LayerNormalization")
def _layernorm(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    assert x is not None and scale is not None
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), x.ndim)
    eps = float(node.attrs.get("epsilon", 1e-5))
    work = np.result_type(x.dtype, np.float32) if int(node.attrs.get("stash_type", 1)) == 1 else x.dtype
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    cols = int(np.prod(x.shape[axis:], dtype=np.int64))
    # a 2-D view makes both reductions run over the contiguous last axis
    xm = x.reshape(rows, cols).astype(work, copy=False)
    mean = np.mean(xm, axis=1, keepdims=True)
    d = xm - mean
    var = np.mean(np.square(d), axis=1, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    d *= inv
    y = d.reshape(x.shape)
    y *= scale
    if bias is not None:
        y += bias
    stats_shape = x.shape[:axis] + (1,) * (x.ndim - axis)
    return [y.astype(x.dtype, copy=False), mean.reshape(stats_shape), inv.reshape(stats_shape)]
