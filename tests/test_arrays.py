"""``Graph.arrays()``: every weight as a verified zero-copy view.

Graphs read from ``.ctxbin`` take the column path (views made straight from
the reader's columns, all unverified blobs hashed in one batch); every other
graph takes the generic path over its Tensor objects. Both must give the same
views; verification is shared with per-tensor access (nothing is hashed
twice) and a corrupted blob raises before any view of it is returned.
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctxbin.hashing
from ctxbin.errors import ChecksumError
from ctxbin.formats import ctxbin as cb
from ctxbin.ir import Container, DType, Graph, LazyTable, Node, Tensor, TensorKind
from ctxbin.weights import Blob
from tests.native_paths import both_paths

DTYPES = [DType.FLOAT32, DType.FLOAT16, DType.INT8, DType.UINT16, DType.INT64, DType.UFIXED8, DType.BOOL8]


def weight(name: str, arr: np.ndarray, dtype: DType | None = None, blob: Blob | None = None) -> Tensor:
    return Tensor(name, dtype or DType.from_numpy(arr.dtype), arr.shape, TensorKind.STATIC,
                  data=blob or Blob.from_array(arr))


def make_graph(name: str, shared: Blob, salt: int = 0) -> Graph:
    """Weights of several dtypes and ranks (scalar, empty), one blob shared with
    other graphs and one used twice in this graph, plus activations."""
    rng = np.random.default_rng(salt)
    x = Tensor("x", DType.FLOAT32, ("batch", 8), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, ("batch", 8), TensorKind.OUTPUT)
    twice = Blob.from_array(rng.integers(-100, 100, 24).astype(np.int8))
    tensors = [
        x,
        weight("w", np.zeros((8, 8), np.float32), blob=shared),
        weight("b", rng.standard_normal(8).astype(np.float16)),
        weight("q", np.zeros((4, 6), np.uint8), DType.UFIXED8,
               Blob.from_array(rng.integers(0, 255, 24).astype(np.uint8))),
        weight("same1", np.zeros(24, np.int8), blob=twice),
        weight("same2", np.zeros((2, 12), np.int8), blob=twice),
        weight("scalar", np.array(7 + salt, np.int64)),
        weight("empty", np.zeros((0, 3), np.float32)),
        Tensor("h", DType.FLOAT32, ("batch", 8)),
        y,
    ]
    nodes = (Node("mm", "MatMul", "onnx", ("x", "w"), ("h",)), Node("add", "Add", "onnx", ("h", "b"), ("y",)))
    return Graph(name, (x,), (y,), nodes, {t.name: t for t in tensors})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    shared = Blob.from_array(np.arange(64, dtype=np.float32).reshape(8, 8))
    c = Container((make_graph("prompt", shared, 1), make_graph("token", shared, 2)))
    p = tmp_path / "m.ctxbin"
    cb.write(c, p)
    return p


def generic(g: Graph) -> dict[str, np.ndarray]:
    """What the generic path (Tensor objects) gives for the same graph."""
    return dataclasses.replace(g, tensors=dict(g.tensors)).arrays()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


class Counter:
    """Counts the bytes hashed through ``hash_many`` and ``xxh3_64``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ranges = 0
        self.single = 0
        many, one = cb.hash_many, ctxbin.hashing.xxh3_64

        def counted_many(base, offsets, lengths, *a, **k):  # type: ignore[no-untyped-def]
            self.ranges += len(offsets)
            return many(base, offsets, lengths, *a, **k)

        def counted_one(data, *a, **k):  # type: ignore[no-untyped-def]
            self.single += 1
            return one(data, *a, **k)

        monkeypatch.setattr(cb, "hash_many", counted_many)
        monkeypatch.setattr(ctxbin.hashing, "xxh3_64", counted_one)


# --------------------------------------------------------------------------- same views as the generic path


def test_column_path_gives_the_generic_views(path: Path) -> None:
    for _ in both_paths():
        c = cb.read(path)
        for g in c.graphs:
            assert isinstance(g.tensors, LazyTable) and g.tensors.arrays() is not None
            fresh = cb.read(path).graph(g.name)
            fast = fresh.arrays()
            slow = generic(g)
            assert list(fast) == list(slow) == [t.name for t in g.weights]
            mapped = np.frombuffer(fresh.tensors["w"].data._buf, np.uint8)
            for name, a in fast.items():
                b = slow[name]
                assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
                assert not a.flags.writeable and a.flags.c_contiguous
                assert a.size == 0 or np.shares_memory(a, mapped)  # a view of the file, not a copy
        arrays = c.graph("token").arrays()
        assert arrays["scalar"].shape == () and int(arrays["scalar"]) == 9
        assert arrays["empty"].shape == (0, 3) and arrays["q"].dtype == np.uint8
        assert np.shares_memory(arrays["same1"], arrays["same2"])  # one blob, one storage
        assert np.array_equal(arrays["w"], np.arange(64, dtype=np.float32).reshape(8, 8))
        with pytest.raises(ValueError):
            arrays["w"][0, 0] = 1.0


