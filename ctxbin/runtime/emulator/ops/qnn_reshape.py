"""QNN Reshape: no shape parameter; the output shape is the one the graph's
tensor table declares for the output."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..primitives import declared_shape
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "Reshape")
def _reshape(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    shape = declared_shape(node, outputs)
    if math.prod(shape) != x.size:
        raise InputError(f"node {node.name!r} (Reshape): input {x.shape} cannot become declared shape {shape}")
    return [x.reshape(shape)]
