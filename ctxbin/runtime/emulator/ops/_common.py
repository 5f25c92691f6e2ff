"""Small helpers shared by the ONNX-namespace kernels (axes, integer lists)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ....errors import InputError
from ....ir import Node

__all__ = ["norm_axis", "norm_axes", "int_tuple", "axes_of", "MAX_ELEMENTS", "check_count", "check_shape"]


def norm_axis(node: Node, axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``, counting negative axes from the end."""
    if not -rank <= axis < max(rank, 1):
        raise InputError(f"node {node.name!r} ({node.op_type}): axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(node: Node, axes: Iterable[int], rank: int) -> tuple[int, ...]:
    out = tuple(norm_axis(node, int(a), rank) for a in axes)
    if len(set(out)) != len(out):
        raise InputError(f"node {node.name!r} ({node.op_type}): repeated axes {tuple(axes)}")
    return out


def int_tuple(value: Any) -> tuple[int, ...]:
    """A tuple of Python ints from an attribute (int or tuple) or a 0/1-D integer array."""
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def axes_of(node: Node, inputs: list, index: int) -> tuple[int, ...] | None:
    """Axes given either as the ``axes`` attribute (older opsets) or as input ``index``
    (newer opsets); None when neither is present."""
    if "axes" in node.attrs:
        return int_tuple(node.attrs["axes"])
    if len(inputs) > index and inputs[index] is not None:
        return int_tuple(inputs[index])
    return None


#: Kernels whose output size comes from tensor *values* (Range, Tile, Expand,
#: ConstantOfShape) refuse more elements than this: a hostile graph must get an
#: error, not exhaust memory.
MAX_ELEMENTS = 1 << 31


def check_count(node: Node, count: int) -> None:
    if count > MAX_ELEMENTS:
        raise InputError(
            f"node {node.name!r} ({node.op_type}): output of {count} elements exceeds the limit of {MAX_ELEMENTS}"
        )


def check_shape(node: Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if any(d < 0 for d in shape):
        raise InputError(f"node {node.name!r} ({node.op_type}): negative dimension in {shape}")
    count = 1
    for d in shape:
        count *= d
    check_count(node, count)
    return shape