def test_column_path_makes_no_tensor_or_blob_objects(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real_tensor, real_blob = cb._GraphColumns.tensor, cb._Reader.blob
    monkeypatch.setattr(cb._GraphColumns, "tensor", lambda self, i: made.append(i) or real_tensor(self, i))
    monkeypatch.setattr(cb._Reader, "blob", lambda self, i, owner: made.append(-1) or real_blob(self, i, owner))
    g = cb.read(path).graph("prompt")
    at_open = len(made)  # the graph's inputs and outputs
    assert len(g.arrays()) == 7 and len(made) == at_open


def test_views_outlive_the_container(path: Path) -> None:
    arrays = cb.read(path).graph("token").arrays()
    gc.collect()  # the container, graph and reader are gone; each view holds the mapping
    assert np.array_equal(arrays["w"], np.arange(64, dtype=np.float32).reshape(8, 8))
    assert int(arrays["scalar"]) == 9


def test_other_tables_take_the_generic_path(tmp_path: Path) -> None:
    g = make_graph("mem", Blob.from_array(np.ones((8, 8), np.float32)))
    arrays = g.arrays()  # a plain dict of Tensors
    assert list(arrays) == [t.name for t in g.weights] and not arrays["b"].flags.writeable
    table = LazyTable({"w": 0}, lambda i: g.tensors["w"])
    assert table.arrays() is None
    assert list(dataclasses.replace(g, tensors=table).arrays()) == ["w"]
    onnx = pytest.importorskip("onnx", reason="the ONNX reader needs the onnx package")
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w")],
    ))
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    read = ctxbin.load(tmp_path / "m.onnx").graphs[0]
    assert np.array_equal(read.arrays()["w"], w)


# --------------------------------------------------------------------------- verification is shared, done once


