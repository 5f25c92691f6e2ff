"""Slice: starts/ends/axes/steps as inputs (opset 10+) or attributes (opset 1).
ONNX's clamping of out-of-range and negative bounds is exactly Python's slice
semantics, so each axis becomes one ``slice`` and the result is a view."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import int_tuple, norm_axes

__all__: list[str] = []


def _param(node: Node, inputs: Sequence[Optional[np.ndarray]], index: int, name: str) -> tuple[int, ...] | None:
    if name in node.attrs:
        return int_tuple(node.attrs[name])
    if len(inputs) > index and inputs[index] is not None:
        return int_tuple(inputs[index])
    return None


@kernel("onnx", "Slice")
def _slice(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    starts = _param(node, inputs, 1, "starts") or ()
    ends = _param(node, inputs, 2, "ends") or ()
    axes = _param(node, inputs, 3, "axes")
    steps = _param(node, inputs, 4, "steps")
    axes = norm_axes(node, axes, x.ndim) if axes is not None else tuple(range(len(starts)))
    steps = steps if steps is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise InputError(
            f"node {node.name!r} (Slice): starts, ends, axes, steps have lengths "
            f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}"
        )
    if 0 in steps:
        raise InputError(f"node {node.name!r} (Slice): a step is 0")
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = slice(s, e, st)
    return [x[tuple(index)]]
