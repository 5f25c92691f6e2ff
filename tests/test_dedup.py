"""Sharing plans (ctxbin.dedup) against a plain-Python reference, on the C core
and on the fallback, including forged hash collisions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxbin import dedup, hashing
from tests.native_paths import both_paths, needs_native


def reference(keys: list[str] | None, buffers: list[bytes], mode: str) -> list[int]:
    """First index with the same (key, bytes); the obvious dict formulation."""
    if mode == "none":
        return list(range(len(buffers)))
    first: dict[tuple[object, bytes], int] = {}
    out = []
    for i, b in enumerate(buffers):
        key = keys[i] if mode == "name+content" else None
        out.append(first.setdefault((key, bytes(b)), i))
    return out


# Few names and few contents (some of equal length, one a prefix of another)
# so that equal and almost-equal tensors are common.
CONTENTS = [b"", b"\x00", b"\x01", b"ab", b"ba", b"abc", b"x" * 300, b"x" * 299 + b"y",
            bytes(range(256)) * 5, bytes(range(256)) * 5 + b"!"]
items = st.lists(st.tuples(st.sampled_from("pqrs"), st.sampled_from(CONTENTS)), max_size=60)


@settings(max_examples=80, deadline=None)
@given(items=items, mode=st.sampled_from(dedup.MODES))
def test_matches_reference(items: list[tuple[str, bytes]], mode: str) -> None:
    keys = [k for k, _ in items]
    buffers = [b for _, b in items]
    expected = reference(keys, buffers, mode)
    for _ in both_paths():
        got = dedup.plan(keys, buffers, mode=mode)
        assert got.dtype == np.int64
        assert got.tolist() == expected


@settings(max_examples=40, deadline=None)
@given(items=items, mode=st.sampled_from(["name+content", "content"]))
def test_forged_collisions_never_merge(items: list[tuple[str, bytes]], mode: str) -> None:
    """All hashes forced equal: only byte-identical tensors may still share."""
    keys = [k for k, _ in items]
    buffers = [b for _, b in items]
    fake = np.zeros(len(buffers), np.uint64)
    expected = reference(keys, buffers, mode)
    for _ in both_paths():
        assert dedup.plan(keys, buffers, fake, mode=mode).tolist() == expected


def test_modes(path: str) -> None:
    w = np.arange(64, dtype=np.float32)
    buffers = [w, w.copy(), w.copy(), np.arange(64, dtype=np.float32) + 1, w.view(np.int32)]
    names = ["conv.w", "conv.w", "fc.w", "conv.w", "fc.w"]
    assert dedup.plan(names, buffers).tolist() == [0, 0, 2, 3, 2]
    # raw bytes decide in content mode, whatever the dtype the view has
    assert dedup.plan(names, buffers, mode="content").tolist() == [0, 0, 0, 3, 0]
    assert dedup.plan(None, buffers, mode="content").tolist() == [0, 0, 0, 3, 0]
    assert dedup.plan(names, buffers, mode="none").tolist() == [0, 1, 2, 3, 4]


def test_same_hash_different_bytes(path: str) -> None:
    a, b = b"A" * 1000, b"A" * 999 + b"B"
    equal_hashes = np.array([7, 7, 7], np.uint64)
    assert dedup.plan(["t", "t", "t"], [a, b, a], equal_hashes).tolist() == [0, 1, 0]
    # same fake hash, one a prefix of the other: lengths differ, never shared
    assert dedup.plan(None, [a, a[:500]], np.array([1, 1], np.uint64), mode="content").tolist() == [0, 1]


def test_hashes_given_or_computed(path: str) -> None:
    rng = np.random.default_rng(1)
    pool = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 5, 300, 5000)]
    buffers = [pool[i] for i in rng.integers(0, len(pool), 200)]
    names = [f"t{i % 3}" for i in range(200)]
    computed = dedup.plan(names, buffers)
    given_hashes = dedup.plan(names, buffers, hashing.hash_buffers(buffers))
    np.testing.assert_array_equal(computed, given_hashes)
    assert computed.tolist() == reference(names, [bytes(b) for b in buffers], "name+content")


def test_plan_invariants_at_scale(path: str) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, 2000 * 64, dtype=np.uint8)
    # 20k tensors drawn from 2000 distinct 64-byte contents under 50 names
    picks = rng.integers(0, 2000, 20_000)
    buffers = [base[64 * p : 64 * p + 64] for p in picks]
    names = [f"w{i}" for i in rng.integers(0, 50, 20_000)]
    canon = dedup.plan(names, buffers)
    assert (canon <= np.arange(20_000)).all()
    np.testing.assert_array_equal(canon[canon], canon)
    assert canon.tolist() == reference(names, [bytes(b) for b in buffers], "name+content")


def test_empty_and_errors(path: str) -> None:
    assert dedup.plan([], []).shape == (0,)
    assert dedup.plan(None, [], mode="content").shape == (0,)
    assert dedup.plan(["a", "b"], [b"", b""], mode="content").tolist() == [0, 0]
    with pytest.raises(ValueError, match="sharing mode"):
        dedup.plan(["a"], [b"x"], mode="names")
    with pytest.raises(ValueError, match="needs the tensor names"):
        dedup.plan(None, [b"x"])
    with pytest.raises(ValueError, match="2 keys for 1 buffers"):
        dedup.plan(["a", "b"], [b"x"])
    with pytest.raises(ValueError, match="shape"):
        dedup.plan(["a"], [b"x"], np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="contiguous"):
        dedup.plan(["a"], [np.arange(8)[::2]])


# Contents around the chunk and block sizes of the one-pass native call
# (1 KiB blocks, 256 KiB chunks): equal, differing in the first, a middle or
# the very last byte, or in the final stripe only.
def _variants(n: int) -> list[bytes]:
    base = bytes((i * 7 + n) & 255 for i in range(n))
    out = [base]
    for at in {0, n // 2, max(n - 1, 0), max(n - 40, 0), min(262144, max(n - 1, 0))}:
        if n:
            out.append(base[:at] + bytes([base[at] ^ 1]) + base[at + 1 :])
    return out


@settings(max_examples=60, deadline=None)
@given(
    size=st.sampled_from([0, 1, 240, 241, 1024, 1025, 2048, 262144, 262145, 300_000]),
    picks=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 5)), min_size=1, max_size=12),
    mode=st.sampled_from(dedup.MODES),
    release=st.booleans(),
)
def test_hash_and_plan_matches_reference(size: int, picks, mode: str, release: bool) -> None:
    """One pass over the bytes gives the reference plan and xxhash's hashes."""
    import xxhash

    pool = _variants(size)
    keys = [k for k, _ in picks]
    buffers = [pool[i % len(pool)] for _, i in picks]
    expected = reference(keys, buffers, mode)
    for _ in both_paths():
        canon, hashes = dedup.hash_and_plan(keys, buffers, mode=mode, release=[release] * len(buffers))
        assert canon.tolist() == expected
        assert hashes.tolist() == [xxhash.xxh3_64_intdigest(b) for b in buffers]


