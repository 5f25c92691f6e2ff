"""Where: elementwise choice between two tensors by a bool condition, broadcasting all three."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Where")
def _where(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    cond, x, y = inputs[0], inputs[1], inputs[2]
    assert cond is not None and x is not None and y is not None
    return [np.where(cond, x, y).astype(x.dtype, copy=False)]
