"""QNN Cast: the target type is the output tensor's declared type (QNN data
type codes), so the kernel reads it from the graph's tensor table."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..registry import kernel

__all__: list[str] = []


@kernel("qnn", "Cast")
def _cast(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    spec = outputs[0] if outputs else None
    if spec is None:
        raise InputError(f"node {node.name!r} (Cast): the output type is not declared (or the emulator did not pass it)")
    if spec.dtype.is_quantized:
        # quantized tensors run as real values; the emulator snaps them to the output grid
        return [np.asarray(x, np.float32)]
    try:
        target = spec.dtype.numpy
    except TypeError as e:
        raise InputError(f"node {node.name!r} (Cast): cannot cast to {spec.dtype.name}") from e
    return [x.astype(target)]
