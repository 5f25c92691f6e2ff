"""ONNX variadic elementwise ops with multidirectional broadcasting: Sum, Mean,
Max, Min. Max/Min propagate NaN, as onnxruntime does."""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []

_REDUCE = {"Sum": np.add, "Mean": np.add, "Max": np.maximum, "Min": np.minimum}


@kernel("onnx", *_REDUCE)
def _variadic(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    if not xs:
        raise InputError(f"node {node.name!r} ({node.op_type}): no inputs")
    dtype = xs[0].dtype
    try:
        y = functools.reduce(_REDUCE[node.op_type], xs)
    except ValueError as e:
        raise InputError(
            f"node {node.name!r} ({node.op_type}): shapes {[x.shape for x in xs]} do not broadcast"
        ) from e
    if node.op_type == "Mean":
        y = y / len(xs)
    return [np.array(y, dtype, copy=len(xs) == 1)]
