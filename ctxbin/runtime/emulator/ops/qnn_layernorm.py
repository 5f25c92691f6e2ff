"""QNN LayerNorm: normalise over tensor param ``axes`` with ``epsilon``, then
scale by ``gamma`` and shift by the optional ``beta`` (statistics in float32)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axes

__all__: list[str] = []


@kernel("qnn", "LayerNorm")
def _layernorm(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, gamma = inputs[0], inputs[1]
    assert x is not None and gamma is not None
    beta = inputs[2] if len(inputs) > 2 else None
    axes = norm_axes(node, np.asarray(node.attrs.get("axes", (-1,))).reshape(-1), x.ndim)
    eps = float(node.attrs.get("epsilon", 1e-5))  # type: ignore[arg-type]
    xw = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    mean = xw.mean(axis=axes, keepdims=True)
    d = xw - mean
    y = d / np.sqrt(np.square(d).mean(axis=axes, keepdims=True) + eps)
    # gamma/beta cover the normalised axes, which the op requires to be the trailing ones
    y *= gamma
    if beta is not None:
        y += beta
    return [y.astype(x.dtype, copy=False)]
