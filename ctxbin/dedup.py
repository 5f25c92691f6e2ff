"""Sharing plans: which tensors can point at the bytes of an earlier one.

A plan maps every tensor to its *canonical* tensor: the first tensor in input
order with the same group key, the same length and the same bytes (itself when
there is none). Hashes only find candidates; the bytes are always compared
before two tensors are declared the same, so a hash collision never merges
different data.

Modes: ``"name+content"`` groups by tensor name (the default sharing rule),
``"content"`` ignores names, ``"none"`` shares nothing.

:func:`hash_and_plan` also returns every tensor's hash and reads each byte
about once: candidates (same key and length) are compared chunk by chunk while
the first one is hashed, so a tensor equal to its candidate is never hashed
on its own (same bytes, same hash). :func:`hash_and_write` is that pass for a
writer that has laid its output out for :func:`candidate_plan` (every
candidate equal): it also writes each canonical tensor to the output file
from cache while it is read.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import xxhash

from .hashing import _threads, byte_view, check_status, hash_pinned, native_core, pinned

__all__ = ["MODES", "plan", "hash_and_plan", "candidate_plan", "hash_and_write"]

MODES = ("name+content", "content", "none")

# Python-path byte comparison works in slices so it never allocates more than this.
_COMPARE_SLICE = 16 << 20
# Members per group in one native call (the C core's CTXBIN_GROUP_MAX).
_GROUP_MAX = 64
# plan() without hashes reads candidates once (hash_and_plan) when tensors
# average at least this many bytes; below, hashing then comparing is cheaper.
_ONE_PASS_MIN_MEAN = 64 << 10
# Groups of at least this many bytes are scheduled first, largest first (as
# the C core expects).
_BIG_GROUP = 1 << 20
# Bytes per native call when progress is reported.
_PROGRESS_BYTES = 256 << 20


def _key_ids(keys: Sequence[Hashable] | None, n: int, mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"unknown sharing mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "none":
        return np.arange(n, dtype=np.int64)
    if mode == "content":
        return np.zeros(n, np.int64)
    if keys is None:
        raise ValueError("mode 'name+content' needs the tensor names as keys")
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} buffers")
    ids: dict[Hashable, int] = {}
    return np.fromiter((ids.setdefault(k, len(ids)) for k in keys), np.int64, n)


def plan(
    keys: Sequence[Hashable] | None,
    buffers: Sequence[Any],
    hashes: np.ndarray | Sequence[int] | None = None,
    *,
    mode: str = "name+content",
) -> np.ndarray:
    """``canon[i]``: index of the tensor whose bytes tensor ``i`` can use.

    ``keys`` are tensor names (any hashables; required for ``name+content``,
    ignored otherwise); ``buffers`` the tensors' bytes (C-contiguous buffers);
    ``hashes`` their XXH3-64 (seed 0), computed here when not given (see
    :func:`hash_and_plan`). Returns an ``int64`` array with ``canon[i] <= i``
    and ``canon[canon[i]] == canon[i]``.
    """
    key_ids = _key_ids(keys, len(buffers), mode)
    n = len(buffers)
    if mode == "none":
        return key_ids
    core = native_core()
    if hashes is None and core is None:
        return _hash_and_plan(key_ids, buffers, None, None)[0]
    if hashes is not None:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        if hashes.shape != (n,):
            raise ValueError(f"hashes has shape {hashes.shape}; expected ({n},)")
        if core is None:
            views = [byte_view(b, f"buffer {i}") for i, b in enumerate(buffers)]
            return _plan_python(key_ids, hashes, views)
    canon = np.empty(n, np.int64)
    if n == 0:
        return canon
    ffi = core.ffi
    with pinned(buffers) as (pointers, lengths):
        if hashes is None:
            if lengths.sum() >= _ONE_PASS_MIN_MEAN * n:
                return _hash_and_plan(key_ids, buffers, None, None)[0]
            # small tensors: one batch hash in memory order, then the hash
            # table; cheaper than grouping when there is little to re-read
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


def hash_and_plan(
    keys: Sequence[Hashable] | None,
    buffers: Sequence[Any],
    *,
    mode: str = "name+content",
    release: Sequence[bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(canon, hashes)``: :func:`plan`'s answer and every buffer's XXH3-64
    (seed 0, also in mode ``"none"``), in one pass over the bytes.

    ``release[i]`` true says buffer ``i`` lies in a shared file mapping
    (``mmap`` of a file): its whole pages are dropped from this process's
    resident memory as soon as they are read (they come back from the page
    cache on the next access), so resident memory stays small whatever the
    total size. ``progress(done, total)`` is called as bytes are done.
    """
    return _hash_and_plan(_key_ids(keys, len(buffers), mode), buffers, release, progress)


