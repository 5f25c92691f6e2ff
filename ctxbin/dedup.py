"""Sharing plans: which tensors can point at the bytes of an earlier one.

A plan maps every tensor to its *canonical* tensor: the first tensor in input
order with the same group key, the same length and the same bytes (itself when
there is none). Hashes only find candidates; the bytes are always compared
before two tensors are declared the same, so a hash collision never merges
different data.

Modes: ``"name+content"`` groups by tensor name (the default sharing rule),
``"content"`` ignores names, ``"none"`` shares nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Callable

import numpy as np

from .hashing import byte_view, check_status, hash_buffers, hash_pinned, native_core, pinned

__all__ = ["MODES", "plan"]

MODES = ("name+content", "content", "none")

# Python-path byte comparison works in slices so it never allocates more than this.
_COMPARE_SLICE = 16 << 20


def plan(
    keys: Sequence[Hashable] | None,
    buffers: Sequence[Any],
    hashes: np.ndarray | Sequence[int] | None = None,
    *,
    mode: str = "name+content",
    after_group: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """``canon[i]``: index of the tensor whose bytes tensor ``i`` can use.

    ``keys`` are tensor names (any hashables; required for ``name+content``,
    ignored otherwise); ``buffers`` the tensors' bytes (C-contiguous buffers);
    ``hashes`` their XXH3-64 (seed 0), computed here when not given. Returns an
    ``int64`` array with ``canon[i] <= i`` and ``canon[canon[i]] == canon[i]``.

    With ``after_group``, candidates (same key, length and hash) are compared
    one group at a time and ``after_group(indices)`` is called after each, so a
    caller streaming from file mappings can drop those pages again: the bytes
    resident at once are one group's, not every candidate's.
    """
    if mode not in MODES:
        raise ValueError(f"unknown sharing mode {mode!r}; expected one of {', '.join(MODES)}")
    n = len(buffers)
    if mode == "none":
        return np.arange(n, dtype=np.int64)
    if mode == "name+content":
        if keys is None:
            raise ValueError("mode 'name+content' needs the tensor names as keys")
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} buffers")
        ids: dict[Hashable, int] = {}
        key_ids = np.fromiter((ids.setdefault(k, len(ids)) for k in keys), np.int64, n)
    else:
        key_ids = np.zeros(n, np.int64)
    if hashes is not None:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        if hashes.shape != (n,):
            raise ValueError(f"hashes has shape {hashes.shape}; expected ({n},)")
    if after_group is not None:
        return _plan_by_group(key_ids, buffers, hashes, after_group)
    core = native_core()
    if core is None:
        views = [byte_view(b, f"buffer {i}") for i, b in enumerate(buffers)]
        return _plan_python(key_ids, hash_buffers(views) if hashes is None else hashes, views)
    canon = np.empty(n, np.int64)
    if n == 0:
        return canon
    ffi = core.ffi
    with pinned(buffers) as (pointers, lengths):
        if hashes is None:
            hashes = hash_pinned(pointers, lengths)
        check_status(core.lib.ctxbin_dedup_plan(
            n,
            ffi.from_buffer("int64_t[]", key_ids),
            ffi.from_buffer("uint64_t[]", hashes),
            pointers,
            ffi.from_buffer("uint64_t[]", lengths),
            ffi.from_buffer("int64_t[]", canon),
        ))
    return canon


def _plan_by_group(
    key_ids: np.ndarray,
    buffers: Sequence[Any],
    hashes: np.ndarray | None,
    after_group: Callable[[np.ndarray], None],
) -> np.ndarray:
    n = len(buffers)
    canon = np.arange(n, dtype=np.int64)
    if n == 0:
        return canon
    if hashes is None:
        hashes = hash_buffers(buffers)
    lengths = np.fromiter((memoryview(b).nbytes for b in buffers), np.uint64, n)
    # stable order by (key, hash, length, index): each run is one candidate group
    order = np.lexsort((np.arange(n), lengths, hashes, key_ids))
    k, h, ln = key_ids[order], hashes[order], lengths[order]
    starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (h[1:] != h[:-1]) | (ln[1:] != ln[:-1])])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts.tolist(), ends.tolist()):
        if b - a < 2:
            continue
        idx = order[a:b]  # ascending indices, so canon[i] <= i holds
        sub = plan(None, [buffers[i] for i in idx], hashes[idx], mode="content")
        canon[idx] = idx[sub]
        after_group(idx)
    return canon


def _same_bytes(a: memoryview, b: memoryview) -> bool:
    if a.nbytes != b.nbytes:
        return False
    x = np.frombuffer(a, np.uint8)
    y = np.frombuffer(b, np.uint8)
    return all(
        np.array_equal(x[i : i + _COMPARE_SLICE], y[i : i + _COMPARE_SLICE])
        for i in range(0, x.size, _COMPARE_SLICE)
    )


def _plan_python(key_ids: np.ndarray, hashes: np.ndarray, views: list[memoryview]) -> np.ndarray:
    """The same plan without the C core: candidates by (key, length, hash), then bytes."""
    canon = np.arange(len(views), dtype=np.int64)
    reps: dict[tuple[int, int, int], list[int]] = {}
    for i, (key, h, view) in enumerate(zip(key_ids.tolist(), hashes.tolist(), views)):
        candidates = reps.setdefault((key, view.nbytes, h), [])
        match = next((j for j in candidates if _same_bytes(views[j], view)), None)
        if match is None:
            candidates.append(i)
        else:
            canon[i] = match
    return canon
