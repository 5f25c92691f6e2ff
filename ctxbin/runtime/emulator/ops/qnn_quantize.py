"""QNN Quantize / Dequantize. Quantized tensors run as their real values in the
emulator, so both pass values through; the emulator puts a Quantize output on
its encoding's grid (that is the quantization)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "Quantize", "Dequantize")
def _real_values(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [np.asarray(x, np.float32)]
