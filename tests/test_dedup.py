"""Sharing plans (ctxbin.dedup) against a plain-Python reference, on the C core
and on the fallback, including forged hash collisions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxbin import dedup, hashing

NATIVE_MISSING = "C core not built (run `python native/build.py` or `pip install -e .`)"


@pytest.fixture(params=["native", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native":
        if hashing._native_core is None:
            pytest.skip(NATIVE_MISSING)
        monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    else:
        monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
    return request.param


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
    for native in ([True, False] if hashing._native_core is not None else [False]):
        with pytest.MonkeyPatch.context() as mp:
            if native:
                mp.delenv("CTXBIN_NO_NATIVE", raising=False)
            else:
                mp.setenv("CTXBIN_NO_NATIVE", "1")
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
    for native in ([True, False] if hashing._native_core is not None else [False]):
        with pytest.MonkeyPatch.context() as mp:
            if native:
                mp.delenv("CTXBIN_NO_NATIVE", raising=False)
            else:
                mp.setenv("CTXBIN_NO_NATIVE", "1")
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.binary(max_size=6)), max_size=40))
def test_plan_by_group_equals_the_one_shot_plan(items) -> None:
    keys = [k for k, _ in items]
    bufs = [b for _, b in items]
    seen: list[list[int]] = []
    grouped = dedup.plan(keys, bufs, after_group=lambda idx: seen.append(idx.tolist()))
    np.testing.assert_array_equal(grouped, dedup.plan(keys, bufs))
    for idx in seen:  # every reported group is a set of candidates of one key
        assert len(idx) > 1 and idx == sorted(idx) and len({keys[i] for i in idx}) == 1
