"""SNPE ``Input`` layer (DLC v3): names a graph input. The emulator has already
placed the fed array under that name, so the layer produces nothing new (an
empty result leaves the feed in place)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ....ir import Node
from ..registry import kernel

__all__: list[str] = []


@kernel("snpe", "Input")
def _input(node: Node, inputs: Sequence[Optional[np.ndarray]]) -> list[np.ndarray]:
    return []
