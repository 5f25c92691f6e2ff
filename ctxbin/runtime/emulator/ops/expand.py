"""Expand: broadcast the input against a shape (both ways, as numpy does)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import check_shape, int_tuple

__all__: list[str] = []


@kernel("onnx", "Expand")
def _expand(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, shape = inputs[0], inputs[1]
    assert x is not None and shape is not None
    try:
        out_shape = np.broadcast_shapes(x.shape, int_tuple(shape))
    except ValueError:
        raise InputError(
            f"node {node.name!r} (Expand): shape {x.shape} does not broadcast to {int_tuple(shape)}"
        ) from None
    # a real array, not a read-only zero-stride view that could reach the caller
    return [np.array(np.broadcast_to(x, check_shape(node, out_shape)))]
