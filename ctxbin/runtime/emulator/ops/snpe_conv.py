"""SNPE ``Convolutional`` layer (DLC v3): NHWC activations, filter
``weights_0`` ``[kh, kw, cin/groups, cout]`` and ``bias`` as layer weights;
``kernel_size``/``stride``/``padding`` (x) with ``*_y`` twins, ``dilation_x``/``_y``,
``groups``. ``padding`` is the top/left amount; the bottom/right amount follows
from the output size the layer declares (``OutputDims``), which covers SNPE's
padding strategies (explicit, TensorFlow "same") without decoding their codes."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..primitives import conv2d, declared_shape
from ..registry import kernel

__all__: list[str] = []


def _weights(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None]:
    """The layer's filter and bias, found by weight name (``<layer>/weights_0``, ``<layer>/bias``)."""
    w = b = None
    for name, value in zip(node.inputs[1:], inputs[1:]):
        leaf = name.rsplit("/", 1)[-1]
        if leaf.startswith("weights"):
            w = value
        elif leaf == "bias":
            b = value
    if w is None:
        raise InputError(f"node {node.name!r} (Convolutional): no weights among inputs {node.inputs[1:]}")
    return w, b


def _int(node: Node, name: str, default: int) -> int:
    return int(node.attrs.get(name, default))  # type: ignore[arg-type]


@kernel("snpe", "Convolutional")
def _convolutional(
    node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()
) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    w, b = _weights(node, inputs)
    shape = declared_shape(node, outputs)
    if len(shape) != 4:
        raise InputError(f"node {node.name!r} (Convolutional): declared output {shape} is not NHWC")
    pad_x = _int(node, "padding", 0)
    y = conv2d(
        x, w, b,
        stride=(_int(node, "stride_y", _int(node, "stride", 1)), _int(node, "stride", 1)),
        pads=((_int(node, "padding_y", pad_x), 0), (pad_x, 0)),
        dilation=(_int(node, "dilation_y", 1), _int(node, "dilation_x", 1)),
        groups=_int(node, "groups", 1), out_hw=(shape[1], shape[2]),
    )
    return [y]