def test_hash_and_plan_groups_larger_than_one_native_call(path: str) -> None:
    """More candidates of one key and length than one native group holds
    (64): copies across the groups are still found, first one wins."""
    rng = np.random.default_rng(3)
    pool = [rng.integers(0, 256, 300, dtype=np.uint8).tobytes() for _ in range(3)]
    picks = rng.integers(0, 3, 200)
    picks[:70] = 0  # the first distinct content reappears in later groups
    picks[70] = 1
    buffers = [pool[p] for p in picks]
    canon, _ = dedup.hash_and_plan(None, buffers, mode="content")
    assert canon.tolist() == reference(None, buffers, "content")


def test_hash_and_plan_drops_pages_of_file_mappings(path: str, tmp_path) -> None:
    """Streaming from a file mapping keeps the bytes intact (pages come back
    from the file) and gives the same answer as from memory."""
    import mmap

    data = np.random.default_rng(4).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    f = tmp_path / "w.bin"
    f.write_bytes(data + data)
    with open(f, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(m)
    halves = [view[: len(data)], view[len(data) :]]
    canon, hashes = dedup.hash_and_plan(["w", "w"], halves, release=[True, True])
    assert canon.tolist() == [0, 0]
    assert hashes[0] == hashes[1] == hashing.xxh3_64(data)
    assert bytes(halves[1][:100]) == data[:100]  # re-read after the pages were dropped
    del halves, view
    m.close()


def test_hash_and_plan_progress_and_errors(path: str) -> None:
    seen: list[tuple[int, int]] = []
    bufs = [b"x" * 1000, b"x" * 1000, b"y" * 10]
    canon, _ = dedup.hash_and_plan(["a", "a", "b"], bufs, progress=lambda d, t: seen.append((d, t)))
    assert canon.tolist() == [0, 0, 2]
    assert seen and seen[-1] == (2010, 2010)
    with pytest.raises(ValueError, match="release flags"):
        dedup.hash_and_plan(["a"], [b"x"], release=[True, False])
    empty_canon, empty_hashes = dedup.hash_and_plan([], [])
    assert empty_canon.shape == empty_hashes.shape == (0,)


@needs_native
def test_c_hash_groups_checks_its_arguments() -> None:
    """The C entry point refuses malformed groups even if the caller did not check."""
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    bufs = [ffi.from_buffer(b"abcd"), ffi.from_buffer(b"abc"), ffi.from_buffer(b"abcd")]
    ptrs = ffi.new("const void *[]", bufs)
    out_h, out_c = ffi.new("uint64_t[]", 3), ffi.new("int64_t[]", 3)

    def call(members, groups, lengths=(4, 3, 4)):
        return lib.ctxbin_hash_groups(3, ptrs, ffi.new("uint64_t[]", list(lengths)),
                                      ffi.new("uint64_t[]", members), len(members),
                                      ffi.new("uint64_t[]", groups), len(groups) - 1, ffi.NULL, 0, out_h, out_c, 2)

    assert call([2, 0, 1], [0, 2, 3]) == lib.CTXBIN_OK
    assert [out_c[i] for i in range(3)] == [2, 1, 2]  # group order decides, here member 2 first
    assert call([0, 1], [0, 2]) == lib.CTXBIN_EINVAL  # lengths differ inside a group
    assert call([0, 2], [0, 1, 1, 2]) == lib.CTXBIN_EINVAL  # empty group
    assert call([0, 2], [0, 1]) == lib.CTXBIN_EINVAL  # groups do not cover the members
    assert call([0, 0], [0, 1, 2]) == lib.CTXBIN_EINVAL  # one tensor in two groups
    assert call([0, 3], [0, 1, 2]) == lib.CTXBIN_EINVAL  # no tensor 3
    assert call([0, 1], [1, 2]) == lib.CTXBIN_EINVAL
