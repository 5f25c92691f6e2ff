"""QNN ResizeBilinear and ResizeNearestNeighbor (NHWC, TensorFlow coordinate
conventions: ``align_corners``, ``half_pixel_centers``). The output size is the
one the graph declares for the output tensor."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node, Tensor
from ..primitives import declared_shape, resize2d
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "ResizeBilinear", "ResizeNearestNeighbor")
def _resize(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    shape = declared_shape(node, outputs)
    y = resize2d(
        x, (shape[1], shape[2]), "bilinear" if node.op_type == "ResizeBilinear" else "nearest",
        align_corners=bool(node.attrs.get("align_corners", False)),
        half_pixel=bool(node.attrs.get("half_pixel_centers", False)),
    )
    return [y.astype(x.dtype, copy=False)]
