"""ONNX Resize (opsets 10-19) and Upsample: modes nearest, linear and cubic
(antialias, exclude_outside, cubic_coeff_a), every coordinate transformation
mode including tf_crop_and_resize, every nearest_mode, scales or sizes,
``axes`` and ``keep_aspect_ratio_policy``.

Interpolation is separable: each resized axis is done in turn as a sum over a
few taps (1 nearest, 2 linear, 4 cubic, more when antialiasing), each tap one
gather along the axis times a per-position weight.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import norm_axes

__all__ = ["COORD_MODES", "NEAREST_MODES", "source_coords"]

#: ``coordinate_transformation_mode`` values :func:`source_coords` knows.
COORD_MODES = (
    "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
    "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize",
)
#: ``nearest_mode`` values: how a source coordinate rounds to an index.
NEAREST_MODES = {
    "round_prefer_floor": lambda x: np.ceil(x - 0.5),
    "round_prefer_ceil": lambda x: np.floor(x + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def source_coords(mode: str, length_in: int, length_out: int, scale: float,
                  roi: tuple[float, float] | None = None) -> np.ndarray:
    """Input coordinate of each output position along one axis, as ONNX Resize
    defines it for ``mode`` (one of :data:`COORD_MODES`; ``roi`` (start, end)
    is needed by tf_crop_and_resize only)."""
    y = np.arange(length_out, dtype=np.float64)
    scaled = scale * length_in  # the real-valued output length the mode formulas use
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = length_in / 2 * (1 - length_out / scaled)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return np.full(length_out, -0.5) if scaled == 1 else (y + 0.5) / scale - 0.5
    if mode == "align_corners":
        return np.zeros(length_out) if scaled == 1 else y * (length_in - 1) / (scaled - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode != "tf_crop_and_resize" or roi is None:
        raise InputError(f"coordinate_transformation_mode {mode!r} is unknown, or tf_crop_and_resize without roi")
    start, end = roi
    if scaled == 1:
        return np.full(length_out, (end - start) * (length_in - 1) / 2 + start * (length_in - 1))
    return start * (length_in - 1) + y * (end - start) * (length_in - 1) / (scaled - 1)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _taps(node: Node, coords: np.ndarray, length_in: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, taps] and weights [out, taps] of linear/cubic interpolation."""
    cubic = node.attrs.get("mode") == "cubic"
    support = 2 if cubic else 1
    stretch = min(scale, 1.0) if node.attrs.get("antialias", 0) else 1.0
    # the left neighbour is the last index strictly below x, so ratio is in (0, 1]
    base = np.ceil(coords).astype(np.int64) - 1
    ratio = coords - base
    start = math.floor(-support / stretch) + 1
    offsets = np.arange(start, 2 - start)
    dist = stretch * (offsets[None, :] - ratio[:, None])
    if cubic:
        weights = _cubic(dist, float(node.attrs.get("cubic_coeff_a", -0.75)))
    else:
        weights = np.clip(1 - np.abs(dist), 0, 1)
    if stretch < 1:
        weights /= weights.sum(axis=1, keepdims=True)
    index = base[:, None] + offsets[None, :]
    if node.attrs.get("exclude_outside", 0):
        weights = np.where((index < 0) | (index >= length_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights /= np.where(total == 0, 1.0, total)
    return np.clip(index, 0, length_in - 1), weights


def _resize_axis(node: Node, x: np.ndarray, axis: int, length_out: int, scale: float,
                 roi: tuple[float, float] | None, coord_mode: str, nearest_mode: str) -> np.ndarray:
    length_in = x.shape[axis]
    coords = source_coords(coord_mode, length_in, length_out, scale, roi)
    bshape = (1,) * axis + (length_out,) + (1,) * (x.ndim - axis - 1)
    if node.attrs.get("mode", "nearest") == "nearest":
        index = np.clip(NEAREST_MODES[nearest_mode](coords), 0, length_in - 1).astype(np.intp)
        y = np.take(x, index, axis=axis)
    else:
        index, weights = _taps(node, coords, length_in, scale)
        weights = weights.astype(x.dtype)
        y = np.take(x, index[:, 0], axis=axis) * weights[:, 0].reshape(bshape)
        for t in range(1, index.shape[1]):
            y += np.take(x, index[:, t], axis=axis) * weights[:, t].reshape(bshape)
    if coord_mode == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > length_in - 1)
        if outside.any():
            fill = np.asarray(node.attrs.get("extrapolation_value", 0.0), y.dtype)
            y = np.where(outside.reshape(bshape), fill, y)
    return y


def _vector(a: Optional[np.ndarray]) -> np.ndarray | None:
    """An optional 1-D input, None when absent or empty."""
    return None if a is None or np.asarray(a).size == 0 else np.asarray(a).reshape(-1)


@kernel("onnx", "Resize", "Upsample")
def _resize(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    rank = x.ndim
    legacy = node.op_type == "Upsample" or len(inputs) == 2  # Upsample, Resize-10: (X, scales)
    if legacy:
        scales = _vector(inputs[1]) if len(inputs) > 1 else None
        if scales is None and "scales" in node.attrs:
            scales = np.asarray(node.attrs["scales"], np.float64).reshape(-1)
        roi, sizes = None, None
        coord_mode, nearest_mode = "asymmetric", "floor"
    else:
        roi = _vector(inputs[1]) if len(inputs) > 1 else None
        scales = _vector(inputs[2]) if len(inputs) > 2 else None
        sizes = _vector(inputs[3]) if len(inputs) > 3 else None
        coord_mode = str(node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        nearest_mode = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
    mode = str(node.attrs.get("mode", "nearest"))
    if mode not in ("nearest", "linear", "cubic") or coord_mode not in COORD_MODES or nearest_mode not in NEAREST_MODES:
        raise InputError(
            f"node {node.name!r} ({node.op_type}): unsupported mode {mode!r} / "
            f"coordinate_transformation_mode {coord_mode!r} / nearest_mode {nearest_mode!r}"
        )
    axes = norm_axes(node, node.attrs["axes"], rank) if "axes" in node.attrs else tuple(range(rank))
    given = sizes if sizes is not None else scales
    if given is None or given.size != len(axes):
        raise InputError(
            f"node {node.name!r} ({node.op_type}): needs {len(axes)} scales or sizes, got "
            f"{None if given is None else given.size}"
        )
    if roi is not None and roi.size != 2 * len(axes):
        raise InputError(f"node {node.name!r} ({node.op_type}): roi has {roi.size} values for {len(axes)} axes")
    if coord_mode == "tf_crop_and_resize" and roi is None:
        raise InputError(f"node {node.name!r} ({node.op_type}): tf_crop_and_resize needs roi")

    length_in = [x.shape[a] for a in axes]
    if sizes is not None:
        length_out = [int(s) for s in sizes]
        axis_scales = [o / i if i else 1.0 for o, i in zip(length_out, length_in)]
        policy = str(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
        if policy in ("not_larger", "not_smaller"):
            common = (min if policy == "not_larger" else max)(axis_scales)
            axis_scales = [common] * len(axes)
            length_out = [int(common * i + 0.5) for i in length_in]
        elif policy != "stretch":
            raise InputError(f"node {node.name!r} ({node.op_type}): unknown keep_aspect_ratio_policy {policy!r}")
    else:
        assert scales is not None
        axis_scales = [float(s) for s in np.asarray(scales, np.float64)]
        length_out = [int(s * i) for s, i in zip(axis_scales, length_in)]
    if min(axis_scales) <= 0 or min(length_out) < 0:
        raise InputError(f"node {node.name!r} ({node.op_type}): scales {axis_scales} / sizes {length_out} not positive")

    float_in = x.dtype.kind == "f"
    y = x if mode == "nearest" or x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    for i, axis in enumerate(axes):
        axis_roi = None if roi is None else (float(roi[i]), float(roi[len(axes) + i]))
        if (length_out[i] == length_in[i] and math.isclose(axis_scales[i], 1.0)
                and (axis_roi is None or axis_roi == (0.0, 1.0))):
            continue
        y = _resize_axis(node, y, axis, length_out[i], axis_scales[i], axis_roi, coord_mode, nearest_mode)
    if y.dtype != x.dtype:
        if not float_in:
            info = np.iinfo(x.dtype)
            y = np.clip(np.rint(y), info.min, info.max)
        y = y.astype(x.dtype)
    return [y if y is not x else x.copy()]
