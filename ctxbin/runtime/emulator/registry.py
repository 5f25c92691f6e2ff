"""Kernel registry of the emulator, keyed by (namespace, op type) and opset.

Each kernel lives in its own module under ``ctxbin/runtime/emulator/ops/`` and
registers itself with :func:`kernel`. A kernel takes the node, its input arrays
(``None`` for a missing optional input) and returns its outputs in order. A
kernel with an ``outputs`` parameter also gets the graph's declared output
tensors (QNN ops such as Reshape or Cast are defined by them).
An op whose meaning changed between ONNX opsets registers one kernel per
version with ``since=``; lookups pick the newest kernel not newer than the
graph's opset.
"""

from __future__ import annotations

import bisect
import inspect
from typing import Callable, Optional, Sequence

import numpy as np

from ...ir import Node

__all__ = ["Kernel", "kernel", "lookup", "registered"]

Kernel = Callable[[Node, Sequence[Optional[np.ndarray]]], Sequence[np.ndarray]]

# (namespace, op) -> [(since, kernel)] sorted by since
_KERNELS: dict[tuple[str, str], list[tuple[int, Kernel]]] = {}


def kernel(namespace: str, *op_types: str, since: int = 1) -> Callable[[Kernel], Kernel]:
    """Register the decorated function for each ``(namespace, op_type)``,
    for opsets ``since`` and newer."""

    def register(fn: Kernel) -> Kernel:
        fn.wants_outputs = "outputs" in inspect.signature(fn).parameters  # type: ignore[attr-defined]
        for op in op_types:
            versions = _KERNELS.setdefault((namespace, op), [])
            if any(s == since for s, _ in versions):
                raise RuntimeError(f"two kernels registered for {namespace}:{op} since opset {since}")
            versions.insert(bisect.bisect([s for s, _ in versions], since), (since, fn))
        return fn

    return register


def _load_all() -> None:
    from . import ops  # noqa: F401  (imports every kernel module)


def lookup(namespace: str, op_type: str, opset: int | None = None) -> Kernel | None:
    """The kernel for an op at ``opset`` (the newest one when ``opset`` is None)."""
    _load_all()
    versions = _KERNELS.get((namespace, op_type))
    if not versions:
        return None
    if opset is None:
        return versions[-1][1]
    usable = [fn for since, fn in versions if since <= opset]
    return usable[-1] if usable else None


def registered() -> list[tuple[str, str]]:
    _load_all()
    return sorted(_KERNELS)
