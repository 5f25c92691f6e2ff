"""QNN StridedSlice: tensor param ``ranges`` (one ``[begin, end, stride]`` per
axis, negative positions counting from the end) with the bit masks
``begin_mask``/``end_mask`` (take the axis from its start / to its end) and
``shrink_axes`` (drop the axis, which keeps one element)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "StridedSlice")
def _strided_slice(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    ranges = np.asarray(node.attrs.get("ranges", np.zeros((0, 3))), np.int64)
    if ranges.shape != (x.ndim, 3) or (ranges[:, 2] == 0).any():
        raise InputError(f"node {node.name!r} (StridedSlice): ranges {ranges.tolist()} do not fit input {x.shape}")
    if int(node.attrs.get("new_axes_mask", 0)):  # type: ignore[arg-type]
        raise InputError(f"node {node.name!r} (StridedSlice): new_axes_mask is not supported by the emulator")
    begin_mask = int(node.attrs.get("begin_mask", 0))  # type: ignore[arg-type]
    end_mask = int(node.attrs.get("end_mask", 0))  # type: ignore[arg-type]
    shrink = int(node.attrs.get("shrink_axes", 0))  # type: ignore[arg-type]
    index: list[slice | int] = []
    for axis, (b, e, s) in enumerate(ranges.tolist()):
        if shrink >> axis & 1:
            if not -x.shape[axis] <= b < x.shape[axis]:
                raise InputError(f"node {node.name!r} (StridedSlice): index {b} out of range on axis {axis}")
            index.append(b)
            continue
        index.append(slice(None if begin_mask >> axis & 1 else b, None if end_mask >> axis & 1 else e, s))
    return [np.ascontiguousarray(x[tuple(index)])]
