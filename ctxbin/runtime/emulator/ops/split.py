"""Split: along ``axis`` into the sizes given by the ``split`` input (opset 13+)
or attribute (older), else into equal parts: ``num_outputs`` (opset 18) or one per
output, the last part smaller when the size does not divide."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import int_tuple, norm_axis

__all__: list[str] = []


@kernel("onnx", "Split")
def _split(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), x.ndim)
    dim = x.shape[axis]
    if "split" in node.attrs:
        sizes = int_tuple(node.attrs["split"])
    elif len(inputs) > 1 and inputs[1] is not None:
        sizes = int_tuple(inputs[1])
    else:
        parts = int(node.attrs.get("num_outputs", len(node.outputs)))
        chunk = -(-dim // parts)
        sizes = tuple(min(chunk, max(dim - i * chunk, 0)) for i in range(parts))
    if sum(sizes) != dim or any(s < 0 for s in sizes):
        raise InputError(f"node {node.name!r} (Split): sizes {sizes} do not add up to dimension {dim}")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)
