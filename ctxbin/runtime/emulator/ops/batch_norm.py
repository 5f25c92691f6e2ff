"""ONNX BatchNormalization: inference with running statistics, and training
mode (batch statistics, plus the updated running mean and variance as extra
outputs) for graphs exported with ``training_mode=1``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "BatchNormalization")
def _batch_norm(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, scale, bias, mean, var = inputs[:5]
    assert x is not None and scale is not None and bias is not None and mean is not None and var is not None
    if x.ndim < 2 or any(p.shape != (x.shape[1],) for p in (scale, bias, mean, var)):
        raise InputError(
            f"node {node.name!r} (BatchNormalization): input {x.shape} and per-channel "
            f"parameters {[p.shape for p in (scale, bias, mean, var)]} do not fit"
        )
    eps = float(node.attrs.get("epsilon", 1e-5))
    dt = compute_dtype(x)
    bshape = (x.shape[1],) + (1,) * (x.ndim - 2)
    extra: list[np.ndarray] = []
    if node.attrs.get("training_mode", 0):
        axes = (0,) + tuple(range(2, x.ndim))
        batch_mean = x.mean(axis=axes, dtype=dt)
        batch_var = x.var(axis=axes, dtype=dt)
        momentum = float(node.attrs.get("momentum", 0.9))
        extra = [
            (mean * momentum + batch_mean * (1 - momentum)).astype(mean.dtype),
            (var * momentum + batch_var * (1 - momentum)).astype(var.dtype),
        ]
        mean, var = batch_mean, batch_var
    # fold into one multiply-add per element
    k = np.asarray(scale, dt) / np.sqrt(np.asarray(var, dt) + dt.type(eps))
    shift = np.asarray(bias, dt) - np.asarray(mean, dt) * k
    y = np.multiply(x, k.reshape(bshape), dtype=dt)
    y += shift.reshape(bshape)
    return [y.astype(x.dtype, copy=False)] + extra
