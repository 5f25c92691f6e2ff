"""Reshape: ``0`` copies the input's dimension (unless ``allowzero=1``), ``-1``
is inferred. Returns a view when numpy can."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import int_tuple

__all__: list[str] = []


@kernel("onnx", "Reshape")
def _reshape(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, shape_in = inputs[0], inputs[1]
    assert x is not None and shape_in is not None
    shape = list(int_tuple(shape_in))
    if not node.attrs.get("allowzero", 0):
        for i, d in enumerate(shape):
            if d == 0:
                if i >= x.ndim:
                    raise InputError(f"node {node.name!r} (Reshape): 0 at position {i} but the input has rank {x.ndim}")
                shape[i] = x.shape[i]
    try:
        return [x.reshape(shape)]
    except ValueError as e:
        raise InputError(f"node {node.name!r} (Reshape): cannot reshape {x.shape} to {tuple(shape)}: {e}") from None
