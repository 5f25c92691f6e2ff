"""ONNX Dropout. Inference (the default, and ``training_mode`` false): the
input passes unchanged and the optional mask is all true. Training mode drops
elements with a generator seeded by the ``seed`` attribute (fresh entropy when
absent), as a training graph expects; it cannot reproduce another runtime's
random draws."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("onnx", "Dropout")
def _dropout(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    ratio_in = inputs[1] if len(inputs) > 1 else None
    ratio = float(ratio_in) if ratio_in is not None else float(node.attrs.get("ratio", 0.5))
    training = len(inputs) > 2 and inputs[2] is not None and bool(inputs[2])
    if not training or ratio == 0:
        return [x, np.ones(x.shape, bool)]
    if not 0 <= ratio < 1:
        raise InputError(f"node {node.name!r} (Dropout): ratio {ratio} outside [0, 1)")
    seed = node.attrs.get("seed")
    rng = np.random.default_rng(None if seed is None else int(seed))
    keep = rng.random(x.shape) >= ratio
    return [(x * keep / x.dtype.type(1 - ratio)).astype(x.dtype, copy=False), keep]
