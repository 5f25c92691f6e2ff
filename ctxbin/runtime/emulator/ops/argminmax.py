"""ArgMax and ArgMin along ``axis`` (int64 indices), first or last occurrence of
the extreme (``select_last_index``), ``keepdims``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("onnx", "ArgMax", "ArgMin")
def _arg(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), x.ndim)
    fn = np.argmax if node.op_type == "ArgMax" else np.argmin
    keep = bool(node.attrs.get("keepdims", 1))
    if node.attrs.get("select_last_index", 0):
        # numpy returns the first occurrence: search the reversed axis instead
        idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=keep)
    else:
        idx = fn(x, axis=axis, keepdims=keep)
    return [np.asarray(idx, dtype=np.int64)]
