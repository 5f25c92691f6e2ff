"""Cast (to the ONNX element type of attribute ``to``) and CastLike (to the
second input's dtype). Float to integer truncates toward zero, as C does;
anything to bool is ``!= 0``."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import BackendError
from ....ir import Node
from ..registry import kernel

__all__ = ["numpy_dtype_of_onnx"]

# ONNX TensorProto.DataType codes of the element types numpy can hold
_NUMPY_OF_ONNX = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
    7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


def numpy_dtype_of_onnx(node: Node, code: int) -> np.dtype:
    """The numpy dtype of ONNX element type ``code`` (strings, bfloat16, float8
    and 4-bit types are not supported)."""
    try:
        return np.dtype(_NUMPY_OF_ONNX[int(code)])
    except KeyError:
        raise BackendError(
            f"node {node.name!r} ({node.op_type}): the emulator cannot hold ONNX element type {code}"
        ) from None


def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # numpy warns on NaN/inf to int and on float overflow (which gives inf, as
    # ONNX specifies); nothing to warn a user about
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(dtype, copy=False)


@kernel("onnx", "Cast")
def _cast_to(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [_cast(x, numpy_dtype_of_onnx(node, int(node.attrs["to"])))]


@kernel("onnx", "CastLike")
def _cast_like(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x, like = inputs[0], inputs[1]
    assert x is not None and like is not None
    return [_cast(x, like.dtype)]
