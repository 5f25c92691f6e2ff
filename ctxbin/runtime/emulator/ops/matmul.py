"""MatMul: numpy matmul semantics (batched, broadcasting batch dimensions, 1-D
operands promoted and the added dimension removed), as ONNX specifies."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "MatMul")
def _matmul(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    return [np.matmul(a, b).astype(a.dtype, copy=False)]
