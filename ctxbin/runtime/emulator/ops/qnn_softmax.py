"""QNN Softmax: scalar ``axis`` (default last), ``beta`` scales the input."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis
from .softmax import softmax

__all__: list[str] = []


@kernel("qnn", "Softmax")
def _softmax(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), x.ndim)  # type: ignore[arg-type]
    beta = float(node.attrs.get("beta", 1.0))  # type: ignore[arg-type]
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return [softmax(work * beta if beta != 1.0 else work, axis).astype(x.dtype, copy=False)]
