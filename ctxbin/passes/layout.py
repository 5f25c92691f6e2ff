"""NCHW ↔ NHWC bookkeeping for 4-D tensors.

QNN's spatial ops take channels last; ONNX's take channels first. A tensor
kept in NHWC is the ONNX (logical) tensor transposed by :data:`TO_NHWC`:
physical axis ``j`` holds logical axis ``TO_NHWC[j]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TO_NCHW", "TO_NHWC", "nhwc_axis", "nhwc_shape", "static_to_nhwc", "through_nhwc"]

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def nhwc_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Physical shape of a 4-D logical (NCHW) shape kept in NHWC."""
    return tuple(int(shape[i]) for i in TO_NHWC)


def nhwc_axis(axis: int) -> int:
    """Physical position of logical axis ``axis`` (non-negative) in an NHWC tensor."""
    return TO_NCHW[axis]


def through_nhwc(perm: Sequence[int]) -> tuple[int, ...]:
    """The permutation of the physical NHWC tensor that gives logical ``transpose(perm)``."""
    return tuple(TO_NCHW[p] for p in perm)


def static_to_nhwc(arr: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against a 4-D NCHW tensor, made to broadcast
    the same way against its NHWC form (leading 1s added, then transposed)."""
    if arr.ndim > 4:
        raise ValueError(f"a rank-{arr.ndim} constant cannot broadcast against a 4-D tensor")
    return np.ascontiguousarray(arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(TO_NHWC))
