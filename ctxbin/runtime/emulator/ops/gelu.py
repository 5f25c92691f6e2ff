"""Gelu (opset 20): ``0.5 * x * (1 + erf(x / sqrt(2)))``, or the tanh approximation
``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..registry import kernel
from .erf import erf

__all__: list[str] = []


@kernel("onnx", "Gelu")
def _gelu(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    mode = node.attrs.get("approximate", "none")
    if mode == "none":
        inner = erf(x * (1.0 / math.sqrt(2.0)))
    elif mode == "tanh":
        inner = np.tanh((x + 0.044715 * x * x * x) * math.sqrt(2.0 / math.pi))
    else:
        raise InputError(f"node {node.name!r} (Gelu): approximate must be 'none' or 'tanh', not {mode!r}")
    inner += 1.0
    inner *= x
    inner *= 0.5
    return [inner]
