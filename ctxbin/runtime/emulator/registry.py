"""Kernel registry of the emulator, keyed by (namespace, op type).

Each kernel lives in its own module under ``ctxbin/runtime/emulator/ops/`` and
registers itself with :func:`kernel`. A kernel takes the node, its input arrays
(``None`` for a missing optional input) and returns its outputs in order.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ...ir import Node

__all__ = ["Kernel", "kernel", "lookup", "registered"]

Kernel = Callable[[Node, Sequence[Optional[np.ndarray]]], Sequence[np.ndarray]]

_KERNELS: dict[tuple[str, str], Kernel] = {}


def kernel(namespace: str, *op_types: str) -> Callable[[Kernel], Kernel]:
    """Register the decorated function for each ``(namespace, op_type)``."""

    def register(fn: Kernel) -> Kernel:
        for op in op_types:
            key = (namespace, op)
            if key in _KERNELS:
                raise RuntimeError(f"two kernels registered for {namespace}:{op}")
            _KERNELS[key] = fn
        return fn

    return register


def _load_all() -> None:
    from . import ops  # noqa: F401  (imports every kernel module)


def lookup(namespace: str, op_type: str) -> Kernel | None:
    _load_all()
    return _KERNELS.get((namespace, op_type))


def registered() -> list[tuple[str, str]]:
    _load_all()
    return sorted(_KERNELS)
