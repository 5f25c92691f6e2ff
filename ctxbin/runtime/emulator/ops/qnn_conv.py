"""QNN convolutions: Conv2d (any group), DepthWiseConv2d and TransposeConv2d.

Activations are NHWC; Conv2d/DepthWiseConv2d filters are ``[kh, kw, cin/group,
cout]`` and TransposeConv2d filters ``[kh, kw, cin, cout/group]``; ``stride``,
``dilation`` and ``pad_amount`` (``[[top, bottom], [left, right]]``) are tensor
params. The depthwise form of Conv2d (``group`` = input channels) is what the QNN
IR backend writes for ONNX depthwise convolutions.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..primitives import conv2d, pads_of, transpose_conv2d
from ..registry import kernel

__all__: list[str] = []


def _pads(node: Node) -> tuple[tuple[int, int], tuple[int, int]]:
    return pads_of(node.attrs.get("pad_amount", ((0, 0), (0, 0))))


@kernel("qnn", "Conv2d", "DepthWiseConv2d")
def _conv2d(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    assert x is not None and w is not None
    bias = inputs[2] if len(inputs) > 2 else None
    groups = x.shape[-1] if node.op_type == "DepthWiseConv2d" else int(node.attrs.get("group", 1))
    y = conv2d(
        x, w, bias, stride=node.attrs.get("stride", (1, 1)), pads=_pads(node),
        dilation=node.attrs.get("dilation", (1, 1)), groups=groups,
    )
    return [y.astype(x.dtype, copy=False)]


@kernel("qnn", "TransposeConv2d")
def _transpose_conv2d(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    assert x is not None and w is not None
    bias = inputs[2] if len(inputs) > 2 else None
    y = transpose_conv2d(
        x, w, bias, stride=node.attrs.get("stride", (1, 1)), pads=_pads(node),
        dilation=node.attrs.get("dilation", (1, 1)), output_padding=node.attrs.get("output_padding", (0, 0)),
        groups=int(node.attrs.get("group", 1)),
    )
    return [y.astype(x.dtype, copy=False)]
