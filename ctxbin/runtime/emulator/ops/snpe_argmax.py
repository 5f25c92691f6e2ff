"""SNPE ``ArgMax`` layer (DLC v3): index of the largest value along ``axis``
(first on ties), ``keep_dims``; int32 indices (a quantized output type gets
them as real values, which the emulator puts on the output's grid)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("snpe", "ArgMax")
def _argmax(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    if x.size == 0:
        raise InputError(f"node {node.name!r} (ArgMax): empty input")
    axis = norm_axis(node, int(node.attrs.get("axis", -1)), x.ndim)  # type: ignore[arg-type]
    y = np.argmax(x, axis=axis, keepdims=bool(node.attrs.get("keep_dims", False)))
    spec = outputs[0] if outputs else None
    return [y.astype(np.float32 if spec is not None and spec.dtype.is_quantized else np.int32)]
