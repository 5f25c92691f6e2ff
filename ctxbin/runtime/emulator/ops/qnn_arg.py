"""QNN Arg as the QNN IR stores it: string param ``arg_type`` (``Argmax``,
``Argmin``), scalar ``axis`` and ``keep_dims``; indices in the output's
declared integer type (int32 by default); ties go to the first index."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node, Tensor
from ..registry import kernel
from ._common import norm_axis

__all__: list[str] = []


@kernel("qnn", "Arg")
def _arg(node: Node, inputs: Sequence[Optional[np.ndarray]], outputs: Sequence[Tensor | None] = ()) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    kind = str(node.attrs.get("arg_type", ""))
    if kind not in ("Argmax", "Argmin"):
        raise InputError(f"node {node.name!r} (Arg): arg_type {kind!r} is not Argmax or Argmin")
    if x.size == 0:
        raise InputError(f"node {node.name!r} (Arg): {kind} of an empty tensor")
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), x.ndim)  # type: ignore[arg-type]
    y = (np.argmax if kind == "Argmax" else np.argmin)(x, axis=axis, keepdims=bool(node.attrs.get("keep_dims", False)))
    spec = outputs[0] if outputs else None
    target = spec.dtype.numpy if spec is not None and not spec.dtype.is_quantized else np.dtype(np.int32)
    return [y.astype(target)]
