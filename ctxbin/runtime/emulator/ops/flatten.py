"""ONNX Flatten: dims before ``axis`` become rows, the rest columns."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Flatten")
def _flatten(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = int(node.attrs.get("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise InputError(f"node {node.name!r} (Flatten): axis {axis} out of range for rank {x.ndim}")
    if axis < 0:
        axis += x.ndim
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]
