"""ONNX Clip: bounds from attributes (opset 6) or from optional inputs (opset
11 on). When min > max every element becomes max, as the spec says."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Clip")
def _clip(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    lo = inputs[1] if len(inputs) > 1 else node.attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 else node.attrs.get("max")
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, x.dtype))
    return [y if y is not x else x.copy()]
