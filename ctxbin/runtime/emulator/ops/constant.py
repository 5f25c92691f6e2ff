"""Constant: the tensor of its one ``value*`` attribute (tensor, float(s), int(s),
string(s)); sparse tensors are not supported."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import BackendError
from ....ir import Node
from ..registry import kernel

__all__: list[str] = []

_FORMS = {
    "value": None,
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
    "value_string": np.object_,
    "value_strings": np.object_,
}


@kernel("onnx", "Constant")
def _constant(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    for name, dtype in _FORMS.items():
        if name in node.attrs:
            value = node.attrs[name]
            if dtype is np.object_ and isinstance(value, tuple):
                return [np.array(value, dtype=np.object_).reshape(len(value))]
            return [np.array(value, dtype=dtype)]
    raise BackendError(f"node {node.name!r} (Constant): no supported value attribute among {sorted(node.attrs)}")
