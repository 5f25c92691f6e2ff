"""ConstantOfShape: a tensor of the given shape filled with the one-element
``value`` attribute (float32 zero when absent)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import check_shape, int_tuple

__all__: list[str] = []


@kernel("onnx", "ConstantOfShape")
def _constant_of_shape(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    shape = inputs[0]
    assert shape is not None
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32))).reshape(-1)
    return [np.full(check_shape(node, int_tuple(shape)), value[0], dtype=value.dtype)]
