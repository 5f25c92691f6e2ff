"""Squeeze and Unsqueeze: remove / insert size-1 axes, given by the ``axes``
attribute (opsets < 13) or input (13+). Both return views."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import axes_of, norm_axes

__all__: list[str] = []


@kernel("onnx", "Squeeze")
def _squeeze(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axes = axes_of(node, list(inputs), 1)
    if not axes:  # absent or empty: every size-1 axis
        return [np.squeeze(x)]
    axes = norm_axes(node, axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise InputError(f"node {node.name!r} (Squeeze): axes {axes} of shape {x.shape} are not all 1")
    return [np.squeeze(x, axis=axes)]


@kernel("onnx", "Unsqueeze")
def _unsqueeze(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axes = axes_of(node, list(inputs), 1)
    if axes is None:
        raise InputError(f"node {node.name!r} (Unsqueeze): no axes given")
    return [np.expand_dims(x, norm_axes(node, axes, x.ndim + len(axes)))]
