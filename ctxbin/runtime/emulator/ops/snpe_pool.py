"""SNPE ``Pooling`` layer (DLC v3): ``type`` 1 average (seen in real files) or
0 max; ``size_x``/``size_y``, ``stride_x``/``stride_y``, ``pad_x``/``pad_y``
(top/left; bottom/right follows from the declared output size),
``pool_region_include_padding``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..primitives import declared_shape, pool2d
from ..registry import kernel

__all__: list[str] = []

_KINDS = {0: "max", 1: "avg"}


@kernel("snpe", "Pooling")
def _pooling(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    a = {k: v for k, v in node.attrs.items() if isinstance(v, (int, bool))}
    kind = _KINDS.get(int(a.get("type", -1)))
    if kind is None:
        raise InputError(f"node {node.name!r} (Pooling): type {a.get('type')} is not 0 (max) or 1 (average)")
    shape = declared_shape(node, outputs)
    y = pool2d(
        x, kind, (int(a.get("size_y", 1)), int(a.get("size_x", 1))),  # type: ignore[arg-type]
        stride=(int(a.get("stride_y", 1)), int(a.get("stride_x", 1))),
        pads=((int(a.get("pad_y", 0)), 0), (int(a.get("pad_x", 0)), 0)),
        count_pad=bool(a.get("pool_region_include_padding", False)), out_hw=(shape[1], shape[2]),
    )
    return [y]
