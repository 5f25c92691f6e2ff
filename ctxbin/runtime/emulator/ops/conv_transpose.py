"""ONNX ConvTranspose (1-D/2-D/3-D, groups, dilations, strides, pads,
output_padding, output_shape, SAME_UPPER/SAME_LOWER).

One matmul gives every tap's contribution for every input position
(``W^T @ x``); col2im then adds the taps into the output, one strided slice
per kernel tap (a loop over the kernel, never over pixels)."""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel
from ._common import int_tuple
from ._window import int_attr

__all__: list[str] = []


def _pads(node: Node, spatial: Sequence[int], full: Sequence[int]) -> tuple[list[int], list[int]]:
    """Begin and end padding (negative = the output grows) per spatial dim."""
    n = len(spatial)
    auto_pad = str(node.attrs.get("auto_pad", "NOTSET"))
    shape = node.attrs.get("output_shape")
    if shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if shape is not None:
            target = int_tuple(shape)[-n:]
        else:
            target = tuple(i * s for i, s in zip(spatial, int_attr(node.attrs, "strides", n, 1)))
        total = [f - t for f, t in zip(full, target)]
        if auto_pad == "SAME_UPPER":
            return [t // 2 for t in total], [t - t // 2 for t in total]
        return [t - t // 2 for t in total], [t // 2 for t in total]
    pads = int_attr(node.attrs, "pads", 2 * n, 0)
    if len(pads) != 2 * n:
        raise InputError(f"node {node.name!r} (ConvTranspose): pads {pads} do not fit {n} spatial dims")
    return list(pads[:n]), list(pads[n:])


@kernel("onnx", "ConvTranspose")
def _conv_transpose(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    assert x is not None and w is not None
    b = inputs[2] if len(inputs) > 2 else None
    groups = int(node.attrs.get("group", 1))
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    nsp = len(spatial)
    if w.ndim != x.ndim or groups < 1 or c % groups or w.shape[0] != c:
        raise InputError(
            f"node {node.name!r} (ConvTranspose): input {x.shape}, weight {w.shape}, group {groups} do not fit"
        )
    kern = w.shape[2:]
    strides = int_attr(node.attrs, "strides", nsp, 1)
    dilations = int_attr(node.attrs, "dilations", nsp, 1)
    out_pad = int_attr(node.attrs, "output_padding", nsp, 0)
    full = [(i - 1) * s + (k - 1) * d + 1 + p for i, s, k, d, p in zip(spatial, strides, kern, dilations, out_pad)]
    begin, end = _pads(node, spatial, full)
    out_sp = [f - b_ - e for f, b_, e in zip(full, begin, end)]
    if min(out_sp, default=1) < 0:
        raise InputError(f"node {node.name!r} (ConvTranspose): pads {begin + end} exceed output {full}")

    dt = compute_dtype(x)
    cg, mg = c // groups, w.shape[1]
    m = mg * groups
    ktaps = math.prod(kern)
    wt = np.asarray(w, dt).reshape(groups, cg, mg * ktaps).transpose(0, 2, 1)
    cols = np.matmul(wt, np.asarray(x, dt).reshape(n, groups, cg, math.prod(spatial)))
    cols = cols.reshape((n, m, ktaps) + tuple(spatial))

    # room for negative pads (output grows past the full extent) on either side
    lo = [max(0, -p) for p in begin]
    hi = [max(0, -p) for p in end]
    buf = np.zeros((n, m) + tuple(f + a + z for f, a, z in zip(full, lo, hi)), dt)
    for t, offs in enumerate(itertools.product(*(range(k) for k in kern))):
        region = tuple(
            slice(a + o * d, a + o * d + (i - 1) * s + 1, s)
            for a, o, d, i, s in zip(lo, offs, dilations, spatial, strides)
        )
        buf[(slice(None), slice(None)) + region] += cols[:, :, t]
    y = buf[(slice(None), slice(None)) + tuple(slice(a + p, a + p + o) for a, p, o in zip(lo, begin, out_sp))]
    if b is not None:
        y = y + np.asarray(b, dt).reshape((m,) + (1,) * nsp)
    return [np.ascontiguousarray(y).astype(x.dtype, copy=False)]
