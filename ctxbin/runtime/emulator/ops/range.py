"""Range: ``start, start + delta, ...`` up to (excluding) ``limit``; the count is
``max(ceil((limit - start) / delta), 0)`` and the dtype that of ``start``."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import check_count

__all__: list[str] = []


@kernel("onnx", "Range")
def _range(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])  # type: ignore[arg-type]
    dtype = start.dtype
    if delta == 0:
        raise InputError(f"node {node.name!r} (Range): delta is 0")
    count = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    check_count(node, count)
    # start + i * delta, computed in the output dtype as the ONNX function body does
    return [(start + np.arange(count, dtype=dtype) * delta).astype(dtype, copy=False)]
