"""Gather: pick slices along ``axis`` by (possibly negative) indices."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__ = ["checked_indices"]


def checked_indices(node: Node, idx: np.ndarray, dim: int) -> np.ndarray:
    """``idx`` with negative entries counted from the end; out-of-range entries
    are an error naming the node (numpy would raise a bare IndexError)."""
    idx = np.asarray(idx).astype(np.int64, copy=False)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise InputError(
            f"node {node.name!r} ({node.op_type}): index out of range "
            f"[{int(idx.min())}, {int(idx.max())}] for a dimension of size {dim}"
        )
    return np.where(idx < 0, idx + dim, idx) if idx.size and idx.min() < 0 else idx


@kernel("onnx", "Gather")
def _gather(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    data, idx = inputs[0], inputs[1]
    assert data is not None and idx is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), data.ndim)
    return [np.take(data, checked_indices(node, idx, data.shape[axis]), axis=axis)]
