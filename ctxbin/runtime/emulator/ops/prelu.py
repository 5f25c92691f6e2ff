"""ONNX PRelu: ``x`` where positive, ``slope * x`` elsewhere; the slope
broadcasts to ``x`` (one-directional)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "PRelu")
def _prelu(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, slope = inputs[0], inputs[1]
    assert x is not None and slope is not None
    try:
        shape: tuple[int, ...] | None = np.broadcast_shapes(slope.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise InputError(f"node {node.name!r} (PRelu): slope {slope.shape} does not broadcast to {x.shape}")
    return [np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)]
