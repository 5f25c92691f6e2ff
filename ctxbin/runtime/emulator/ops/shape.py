"""Shape: the input's dimensions as int64, optionally the ``[start:end]`` part
(opset 15; out-of-range bounds are clamped)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Shape")
def _shape(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    dims = x.shape[start : None if end is None else int(end)]
    return [np.array(dims, dtype=np.int64)]
