"""QNN Pad: tensor param ``pad_amount`` (``[before, after]`` per axis) and
``scheme`` 0 constant (``pad_constant_value``), 1 mirror-symmetric,
2 mirror-reflect, 3 edge."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import choice
from ..registry import kernel

__all__: list[str] = []

_MODES = {0: "constant", 1: "symmetric", 2: "reflect", 3: "edge"}


@kernel("qnn", "Pad")
def _pad(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    amount = np.asarray(node.attrs.get("pad_amount", np.zeros((0, 2))), np.int64)
    if amount.shape != (x.ndim, 2) or (amount < 0).any():
        raise InputError(f"node {node.name!r} (Pad): pad_amount {amount.tolist()} does not fit input {x.shape}")
    mode = choice(node, "scheme", _MODES, 0)
    widths = [tuple(p) for p in amount.tolist()]
    if mode == "constant":
        value = float(node.attrs.get("pad_constant_value", 0.0))  # type: ignore[arg-type]
        return [np.pad(x, widths, mode="constant", constant_values=np.asarray(value).astype(x.dtype))]
    if mode in ("symmetric", "reflect") and any(max(p) > d - (mode == "reflect") for p, d in zip(widths, x.shape)):
        raise InputError(f"node {node.name!r} (Pad): {mode} padding {widths} is wider than input {x.shape}")
    return [np.pad(x, widths, mode=mode)]  # type: ignore[call-overload]
