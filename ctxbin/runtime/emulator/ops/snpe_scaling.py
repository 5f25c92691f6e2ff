"""SNPE ``Scaling`` layer (DLC v3): resize to the declared output size;
``resize_mode`` 0 bilinear (the code seen), 1 nearest; ``align_corners``
(TensorFlow 1 conventions: without it, source = destination * in/out)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..primitives import declared_shape, resize2d
from ..registry import kernel

__all__: list[str] = []

_MODES = {0: "bilinear", 1: "nearest"}


@kernel("snpe", "Scaling")
def _scaling(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    mode = _MODES.get(int(node.attrs.get("resize_mode", -1)))  # type: ignore[arg-type]
    if mode is None:
        raise InputError(f"node {node.name!r} (Scaling): resize_mode {node.attrs.get('resize_mode')} is not 0 or 1")
    if bool(node.attrs.get("maintain_aspect_ratio", False)):
        raise InputError(f"node {node.name!r} (Scaling): maintain_aspect_ratio is not supported by the emulator")
    shape = declared_shape(node, outputs)
    return [resize2d(x, (shape[1], shape[2]), mode, align_corners=bool(node.attrs.get("align_corners", False)))]  # type: ignore[arg-type]
