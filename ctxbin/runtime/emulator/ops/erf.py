"""Erf: the Gauss error function, vectorized in the input's float precision.

numpy has no erf. Two polynomial pieces fitted for this module (weighted least
squares against ``math.erf``, relative weights) keep float32 results within
about 3e-7 relative error everywhere:

* ``|x| < 1.5``: ``erf(x) = x * P(x**2)`` (odd, exact sign and tiny-x behaviour);
* ``1.5 <= |x|``: ``erf(x) = 1 - exp(-x**2) * Q(|x|)`` with ``|x|`` capped at 4,
  beyond which erf is 1 in float32.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__ = ["erf"]

_P = (
    1.1283791065216064, -0.3761254549026489, 0.11282944679260254, -0.02683654986321926,
    0.005172068253159523, -0.0008041316759772599, 9.189717820845544e-05, -5.646237696055323e-06,
)
_Q = (
    0.9561241865158081, -0.941150426864624, 0.6301183104515076, -0.2962155044078827,
    0.09756691753864288, -0.022011669352650642, 0.0032359352335333824, -0.0002789987192954868,
    1.0695181117625907e-05,
)
_SPLIT = 1.5
_CAP = 4.0


def _horner(coeffs: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    acc = t * coeffs[-1]
    acc += coeffs[-2]
    for c in coeffs[-3::-1]:
        acc *= t
        acc += c
    return acc


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float array, computed and returned in its own dtype
    (float16 is computed in float32 and rounded once)."""
    x = np.asarray(x)
    work = np.float32 if x.dtype.itemsize < 4 else x.dtype
    xw = x.astype(work, copy=False)
    ax = np.abs(xw)
    t = np.minimum(ax, _SPLIT)
    t *= t
    out = _horner(_P, t)
    out *= xw
    # the tail piece only where it applies (few elements for typical activations)
    far = np.flatnonzero(ax >= _SPLIT)
    if far.size:
        big = np.minimum(ax.reshape(-1)[far], _CAP)
        tail = 1.0 - np.exp(-np.square(big)) * _horner(_Q, big)
        out.reshape(-1)[far] = np.copysign(tail, xw.reshape(-1)[far])
    return out.astype(x.dtype, copy=False)


@kernel("onnx", "Erf")
def _erf(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [erf(x)]
