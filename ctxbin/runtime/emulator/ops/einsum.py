"""Einsum: numpy's einsum on the ONNX equation (same notation), with contraction
order optimisation."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Einsum")
def _einsum(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    eq = node.attrs["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    out = np.einsum(eq.replace(" ", ""), *xs, optimize=len(xs) > 2)
    return [np.asarray(out).astype(xs[0].dtype, copy=False)]
