"""SNPE ``Neuron`` layer (DLC v3): activation by ``type``. Codes seen in real
files: 1 ReLU, 4 ReLU clamped to [``min_clamp``, ``max_clamp``] (ReLU6)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []

_RELU, _RELU_MIN_MAX = 1, 4


@kernel("snpe", "Neuron")
def _neuron(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    kind = int(node.attrs.get("type", -1))  # type: ignore[arg-type]
    if kind == _RELU:
        return [np.maximum(x, 0)]
    if kind == _RELU_MIN_MAX:
        lo, hi = float(node.attrs.get("min_clamp", 0.0)), float(node.attrs.get("max_clamp", 0.0))  # type: ignore[arg-type]
        return [np.clip(x, lo, hi)]
    raise InputError(f"node {node.name!r} (Neuron): neuron type {kind} is not supported (1 ReLU, 4 ReLU min/max)")
