"""ONNX Pad: modes constant, reflect, edge, wrap; pads from the attribute
(opset 2) or the input (opset 11 on), optionally on a subset of ``axes``
(opset 18); negative pads crop."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from ._common import axes_of, int_tuple, norm_axes

__all__: list[str] = []

#: ONNX pad modes; numpy.pad spells them the same way
_MODES = ("constant", "reflect", "edge", "wrap")


@kernel("onnx", "Pad")
def _pad(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    if len(inputs) > 1 and inputs[1] is not None:
        pads = int_tuple(inputs[1])
    else:
        pads = int_tuple(node.attrs.get("pads", ()))
    if len(inputs) > 2 and inputs[2] is not None and np.asarray(inputs[2]).size:
        value = np.asarray(inputs[2]).reshape(-1)[0]
    else:
        value = node.attrs.get("value", 0)
    mode = str(node.attrs.get("mode", "constant"))
    if mode not in _MODES:
        raise InputError(f"node {node.name!r} (Pad): unknown mode {mode!r}")
    axes = axes_of(node, list(inputs), 3)
    axes = tuple(range(x.ndim)) if axes is None else norm_axes(node, axes, x.ndim)
    if len(pads) != 2 * len(axes):
        raise InputError(f"node {node.name!r} (Pad): {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * x.ndim, [0] * x.ndim
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    # crop the negative pads first, then pad the rest
    crop = tuple(slice(max(0, -b), x.shape[d] - max(0, -e)) for d, (b, e) in enumerate(zip(begin, end)))
    if any(s.start > s.stop for s in crop):
        raise InputError(f"node {node.name!r} (Pad): negative pads {pads} crop more than shape {x.shape}")
    y = x[crop]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    if mode != "constant" and any(w != (0, 0) and n == 0 for w, n in zip(widths, y.shape)):
        raise InputError(f"node {node.name!r} (Pad): mode {mode!r} cannot pad an empty axis")
    if mode == "constant":
        return [np.pad(y, widths, mode="constant", constant_values=np.asarray(value, x.dtype))]
    return [np.pad(y, widths, mode=mode)]