@dataclass(frozen=True)
class _Schedule:
    """Candidate groups in the order the C core runs them: runs of equal
    (key, length) in index order, cut into groups of at most _GROUP_MAX."""

    order: np.ndarray  # tensor indices sorted by (key, length, index)
    new_run: np.ndarray  # per position of order: a run starts here
    run_start: np.ndarray  # per position of order: where its run starts
    cut: np.ndarray  # per position of order: a group starts here
    members: np.ndarray  # uint64 tensor indices, group by group
    bounds: np.ndarray  # uint64: group g is members[bounds[g]:bounds[g + 1]]
    done: np.ndarray  # bytes in the groups up to and including each one


def _schedule(key_ids: np.ndarray, lengths: np.ndarray) -> _Schedule:
    n = len(key_ids)
    order = np.lexsort((np.arange(n), lengths, key_ids))
    k, ln = key_ids[order], lengths[order]
    new_run = np.r_[True, (k[1:] != k[:-1]) | (ln[1:] != ln[:-1])]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    cut = new_run | ((np.arange(n) - run_start) % _GROUP_MAX == 0)
    starts = np.flatnonzero(cut)
    count = np.diff(np.r_[starts, n])
    size = ln[starts] * count.astype(np.uint64)
    # groups of 1 MiB or more first, largest first (the threads then finish
    # together), then the others in index order (memory order, mostly);
    # members of a group together and in index order
    big = size >= _BIG_GROUP
    rank = np.lexsort((order[starts], np.where(big, -size.astype(np.float64), 0.0), ~big))
    place = np.empty_like(rank)
    place[rank] = np.arange(rank.size)
    members = order[np.argsort(place[np.cumsum(cut) - 1], kind="stable")].astype(np.uint64)
    bounds = np.r_[0, np.cumsum(count[rank])].astype(np.uint64)
    return _Schedule(order, new_run, run_start, cut, members, bounds, np.cumsum(size[rank]))


def _release_flags(buffers: Sequence[Any], release: Sequence[bool] | None) -> np.ndarray | None:
    # only views into an mmap are ever released: dropping pages of ordinary
    # memory would lose its contents
    if release is None:
        return None
    if len(release) != len(buffers):
        raise ValueError(f"{len(release)} release flags for {len(buffers)} buffers")
    return np.fromiter(
        (bool(r) and isinstance(memoryview(b).obj, mmap.mmap) for r, b in zip(release, buffers)), np.uint8, len(buffers))


def _slices(s: _Schedule, progress: Callable[[int, int], None] | None) -> list[tuple[int, int]]:
    """Group ranges for one native call each: one, or one per ~_PROGRESS_BYTES
    when progress is reported."""
    ngroups = s.bounds.size - 1
    edges = [0, ngroups]
    if progress is not None:
        total = int(s.done[-1])
        cuts = np.searchsorted(s.done, np.arange(_PROGRESS_BYTES, total, _PROGRESS_BYTES), side="right")
        edges = sorted({0, *cuts.tolist(), ngroups})  # (np.unique would import numpy.ma: ~10 ms)
    return list(zip(edges[:-1], edges[1:]))


