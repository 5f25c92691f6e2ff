"""Transpose: permute axes (default: reverse them). Returns a view."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import int_tuple, norm_axes

__all__: list[str] = []


@kernel("onnx", "Transpose")
def _transpose(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    perm = node.attrs.get("perm")
    if perm is None:
        return [x.T]
    return [np.transpose(x, norm_axes(node, int_tuple(perm), x.ndim))]
