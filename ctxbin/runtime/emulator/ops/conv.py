"""ONNX Conv (1-D/2-D/3-D, groups, depthwise, dilations, strides, explicit or
automatic padding).

General convolutions are im2col + one matmul: a strided window view of the
padded input (no copy) is gathered into columns a band of output rows at a
time, so the column buffer stays cache-sized, and each band is one BLAS call.
Depthwise convolutions (one input channel per group) accumulate tap by tap
instead, which beats thousands of tiny matmuls.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel
from ._window import Window, pad_spatial, taps, window

__all__: list[str] = []

#: target size of one band of im2col columns, in bytes
_BAND_BYTES = 2 << 20


def _depthwise(xp: np.ndarray, w: np.ndarray, win: Window, groups: int) -> np.ndarray:
    n = xp.shape[0]
    per_group = w.shape[0] // groups
    out = np.zeros((n, groups, per_group) + win.out, xp.dtype)
    wg = w.reshape((groups, per_group, -1))
    bshape = (groups, per_group) + (1,) * len(win.out)
    for i, (_, sl) in enumerate(taps(win)):
        out += xp[(slice(None), slice(None)) + sl][:, :, None] * wg[:, :, i].reshape(bshape)
    return out.reshape((n, w.shape[0]) + win.out)


def _im2col_matmul(xp: np.ndarray, w: np.ndarray, win: Window, groups: int) -> np.ndarray:
    n, c = xp.shape[:2]
    m = w.shape[0]
    nsp = len(win.out)
    extent = tuple((k - 1) * d + 1 for k, d in zip(win.kernel, win.dilations))
    # [N, C, *positions, *extent] -> keep strided positions and dilated taps
    view = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nsp)))
    view = view[(slice(None), slice(None))
                + tuple(slice(None, (o - 1) * s + 1, s) for o, s in zip(win.out, win.strides))
                + tuple(slice(None, None, d) for d in win.dilations)]
    # taps before positions, so each band's columns are [C*K, positions]
    view = view.transpose((0, 1) + tuple(range(2 + nsp, 2 + 2 * nsp)) + tuple(range(2, 2 + nsp)))
    ktaps = math.prod(win.kernel)
    cg, mg = c // groups, m // groups
    wmat = w.reshape(groups, mg, cg * ktaps)
    rest = math.prod(win.out[1:])
    out = np.empty((n, groups, mg, win.out[0] * rest), xp.dtype)
    if ktaps == 1 and all(s == 1 for s in win.strides):
        rows = win.out[0]  # pointwise: the columns are the input itself, no copy to band
    else:
        rows = max(1, _BAND_BYTES // max(1, c * ktaps * rest * n * xp.itemsize))
    lead = (slice(None),) * (2 + nsp)
    for r0 in range(0, win.out[0], rows):
        r1 = min(win.out[0], r0 + rows)
        cols = view[lead + (slice(r0, r1),)].reshape(n, groups, cg * ktaps, (r1 - r0) * rest)
        np.matmul(wmat, cols, out=out[..., r0 * rest:r1 * rest])
    return out.reshape((n, m) + win.out)


def _convolve(node: Node, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, groups: int) -> np.ndarray:
    """``Conv`` of ``x`` [N, C, *S] with ``w`` [M, C/groups, *K] (+ bias ``b`` [M])."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise InputError(f"node {node.name!r} (Conv): input rank {x.ndim} and weight rank {w.ndim} do not match")
    c, m = x.shape[1], w.shape[0]
    if groups < 1 or c % groups or m % groups or w.shape[1] * groups != c:
        raise InputError(
            f"node {node.name!r} (Conv): {c} input channels, weight {w.shape}, group {groups} do not fit"
        )
    kshape = node.attrs.get("kernel_shape")
    kernel_shape = tuple(int(k) for k in kshape) if kshape is not None else w.shape[2:]
    if tuple(kernel_shape) != tuple(w.shape[2:]):
        raise InputError(f"node {node.name!r} (Conv): kernel_shape {kernel_shape} != weight {w.shape[2:]}")
    win = window(node, x.shape[2:], kernel_shape)
    dt = compute_dtype(x)
    xp = pad_spatial(np.asarray(x, dt), win)
    wc = np.asarray(w, dt)
    if w.shape[1] == 1 and groups > 1:
        y = _depthwise(xp, wc, win, groups)
    else:
        y = _im2col_matmul(xp, wc, win, groups)
    if b is not None:
        y += np.asarray(b, dt).reshape((m,) + (1,) * len(win.out))
    return y


@kernel("onnx", "Conv")
def _conv(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    assert x is not None and w is not None
    b = inputs[2] if len(inputs) > 2 else None
    y = _convolve(node, x, w, b, int(node.attrs.get("group", 1)))
    return [y.astype(x.dtype, copy=False)]