def _hash_and_plan(
    key_ids: np.ndarray,
    buffers: Sequence[Any],
    release: Sequence[bool] | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(buffers)
    canon = np.arange(n, dtype=np.int64)
    hashes = np.zeros(n, np.uint64)
    if n == 0:
        return canon, hashes
    core = native_core()
    with contextlib.ExitStack() as stack:
        if core is not None:
            pointers, lengths = stack.enter_context(pinned(buffers))
        else:
            views = [byte_view(b, f"buffer {i}") for i, b in enumerate(buffers)]
            lengths = np.fromiter((v.nbytes for v in views), np.uint64, n)
        s = _schedule(key_ids, lengths)
        flags = _release_flags(buffers, release)
        for lo, hi in _slices(s, progress):
            m = s.members[int(s.bounds[lo]) : int(s.bounds[hi])]
            g = s.bounds[lo : hi + 1] - s.bounds[lo]
            if core is None:
                _groups_python(views, m, g, flags, canon, hashes)
            else:
                ffi = core.ffi
                check_status(core.lib.ctxbin_hash_groups(
                    n, pointers, ffi.from_buffer("uint64_t[]", lengths),
                    ffi.from_buffer("uint64_t[]", m), m.size, ffi.from_buffer("uint64_t[]", g), g.size - 1,
                    ffi.NULL if flags is None else ffi.from_buffer("uint8_t[]", flags),
                    0, ffi.from_buffer("uint64_t[]", hashes), ffi.from_buffer("int64_t[]", canon), _threads(None),
                ))
            if progress is not None:
                progress(int(s.done[hi - 1]), int(s.done[-1]))
    # runs cut into several groups: the groups' first copies may still match
    multi = np.flatnonzero(~s.new_run & s.cut)
    if multi.size:
        order, run_start = s.order, s.run_start
        in_runs = np.isin(run_start, run_start[multi])
        reps = np.sort(order[in_runs & (canon[order] == order)])
        rep_canon = plan(key_ids[reps], [buffers[i] for i in reps], hashes[reps])
        remap = np.arange(n, dtype=np.int64)
        remap[reps] = reps[rep_canon]
        canon = remap[canon]
    return canon, hashes


def candidate_plan(keys: Sequence[Hashable] | None, lengths: Sequence[int], *, mode: str = "name+content") -> np.ndarray:
    """The plan :func:`hash_and_plan` gives when every candidate's bytes equal
    those of the first tensor with its key and length, computed from keys and
    lengths alone: ``canon[i]`` is that first tensor."""
    key_ids = _key_ids(keys, len(lengths), mode)
    ln = np.asarray(lengths, np.uint64).reshape(-1)
    canon = np.arange(ln.size, dtype=np.int64)
    if ln.size:
        s = _schedule(key_ids, ln)
        canon[s.order] = s.order[s.run_start]
    return canon


def hash_and_write(
    keys: Sequence[Hashable] | None,
    buffers: Sequence[Any],
    fd: int,
    offsets: Sequence[int],
    *,
    mode: str = "name+content",
    release: Sequence[bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | None:
    """Check :func:`candidate_plan` and write its canonical tensors, in one pass.

    Every tensor ``i`` with ``canon[i] == i`` is written (``pwrite``) to the
    open file ``fd`` at ``offsets[i]`` while its candidates are compared with
    it and it is hashed, so its bytes are read from memory once. Returns every
    buffer's XXH3-64 when each candidate equals its canonical tensor; ``None``
    when one differs (found as soon as it is read: the pass stops and the file
    is incomplete), when more than one native group's worth (64) of tensors
    share a key and length, or without the C core or ``pwrite``: then
    :func:`hash_and_plan` and a separate write are the way. ``release`` and
    ``progress`` as in :func:`hash_and_plan`. A failed write raises
    ``OSError``.
    """
    key_ids = _key_ids(keys, len(buffers), mode)
    n = len(buffers)
    if len(offsets) != n:
        raise ValueError(f"{len(offsets)} offsets for {n} buffers")
    hashes = np.zeros(n, np.uint64)
    core = native_core()
    if core is None:
        return None
    if n == 0:
        return hashes
    ffi = core.ffi
    out = np.ascontiguousarray(offsets, np.uint64)
    with pinned(buffers) as (pointers, lengths):
        s = _schedule(key_ids, lengths)
        if (s.cut & ~s.new_run).any():
            return None  # a run longer than one group: its groups' firsts need the second step
        flags = _release_flags(buffers, release)
        differs, err = ffi.new("int *"), ffi.new("int *")
        for lo, hi in _slices(s, progress):
            m = s.members[int(s.bounds[lo]) : int(s.bounds[hi])]
            g = s.bounds[lo : hi + 1] - s.bounds[lo]
            status = core.lib.ctxbin_hash_groups_write(
                n, pointers, ffi.from_buffer("uint64_t[]", lengths),
                ffi.from_buffer("uint64_t[]", m), m.size, ffi.from_buffer("uint64_t[]", g), g.size - 1,
                ffi.NULL if flags is None else ffi.from_buffer("uint8_t[]", flags),
                fd, ffi.from_buffer("uint64_t[]", out), ffi.from_buffer("uint64_t[]", hashes),
                differs, err, _threads(None),
            )
            if status == core.lib.CTXBIN_EUNSUPPORTED:
                return None
            check_status(status)
            if err[0]:
                raise OSError(err[0], f"writing the output: {os.strerror(err[0])}")
            if differs[0]:
                return None
            if progress is not None:
                progress(int(s.done[hi - 1]), int(s.done[-1]))
    return hashes


def _groups_python(
    views: list[memoryview], members: np.ndarray, bounds: np.ndarray, release: np.ndarray | None,
    canon: np.ndarray, hashes: np.ndarray,
) -> None:
    """:func:`_hash_and_plan`'s native call without the C core, group by group."""
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        group = members[a:b].tolist()
        for pos, i in enumerate(group):
            hashes[i] = xxhash.xxh3_64_intdigest(views[i])
            canon[i] = next(
                (j for j in group[:pos]
                 if canon[j] == j and hashes[j] == hashes[i] and _same_bytes(views[j], views[i])),
                i,
            )
        if release is not None:
            for i in group:
                if release[i]:
                    _drop_pages(views[i])


def _drop_pages(view: memoryview) -> None:
    """What the C core does behind its read position: drop the whole pages of
    a view into an ``mmap`` from resident memory."""
    owner = view.obj
    if not hasattr(mmap, "MADV_DONTNEED") or not view.nbytes:
        return
    start = np.frombuffer(view, np.uint8).ctypes.data - np.frombuffer(owner, np.uint8).ctypes.data
    lo = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    hi = (start + view.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        try:
            owner.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass  # advice only


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
