"""Concat: join inputs along ``axis``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("onnx", "Concat")
def _concat(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    axis = norm_axis(node, int(node.attrs["axis"]), xs[0].ndim)
    return [np.concatenate(xs, axis=axis)]
