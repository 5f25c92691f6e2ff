"""Shared helpers of the benchmarks: timing and a synthetic graph of N weights."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def best_of(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time of ``number`` calls, over ``repeat`` tries (noisy machines: min is stable)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def synthetic_weights(total_bytes: int, count: int = 320, seed: int = 0) -> dict[str, np.ndarray]:
    """``count`` float32 tensors adding up to about ``total_bytes`` (conv-like names)."""
    per = max(total_bytes // count // 4, 1)
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(count):
        # vary sizes a little, as real layers do
        n = max(1, int(per * (0.5 + (i % 7) / 6)))
        out[f"backbone.layer{i // 40}.{i % 40}.conv.weight"] = rng.standard_normal(n, dtype=np.float32)
    return out
