"""QNN FullyConnected and MatMul.

FullyConnected: input ``[..., K]`` is taken as rows of ``K`` (leading dims
flattened, as the op defines), weights ``[N, K]``, optional bias ``[N]``; output
``[rows, N]`` unless ``keep_dims`` keeps the leading dims. MatMul: batched,
broadcasting, with ``transpose_in0``/``transpose_in1`` on the last two dims."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "FullyConnected")
def _fully_connected(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    assert x is not None and w is not None
    bias = inputs[2] if len(inputs) > 2 else None
    if w.ndim != 2 or x.size % w.shape[1]:
        raise InputError(f"node {node.name!r} (FullyConnected): input {x.shape} does not fit weights {w.shape}")
    dt = compute_dtype(x, w)
    y = x.reshape(-1, w.shape[1]).astype(dt, copy=False) @ w.astype(dt, copy=False).T
    if bias is not None:
        y += bias.astype(dt, copy=False).reshape(-1)
    if bool(node.attrs.get("keep_dims", False)):
        y = y.reshape(x.shape[:-1] + (w.shape[0],))
    return [y.astype(x.dtype, copy=False) if x.dtype.kind == "f" else y]


@kernel("qnn", "MatMul")
def _matmul(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    if bool(node.attrs.get("transpose_in0", False)):
        a = np.swapaxes(a, -1, -2)
    if bool(node.attrs.get("transpose_in1", False)):
        b = np.swapaxes(b, -1, -2)
    dt = compute_dtype(a, b)
    try:
        y = np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))
    except ValueError as e:
        raise InputError(f"node {node.name!r} (MatMul): shapes {a.shape} and {b.shape} do not multiply") from e
    return [y.astype(a.dtype, copy=False) if a.dtype.kind == "f" else y]
