"""ONNX pooling: MaxPool (with optional Indices output), AveragePool
(count_include_pad, ceil_mode, dilations, auto_pad), GlobalAveragePool and
GlobalMaxPool. Windows are reduced tap by tap over whole strided slices (a loop
over the kernel, never over pixels)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import compute_dtype
from ..registry import kernel
from ._common import int_tuple
from ._window import Window, pad_spatial, taps, window

__all__: list[str] = []


def _window_of(node: Node, x: np.ndarray) -> Window:
    if x.ndim < 3:
        raise InputError(f"node {node.name!r} ({node.op_type}): input rank {x.ndim} < 3")
    if "kernel_shape" not in node.attrs:
        raise InputError(f"node {node.name!r} ({node.op_type}): no kernel_shape")
    return window(node, x.shape[2:], int_tuple(node.attrs["kernel_shape"]),
                  ceil_mode=bool(node.attrs.get("ceil_mode", 0)))


def _lowest(dtype: np.dtype) -> float | int:
    return -np.inf if dtype.kind == "f" else int(np.iinfo(dtype).min)


def _input_index(x: np.ndarray, win: Window, offs: tuple[int, ...], column_major: bool) -> np.ndarray:
    """Flat index into ``x`` of the element tap ``offs`` reads, per output position."""
    spatial = x.shape[2:]
    coords = [
        np.arange(o, dtype=np.int64) * s - b + k * d
        for o, s, b, k, d in zip(win.out, win.strides, win.pads_begin, offs, win.dilations)
    ]
    flat = np.zeros(win.out, np.int64)
    for axis, c in enumerate(coords):
        # element stride of this spatial axis in a row- or column-major layout
        step = math.prod(spatial[:axis]) if column_major else math.prod(spatial[axis + 1:])
        shape = [1] * len(spatial)
        shape[axis] = -1
        flat = flat + c.reshape(shape) * step
    base = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2] + (1,) * len(spatial))
    return base * math.prod(spatial) + flat


@kernel("onnx", "MaxPool")
def _max_pool(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    win = _window_of(node, x)
    xp = pad_spatial(x, win, _lowest(x.dtype))
    want_index = len(node.outputs) > 1 and bool(node.outputs[1])
    column_major = bool(node.attrs.get("storage_order", 0))
    best: np.ndarray | None = None
    index: np.ndarray | None = None
    for offs, sl in taps(win):
        v = xp[(slice(None), slice(None)) + sl]
        if best is None:
            best = v.copy()
            if want_index:
                index = _input_index(x, win, offs, column_major)
            continue
        if want_index:
            better = v > best
            index = np.where(better, _input_index(x, win, offs, column_major), index)
        np.maximum(best, v, out=best)
    assert best is not None
    return [best, index] if want_index else [best]


@kernel("onnx", "AveragePool")
def _average_pool(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    win = _window_of(node, x)
    dt = compute_dtype(x)
    xp = pad_spatial(np.asarray(x, dt), win)
    # positions that count toward each window's divisor: the input, plus the
    # op's own padding when count_include_pad (never the ceil-mode overhang)
    spatial = x.shape[2:]
    counted = np.zeros(xp.shape[2:], dt)
    if node.attrs.get("count_include_pad", 0):
        counted[tuple(slice(0, i + b + e) for i, b, e in zip(spatial, win.pads_begin, win.pads_end))] = 1
    else:
        counted[tuple(slice(b, b + i) for i, b in zip(spatial, win.pads_begin))] = 1
    total = np.zeros(x.shape[:2] + win.out, dt)
    count = np.zeros(win.out, dt)
    for _, sl in taps(win):
        total += xp[(slice(None), slice(None)) + sl]
        count += counted[sl]
    total /= np.maximum(count, 1)
    return [total.astype(x.dtype, copy=False)]


@kernel("onnx", "GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    if x.ndim < 3:
        raise InputError(f"node {node.name!r} ({node.op_type}): input rank {x.ndim} < 3")
    axes = tuple(range(2, x.ndim))
    if node.op_type == "GlobalMaxPool":
        return [x.max(axis=axes, keepdims=True)]
    dt = compute_dtype(x)
    return [x.mean(axis=axes, keepdims=True, dtype=dt).astype(x.dtype, copy=False)]
