"""QNN Concat (scalar ``axis``) and its inverse Split (``axis``, tensor
``split_index``: the start of every part after the first)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("qnn", "Concat")
def _concat(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    if not xs:
        raise InputError(f"node {node.name!r} (Concat): no inputs")
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), xs[0].ndim)  # type: ignore[arg-type]
    try:
        return [np.concatenate(xs, axis=axis)]
    except ValueError as e:
        raise InputError(f"node {node.name!r} (Concat): shapes {[x.shape for x in xs]} do not join on axis {axis}") from e


@kernel("qnn", "Split")
def _split(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), x.ndim)  # type: ignore[arg-type]
    index = [int(i) for i in np.asarray(node.attrs.get("split_index", ())).reshape(-1)]
    if index != sorted(index) or any(not 0 <= i <= x.shape[axis] for i in index) or len(index) + 1 != len(node.outputs):
        raise InputError(
            f"node {node.name!r} (Split): split_index {index} does not cut axis {axis} of {x.shape} "
            f"into {len(node.outputs)} parts"
        )
    return np.split(x, index, axis=axis)
