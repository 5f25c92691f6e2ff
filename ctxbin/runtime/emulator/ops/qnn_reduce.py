"""QNN Reduce as the QNN IR stores it: string param ``reduce_type``
(``ReduceMean``, ``ReduceSum``, ``ReduceMax``, ``ReduceMin``, ``ReduceProd``),
tensor ``axes``, scalar ``keep_dims``."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import choice
from ..registry import kernel
from ._common import norm_axes

__all__: list[str] = []

_REDUCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min, "ReduceProd": np.prod,
}


@kernel("qnn", "Reduce")
def _reduce(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    kind = str(node.attrs.get("reduce_type", ""))
    fn = choice(node, "reduce_type", _REDUCTIONS, "", str)
    axes = norm_axes(node, np.asarray(node.attrs.get("axes", ())).reshape(-1), x.ndim)
    if (kind in ("ReduceMax", "ReduceMin")) and x.size == 0:
        raise InputError(f"node {node.name!r} (Reduce): {kind} of an empty tensor")
    y = fn(x, axis=axes, keepdims=bool(node.attrs.get("keep_dims", False)))
    return [np.asarray(y).astype(x.dtype, copy=False)]
