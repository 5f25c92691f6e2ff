"""QNN Batchnorm (inference): ``x * scale + bias`` per channel, the last axis
(NHWC); the converter has already folded mean and variance into scale and bias."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "Batchnorm")
def _batchnorm(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, scale = inputs[0], inputs[1]
    assert x is not None and scale is not None
    bias = inputs[2] if len(inputs) > 2 else None
    c = x.shape[-1] if x.ndim else 0
    if scale.size != c or (bias is not None and bias.size != c):
        raise InputError(
            f"node {node.name!r} (Batchnorm): scale/bias of {scale.size}/{None if bias is None else bias.size} "
            f"values for {c} channels"
        )
    y = x * scale.reshape(-1).astype(x.dtype, copy=False)
    if bias is not None:
        y += bias.reshape(-1).astype(x.dtype, copy=False)
    return [y]
