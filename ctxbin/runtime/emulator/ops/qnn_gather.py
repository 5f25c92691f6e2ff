"""QNN Gather (scalar ``axis``): ``output = take(input, indices, axis)``, negative
indices counting from the end; an index out of range is an error."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("qnn", "Gather")
def _gather(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, idx = inputs[0], inputs[1]
    assert x is not None and idx is not None
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), x.ndim)  # type: ignore[arg-type]
    if idx.dtype.kind not in "iu":
        raise InputError(f"node {node.name!r} (Gather): indices are {idx.dtype}, not integers")
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise InputError(f"node {node.name!r} (Gather): index out of range [{-n}, {n}) on axis {axis}")
    return [np.take(x, idx.astype(np.intp), axis=axis)]