def test_batch_verification_counts_for_tensors(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = Counter(monkeypatch)
    g = cb.read(path).graph("prompt")
    g.arrays()
    assert count.ranges == 6 and count.single == 0  # 7 weights, 6 distinct blobs, one batch
    g.arrays()
    assert count.ranges == 6  # nothing left to verify
    for t in g.weights:
        assert t.data.expected_hash is None  # verified by the batch
        t.numpy()
    assert count.single == 0  # ... and never hashed again
    assert len({t.data.hash for t in g.weights}) == 6  # the hashes are known, not recomputed
    assert count.single == 0


def test_tensor_verification_counts_for_the_batch(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = Counter(monkeypatch)
    c = cb.read(path)
    token = c.graph("token")
    token.tensors["b"].numpy()
    token.tensors["w"].numpy()  # shared with "prompt"
    assert count.single == 2
    token.arrays()
    assert count.ranges == 4  # the other distinct blobs of "token"
    c.graph("prompt").arrays()
    assert count.ranges == 4 + 5  # its 6 distinct blobs but "w", verified already
    assert count.single == 2


def test_made_blobs_are_settled_by_the_batch(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = cb.read(path).graph("prompt")
    blob = g.tensors["q"].data  # made, not verified yet
    assert blob.expected_hash is not None
    count = Counter(monkeypatch)
    g.arrays()
    assert blob.expected_hash is None and count.single == 0
    g.tensors["q"].numpy()
    assert count.single == 0


def test_verify_true_counts_for_arrays(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cb.read(path, verify=True)
    count = Counter(monkeypatch)
    for g in c.graphs:
        g.arrays()
        for t in g.weights:
            t.numpy()
    assert count.ranges == 0 and count.single == 0


# --------------------------------------------------------------------------- corrupted blobs


def test_corrupted_blob_raises_before_any_view(path: Path) -> None:
    where = cb.read(path).graph("token").tensors["same2"].data.offset
    flip(path, where + 3)
    for _ in both_paths():
        g = cb.read(path).graph("token")
        for _ in range(2):  # a failed batch marks nothing bad as verified
            with pytest.raises(ChecksumError) as e:
                g.arrays()
            assert e.value.path == str(path) and e.value.offset == where
            assert e.value.obj == "tensor token/same1"  # the first tensor of the bad blob
        with pytest.raises(ChecksumError):
            g.tensors["same2"].numpy()
        assert np.array_equal(g.tensors["w"].numpy(), np.arange(64, dtype=np.float32).reshape(8, 8))
        assert cb.read(path).graph("prompt").arrays()["b"].shape == (8,)  # other graphs are sound


def test_shared_corrupted_blob_is_named_in_the_graph_asked(path: Path) -> None:
    where = cb.read(path).graph("token").tensors["w"].data.offset
    flip(path, where)
    for name in ("prompt", "token"):
        with pytest.raises(ChecksumError) as e:
            cb.read(path).graph(name).arrays()
        assert e.value.obj == f"tensor {name}/w" and e.value.offset == where


def test_check_lists_every_bad_blob_in_batches(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = cb.read(path).graph("prompt")
    offsets = {n: g.tensors[n].data.offset for n in ("b", "q", "w")}
    flip(path, offsets["b"])
    flip(path, offsets["q"] + 10)
    monkeypatch.setattr(cb, "_RELEASE_BATCH", 64)  # one run per blob or two: pages released after each
    for _ in both_paths():
        problems = cb.check(path)
        assert len(problems) == 2
        assert "prompt/b" in problems[0] and f"offset {offsets['b']}" in problems[0]
        assert "prompt/q" in problems[1] and "hash" in problems[1]
        with pytest.raises(ChecksumError) as e:
            cb.read(path, verify=True)
        assert e.value.obj == "tensor prompt/b"
    flip(path, offsets["b"])
    flip(path, offsets["q"] + 10)
    flip(path, offsets["w"])  # shared by both graphs: named by its index
    problems = cb.check(path)
    assert len(problems) == 1 and "blob #" in problems[0] and f"offset {offsets['w']}" in problems[0]


# --------------------------------------------------------------------------- properties

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.lists(st.tuples(st.sampled_from(DTYPES), shapes, st.booleans()), min_size=1, max_size=8),
       seed=st.integers(0, 2**32 - 1))
def test_any_graph_round_trips_through_arrays(tmp_path: Path, spec: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tensors: dict[str, Tensor] = {}
    prev: Blob | None = None
    for i, (dtype, shape, reuse) in enumerate(spec):
        raw = rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
        blob = Blob.from_array(raw)
        if reuse and prev is not None and prev.nbytes == blob.nbytes:
            blob = prev  # shared storage inside the graph
        tensors[f"t{i}"] = Tensor(f"t{i}", dtype, shape, TensorKind.STATIC, data=blob)
        prev = blob
    g = Graph("g", (), (), (), tensors)
    p = tmp_path / f"{seed}.ctxbin"
    cb.write(Container((g,)), p, durable=False)
    want = g.arrays()
    got = cb.read(p).graph("g").arrays()
    assert list(got) == list(want)
    for name, a in got.items():
        assert a.dtype == want[name].dtype and a.shape == want[name].shape and a.tobytes() == want[name].tobytes()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 1 << 30))
def test_a_flipped_data_byte_fails_iff_it_is_in_a_blob(path: Path, at: int) -> None:
    c = cb.read(path)
    reader_blobs = {id(t.data): t.data for g in c.graphs for t in g.weights}.values()
    data_start = min(b.offset for b in reader_blobs)
    size = path.stat().st_size
    offset = data_start + at % (size - data_start)
    original = path.read_bytes()
    try:
        flip(path, offset)
        inside = [b for b in reader_blobs if b.offset <= offset < b.offset + b.nbytes]
        for g in ("prompt", "token"):
            users = [t.name for t in c.graph(g).weights if any(t.data is b for b in inside)]
            if users:
                with pytest.raises(ChecksumError) as e:
                    cb.read(path).graph(g).arrays()
                assert e.value.obj == f"tensor {g}/{users[0]}" and e.value.offset == inside[0].offset
            else:
                assert set(cb.read(path).graph(g).arrays()) == {t.name for t in c.graph(g).weights}
        assert cb.check(path) != []  # a blob's hash or a padding run: check always finds it
    finally:
        path.write_bytes(original)


def _rss_file() -> int:
    """Resident bytes of file mappings in this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) << 10
    pytest.skip("no RssFile line in /proc/self/status")


def test_eager_verification_keeps_little_resident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("resident memory is read from /proc (Linux only)")
    rng = np.random.default_rng(0)
    tensors = {f"w{i}": weight(f"w{i}", rng.integers(0, 255, 8 << 20, dtype=np.uint8)) for i in range(6)}
    path = tmp_path / "big.ctxbin"
    cb.write(Container((Graph("g", (), (), (), tensors),)), path, durable=False)
    monkeypatch.setattr(cb, "_RELEASE_BATCH", 4 << 20)
    _, reader = cb._open(path)
    before = _rss_file()
    assert list(cb._problems(reader)) == []
    assert _rss_file() - before < 16 << 20  # 48 MiB hashed, at most a run or two of it resident
    arrays = cb.read(path, verify=True).graph("g").arrays()
    assert sum(a.nbytes for a in arrays.values()) == 48 << 20
