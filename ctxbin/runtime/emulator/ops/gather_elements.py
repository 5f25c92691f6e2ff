"""GatherElements: ``out[i][j][k] = data[idx[i][j][k]][j][k]`` (for axis 0), i.e.
numpy's take_along_axis with ONNX's negative-index rule."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis
from .gather import checked_indices

__all__: list[str] = []


@kernel("onnx", "GatherElements")
def _gather_elements(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    data, idx = inputs[0], inputs[1]
    assert data is not None and idx is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), data.ndim)
    return [np.take_along_axis(data, checked_indices(node, idx, data.shape[axis]), axis=axis)]
