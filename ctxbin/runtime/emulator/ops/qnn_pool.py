"""QNN ``Pool`` as the QNN IR stores it: the kind in string param ``pool_type``
(``PoolMax2d``, ``PoolAvg2d``), tensor params ``filter_size``, ``stride``,
``pad_amount``; ``count_pad_for_edges`` puts the padding in an average's
divisor; ``rounding_mode`` 1 rounds the output size up (0, floor, is the default)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....errors import InputError
from ....ir import Node
from ..primitives import choice, pads_of, pool2d
from ..registry import kernel

__all__: list[str] = []

_KINDS = {"PoolMax2d": "max", "PoolAvg2d": "avg"}


@kernel("qnn", "Pool")
def _pool(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    kind = choice(node, "pool_type", _KINDS, "", str)
    if "filter_size" not in node.attrs:
        raise InputError(f"node {node.name!r} (Pool): no filter_size")
    y = pool2d(
        x, kind, node.attrs["filter_size"], stride=node.attrs.get("stride", (1, 1)),  # type: ignore[arg-type]
        pads=pads_of(node.attrs.get("pad_amount", ((0, 0), (0, 0)))),
        count_pad=bool(node.attrs.get("count_pad_for_edges", False)),
        ceil=int(node.attrs.get("rounding_mode", 0)) == 1,
    )
    return [y.astype(x.dtype, copy=False)]
