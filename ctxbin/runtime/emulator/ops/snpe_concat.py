"""SNPE ``Concat`` layer (DLC v3): join the inputs along ``axis``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("snpe", "Concat")
def _concat(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    if not xs:
        raise InputError(f"node {node.name!r} (Concat): no inputs")
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), xs[0].ndim)  # type: ignore[arg-type]
    try:
        return [np.concatenate(xs, axis=axis)]
    except ValueError as e:
        raise InputError(f"node {node.name!r} (Concat): shapes {[x.shape for x in xs]} do not join on axis {axis}") from e
