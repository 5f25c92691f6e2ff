"""QNN Transpose (tensor param ``perm``)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "Transpose")
def _transpose(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    perm = [int(p) for p in np.asarray(node.attrs.get("perm", ())).reshape(-1)]
    if sorted(perm) != list(range(x.ndim)):
        raise InputError(f"node {node.name!r} (Transpose): perm {perm} is not a permutation of {x.ndim} axes")
    return [np.ascontiguousarray(np.transpose(x, perm))]
