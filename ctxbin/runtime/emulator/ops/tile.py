"""Tile: repeat the input ``repeats[i]`` times along each axis."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import check_shape, int_tuple

__all__: list[str] = []


@kernel("onnx", "Tile")
def _tile(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, repeats = inputs[0], inputs[1]
    assert x is not None and repeats is not None
    reps = int_tuple(repeats)
    if len(reps) != x.ndim or any(r < 0 for r in reps):
        raise InputError(f"node {node.name!r} (Tile): repeats {reps} do not fit rank {x.ndim}")
    check_shape(node, tuple(d * r for d, r in zip(x.shape, reps)))
    return [np.tile(x, reps)]
