"""SNPE ``ElementwiseOp`` layer (DLC v3): ``op`` 0 is a weighted sum of the
inputs with ``coeffs`` (one per input; 1 when absent), the only code seen."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("snpe", "ElementwiseOp")
def _elementwise(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    op = int(node.attrs.get("op", -1))  # type: ignore[arg-type]
    if op != 0:
        raise InputError(f"node {node.name!r} (ElementwiseOp): op {op} is not supported (0 = weighted sum)")
    coeffs = tuple(node.attrs.get("coeffs", ())) or (1.0,) * len(xs)  # type: ignore[arg-type]
    if len(coeffs) != len(xs) or not xs:
        raise InputError(f"node {node.name!r} (ElementwiseOp): {len(coeffs)} coefficients for {len(xs)} inputs")
    total = np.zeros(np.broadcast_shapes(*(x.shape for x in xs)), np.float32)
    for c, x in zip(coeffs, xs):
        total += np.float32(c) * x
    return [total]
