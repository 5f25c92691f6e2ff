"""The .ctxbin container: round trips, determinism, zero-copy, lazy checksums,
hostile input (one test per rule of docs/FORMAT.md) and a mutation fuzz test."""

from __future__ import annotations

import dataclasses
import struct
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin.errors import ChecksumError, CtxbinError, FormatError, UnsupportedVersionError
from ctxbin.flatbuf import FlatBuffer, Table
from ctxbin.formats import ctxbin as cb
from ctxbin.formats import dlc
from ctxbin.ir import (
    BackendBinary, Container, DType, Graph, LazyTuple, Node, QuantEncoding, QuantKind, Target, Tensor, TensorKind,
)
from ctxbin.weights import Blob

# --------------------------------------------------------------------------- fixtures

ALL_ATTRS = {
    "i": 3,
    "neg": -(1 << 62),
    "f": 1.5,
    "s": "héllo",
    "empty_s": "",
    "b": b"\x00\x01\xff",
    "ints": (1, -2, 3),
    "floats": (0.25, -1e30),
    "strs": ("a", "", "ü"),
    "empty": (),
    "arr_f16": np.eye(2, dtype=np.float16),
    "arr_i64": np.arange(6, dtype=np.int64).reshape(2, 3),
    "arr_bool": np.array([True, False]),
    "arr_scalar": np.array(2.5, np.float32),
}
PER_TENSOR = QuantEncoding(QuantKind.SCALE_OFFSET, scales=(0.02,), offsets=(-128,), bitwidth=8)
PER_AXIS = QuantEncoding(QuantKind.AXIS_SCALE_OFFSET, scales=(0.1, 0.2, 0.3), offsets=(0, -1, -2), axis=0,
                         is_symmetric=True)
LPBQ = QuantEncoding(QuantKind.BLOCKWISE_EXPANSION, scales=(0.5, 0.25, 0.125), offsets=(0, 0, 0), axis=0,
                     bitwidth=4, is_symmetric=True, block_size=(1, 2), block_scales=(3, 7, 15, 1, 2, 4),
                     block_scale_bitwidth=4)


def make_graph(name: str, shared: Blob, binary: Blob | None = None) -> Graph:
    x = Tensor("x", DType.FLOAT32, ("batch", 3, None), TensorKind.INPUT)
    w = Tensor("W", DType.FLOAT32, (3, 4), TensorKind.STATIC, data=shared)
    q = Tensor("q", DType.UFIXED8, (3, 2), TensorKind.STATIC, encoding=PER_AXIS,
               data=Blob.from_array(np.arange(6, dtype=np.uint8) + len(name)))
    lp = Tensor("lp", DType.SFIXED4, (3, 4), TensorKind.STATIC, encoding=LPBQ,
                data=Blob.from_array(np.full(12, -3, np.int8)))
    s = Tensor("scalar", DType.INT64, (), TensorKind.STATIC, data=Blob.from_array(np.array(7, np.int64)))
    e = Tensor("empty", DType.FLOAT16, (0, 5), TensorKind.STATIC, data=Blob.from_array(np.zeros((0, 5), np.float16)))
    h = Tensor("h", DType.UFIXED8, ("batch", 4), TensorKind.NATIVE, encoding=PER_TENSOR)
    y = Tensor("y", DType.FLOAT32, ("batch", 4), TensorKind.OUTPUT)
    extra_out = Tensor("h", DType.FLOAT32, ("batch", 4), TensorKind.OUTPUT)  # same name, not the table's
    nodes = (
        Node("mm", "MatMul", "onnx", ("x", "W"), ("h",), ALL_ATTRS),
        Node("conv", "Conv2d", "qnn", ("h", "q", ""), ("y",), {"stride": (1, 1)}, domain="qti.aisw"),
    )
    table = {t.name: t for t in (x, w, q, lp, s, e, h, y)}
    return Graph(
        name, (x,), (y, extra_out), nodes, table, opsets={"": 17, "com.microsoft": 1},
        metadata={"source": f"{name}.onnx", "note": "ünïcode"},
        binary=None if binary is None else BackendBinary("htp", binary, f"qnn_{name}"),
    )


def make_container() -> Container:
    shared = Blob.from_array(np.arange(12, dtype=np.float32).reshape(3, 4))
    ctx = Blob.from_array(np.frombuffer(b"fake qnn context binary" * 3, np.uint8))
    graphs = (make_graph("prompt_ar128", shared, ctx), make_graph("token_ar1", shared, ctx),
              make_graph("plain", shared))
    return Container(graphs, Target("htp", 60, 75, "2.51.0"), {"producer": "ctxbin tests", "k": ""})


@pytest.fixture
def written(tmp_path: Path) -> tuple[Container, Path]:
    c = make_container()
    path = tmp_path / "m.ctxbin"
    cb.write(c, path)
    return c, path


def same_attr(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert a.name == b.name
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert list(a.tensors.items()) == list(b.tensors.items())
    assert dict(a.opsets) == dict(b.opsets) and dict(a.metadata) == dict(b.metadata)
    assert len(a.nodes) == len(b.nodes)
    for m, n in zip(a.nodes, b.nodes):
        assert (m.name, m.op_type, m.namespace, m.domain, m.inputs, m.outputs) == (
            n.name, n.op_type, n.namespace, n.domain, n.inputs, n.outputs)
        assert list(m.attrs) == list(n.attrs)
        for k in m.attrs:
            assert same_attr(m.attrs[k], n.attrs[k]), k
    assert (a.binary is None) == (b.binary is None)
    if a.binary is not None:
        assert (a.binary.backend, a.binary.graph_name) == (b.binary.backend, b.binary.graph_name)
        assert a.binary.blob.equals(b.binary.blob)


# --------------------------------------------------------------------------- round trips


def test_round_trip_everything(written: tuple[Container, Path]) -> None:
    c, path = written
    d = cb.read(path, verify=True)
    assert d.format == "ctxbin" and d.format_version == "1.0" and d.source == str(path)
    assert d.graph_names == c.graph_names
    assert d.target == c.target and dict(d.metadata) == dict(c.metadata)
    for a, b in zip(c.graphs, d.graphs):
        assert_same_graph(a, b)
        for t in a.weights:
            got = b.tensors[t.name].numpy()
            assert got.dtype == t.numpy().dtype and np.array_equal(got, t.numpy())
    g = d.graph("token_ar1")
    assert g.tensors["x"].shape == ("batch", 3, None)
    assert g.tensors["lp"].encoding == LPBQ and g.tensors["q"].encoding == PER_AXIS
    assert g.tensors["h"].encoding == PER_TENSOR and g.tensors["h"].encoding.axis is None
    assert g.inputs[0] is g.tensors["x"]
    assert g.outputs[1].dtype == DType.FLOAT32 and g.tensors["h"].dtype == DType.UFIXED8
    assert cb.check(path) == []


def test_shared_blob_is_stored_once_and_stays_shared(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    shared = Blob.from_array(arr)
    graphs = tuple(
        Graph(f"g{i}", (), (), (), {"w": Tensor("w", DType.FLOAT32, (4096,), TensorKind.STATIC, data=shared)})
        for i in range(3)
    )
    one = tmp_path / "shared.ctxbin"
    cb.write(Container(graphs), one)
    # equal content in distinct Blob objects: the writer does not dedup by content
    copies = tuple(
        Graph(f"g{i}", (), (), (), {"w": Tensor("w", DType.FLOAT32, (4096,), TensorKind.STATIC,
                                                data=Blob.from_array(arr.copy()))})
        for i in range(3)
    )
    three = tmp_path / "copies.ctxbin"
    cb.write(Container(copies), three)
    assert three.stat().st_size - one.stat().st_size >= 2 * arr.nbytes
    d = cb.read(one)
    blobs = {id(g.tensors["w"].data) for g in d.graphs}
    assert len(blobs) == 1
    assert np.array_equal(d.graphs[2].tensors["w"].numpy(), arr)


def test_empty_container_and_graph_without_weights(tmp_path: Path) -> None:
    path = tmp_path / "e.ctxbin"
    cb.write(Container(()), path)
    assert cb.read(path, verify=True).graphs == ()
    x = Tensor("x", DType.FLOAT32, (1,), TensorKind.INPUT)
    cb.write(Container((Graph("g", (x,), (x,), (), {"x": x}),)), path)
    g = cb.read(path).graph("g")
    assert g.inputs == (x,) and g.weights == ()


def test_determinism(written: tuple[Container, Path], tmp_path: Path) -> None:
    c, path = written
    again = tmp_path / "again.ctxbin"
    cb.write(make_container(), again)
    assert path.read_bytes() == again.read_bytes()
    # re-writing what was read (blobs backed by the mapping) gives the same bytes
    rewritten = tmp_path / "rewritten.ctxbin"
    cb.write(cb.read(path), rewritten)
    assert rewritten.read_bytes() == path.read_bytes()


def test_layout_is_aligned_and_canonical(written: tuple[Container, Path]) -> None:
    _, path = written
    data = path.read_bytes()
    magic, major, minor, flags, mo, ms, do, ds, mh, hh = struct.unpack_from("<8sHHIQQQQQQ", data)
    assert (magic, major, minor, flags, mo) == (cb.MAGIC, 1, 0, 0, 64)
    assert do % 64 == 0 and do + ds == len(data)
    assert mh == xxhash.xxh3_64_intdigest(data[64 : 64 + ms]) and hh == xxhash.xxh3_64_intdigest(data[:56])
    d = cb.read(path)
    for g in d.graphs:
        for t in g.weights:
            assert t.data.offset % 64 == 0


def test_sniff(written: tuple[Container, Path]) -> None:
    _, path = written
    assert cb.sniff(path.read_bytes()[:16])
    assert not cb.sniff(b"PK\x03\x04") and not cb.sniff(b"")


# --------------------------------------------------------------------------- zero copy, lazy checksums


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_weights_are_views_of_the_mapping(written: tuple[Container, Path]) -> None:
    _, path = written
    g = cb.read(path).graph("prompt_ar128")
    w, q = g.tensors["W"], g.tensors["q"]
    a, b = w.numpy(), q.numpy()
    assert not a.flags.owndata and not a.flags.writeable
    # both arrays sit in one mapping, exactly as far apart as in the file
    assert _address(b) - _address(a) == q.data.offset - w.data.offset
    raw = np.frombuffer(w.data.raw(), np.uint8)
    assert _address(raw) == _address(a)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_is_lazy_then_eager(written: tuple[Container, Path]) -> None:
    _, path = written
    where = cb.read(path).graph("plain").tensors["lp"].data.offset
    _flip_byte(path, where + 5)
    g = cb.read(path).graph("plain")  # opening touches no weight
    assert g.tensors["W"].numpy()[0, 1] == 1.0
    with pytest.raises(ChecksumError) as e:
        g.tensors["lp"].numpy()
    assert e.value.path == str(path) and e.value.offset == where
    with pytest.raises(ChecksumError):
        cb.read(path, verify=True)
    problems = cb.check(path)
    assert len(problems) == 1 and "hash" in problems[0]


def test_nodes_are_built_on_first_use(written: tuple[Container, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = written
    made: list[str] = []

    def counting_node(*args: object) -> Node:
        made.append(str(args[0]))
        return Node(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cb, "Node", counting_node)
    d = cb.read(path)
    g = d.graph("plain")
    assert len(g.nodes) == 2 and bool(g.nodes) and made == []  # len() and truth need no decoding
    assert g.nodes[0].name == "mm" and made == ["mm", "conv"]  # the first access decodes all, once
    assert g.nodes[-1] is g.nodes[1] and list(g.nodes) == [g.nodes[0], g.nodes[1]] and len(made) == 2
    assert made == ["mm", "conv"] and d.graph("token_ar1").nodes[1].attrs == {"stride": (1, 1)}


def test_lazy_nodes_equal_tuples_both_ways(written: tuple[Container, Path]) -> None:
    c, path = written
    mine, theirs = c.graph("plain").nodes, cb.read(path).graph("plain").nodes
    other = cb.read(path).graph("plain").nodes
    assert isinstance(mine, tuple) and isinstance(theirs, LazyTuple)
    assert theirs == mine and mine == theirs and theirs == other
    assert theirs != mine[:1] and mine[:1] != theirs and theirs != mine[::-1] and theirs != list(mine)
    assert theirs[:1] == mine[:1] and isinstance(theirs[:1], tuple) and mine[0] in theirs
    with pytest.raises(TypeError):
        hash(theirs)
    g = cb.read(path).graph("plain")
    assert dataclasses.replace(g) == g == c.graph("plain")
    assert dataclasses.replace(g, nodes=()) != g
    assert [n.name for n in reversed(g.nodes)] == ["conv", "mm"] and g.op_histogram() == {"Conv2d": 1, "MatMul": 1}


def test_arrays_are_verified_zero_copy_views(written: tuple[Container, Path]) -> None:
    c, path = written
    g = cb.read(path).graph("plain")
    arrays = g.arrays()
    assert list(arrays) == [t.name for t in c.graph("plain").weights]
    mapped = g.tensors["W"].data._buf
    for t in c.graph("plain").weights:
        a = arrays[t.name]
        assert not a.flags.writeable and a.dtype == t.numpy().dtype and np.array_equal(a, t.numpy())
        if a.nbytes:
            assert np.shares_memory(a, np.frombuffer(mapped, np.uint8))
    assert all(g.tensors[n].data.expected_hash is None for n in arrays)  # all verified by the batch


def test_arrays_reject_a_corrupted_blob(written: tuple[Container, Path]) -> None:
    _, path = written
    where = cb.read(path).graph("plain").tensors["q"].data.offset
    _flip_byte(path, where + 1)
    with pytest.raises(ChecksumError) as e:
        cb.read(path).graph("plain").arrays()
    assert e.value.path == str(path) and e.value.offset == where and "plain/q" in str(e.value)


# --------------------------------------------------------------------------- hostile input helpers

HEAD = struct.Struct("<8sHHIQQQQQQ")


def fix_hashes(data: bytearray) -> None:
    ms = struct.unpack_from("<Q", data, 24)[0]
    struct.pack_into("<Q", data, 48, xxhash.xxh3_64_intdigest(bytes(data[64 : 64 + ms])))
    struct.pack_into("<Q", data, 56, xxhash.xxh3_64_intdigest(bytes(data[:56])))


def set_header(path: Path, field: int, value: int, fix: bool = True) -> None:
    """Overwrite header field ``field`` (index in HEAD) and re-seal the checksums."""
    data = bytearray(path.read_bytes())
    values = list(HEAD.unpack_from(data))
    values[field] = value
    HEAD.pack_into(data, 0, *values)
    if fix:
        struct.pack_into("<Q", data, 56, xxhash.xxh3_64_intdigest(bytes(data[:56])))
    path.write_bytes(bytes(data))


def patch_meta(path: Path, fn: Callable[[bytearray, Table], None]) -> None:
    """Let ``fn`` edit the metadata in place (given the root table), then re-seal."""
    data = bytearray(path.read_bytes())
    ms = struct.unpack_from("<Q", data, 24)[0]
    meta = bytearray(data[64 : 64 + ms])
    root = FlatBuffer(bytes(meta)).root(cb.IDENTIFIER)
    fn(meta, root)
    data[64 : 64 + ms] = meta
    fix_hashes(data)
    path.write_bytes(bytes(data))


def put(meta: bytearray, t: Table, slot: int, fmt: str, index: int, value: object) -> None:
    size = struct.calcsize("<" + fmt)
    pos, n = t.vector_span(slot, size)
    assert index < n
    struct.pack_into("<" + fmt, meta, pos + size * index, value)


def graph_table(root: Table, i: int) -> Table:
    return root.tables(cb._C_GRAPHS)[i]


def read_all(path: Path) -> None:
    """Open and touch everything: every weight and every attribute."""
    c = cb.read(path)
    for g in c.graphs:
        for t in list(g.tensors.values()) + list(g.inputs) + list(g.outputs):
            if t.data is not None:
                t.numpy()
        for n in g.nodes:
            list(n.attrs.items())
        if g.binary is not None:
            g.binary.blob.memoryview()


def expect(path: Path, cls: type = FormatError, match: str | None = None) -> FormatError:
    with pytest.raises(cls, match=match) as e:
        read_all(path)
    assert e.value.path == str(path)
    return e.value


# --------------------------------------------------------------------------- hostile: header


def test_bad_magic(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 0, b"CTXBIM\0\0")
    assert expect(path, match="magic").offset == 0


def test_unknown_major_version(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 1, 2)
    assert expect(path, UnsupportedVersionError).offset == 8


def test_unknown_minor_version_is_readable(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 2, 7)
    assert cb.read(path).format_version == "1.7"


def test_flags_policy(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 3, 1 << 20)  # optional hint: ignored
    read_all(path)
    set_header(path, 3, 1 << 3)  # required feature: refused
    assert expect(path, UnsupportedVersionError, "flags").offset == 12


def test_header_checksum(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 9, 12345, fix=False)
    assert expect(path, ChecksumError).offset == 56


@pytest.mark.parametrize("size", [0, 10, 63])
def test_shorter_than_header(written: tuple[Container, Path], size: int) -> None:
    _, path = written
    path.write_bytes(path.read_bytes()[:size])
    assert expect(path, match="shorter").offset == 0


def test_truncated_data_section(written: tuple[Container, Path]) -> None:
    _, path = written
    path.write_bytes(path.read_bytes()[:-10])
    assert expect(path, match="end").offset == 40


def test_trailing_bytes(written: tuple[Container, Path]) -> None:
    _, path = written
    path.write_bytes(path.read_bytes() + b"\0" * 64)
    expect(path, match="end")


def test_metadata_larger_than_file(written: tuple[Container, Path]) -> None:
    _, path = written
    set_header(path, 5, 1 << 40)
    assert expect(path, match="metadata size").offset == 24


def test_metadata_offset_and_data_offset(written: tuple[Container, Path], tmp_path: Path) -> None:
    _, path = written
    other = tmp_path / "other.ctxbin"
    other.write_bytes(path.read_bytes())
    set_header(path, 4, 128)
    assert expect(path).offset == 16
    do = HEAD.unpack_from(other.read_bytes())[6]
    set_header(other, 6, do + 64)
    assert expect(other, match="data offset").offset == 32


def test_metadata_checksum(written: tuple[Container, Path]) -> None:
    _, path = written
    _flip_byte(path, 100)
    assert expect(path, ChecksumError, "metadata").offset == 64


def test_nonzero_padding_after_metadata(written: tuple[Container, Path]) -> None:
    _, path = written
    ms, do = HEAD.unpack_from(path.read_bytes())[5:7]
    assert do > 64 + ms, "fixture must have padding after the metadata"
    _flip_byte(path, do - 1)
    expect(path, match="padding")


def test_nonzero_padding_between_blobs(written: tuple[Container, Path]) -> None:
    _, path = written
    d = cb.read(path)
    w = d.graphs[0].tensors["W"].data
    gap = w.offset + w.nbytes  # 48 bytes, so padding follows
    del d, w
    _flip_byte(path, gap)
    read_all(path)  # lazily, padding is not looked at: no weight is wrong
    with pytest.raises(FormatError, match="padding"):
        cb.read(path, verify=True)
    assert any("padding" in p for p in cb.check(path))


# --------------------------------------------------------------------------- hostile: blob index


def test_overlapping_blobs(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, r, cb._C_BLOB_OFFSETS, "Q", 1, 0))
    assert "overlaps" in str(expect(path))


def test_hole_in_data_section(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, r, cb._C_BLOB_OFFSETS, "Q", 1, 1024))
    assert "hole" in str(expect(path))


def test_blob_past_end(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, r, cb._C_BLOB_SIZES, "Q", 0, (1 << 64) - 1))
    expect(path, match="past")


def test_unindexed_bytes_at_end(written: tuple[Container, Path]) -> None:
    _, path = written
    data = bytearray(path.read_bytes() + bytes(64))
    values = list(HEAD.unpack_from(data))
    values[7] += 64
    HEAD.pack_into(data, 0, *values)
    fix_hashes(data)
    path.write_bytes(bytes(data))
    expect(path, match="unindexed")


def test_tensor_references_missing_blob(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, graph_table(r, 0), cb._G_T_BLOB, "i", 1, 999))
    expect(path, match="tensor_blob")


def test_unreferenced_blob(tmp_path: Path) -> None:
    path = tmp_path / "u.ctxbin"
    w = Tensor("w", DType.UINT8, (4,), TensorKind.STATIC, data=Blob.from_array(np.arange(4, dtype=np.uint8)))
    cb.write(Container((Graph("g", (), (), (), {"w": w}),)), path)
    patch_meta(path, lambda m, r: put(m, graph_table(r, 0), cb._G_T_BLOB, "i", 0, -1))
    expect(path, match="not referenced")


# --------------------------------------------------------------------------- hostile: graphs, tensors, nodes


def _row(root: Table, graph: int, name: str) -> int:
    g = graph_table(root, graph)
    pool = bytes(g.bytes_(cb._G_STRINGS)).decode().split("\0")
    names = [pool[i] for i in g.array(cb._G_T_NAME, "<u4").tolist()]
    return names.index(name)


def test_shape_overflow_is_caught_before_allocation(written: tuple[Container, Path]) -> None:
    _, path = written

    def huge(m: bytearray, r: Table) -> None:
        row = _row(r, 0, "W")  # rank 2 weight of 48 bytes
        ranks = graph_table(r, 0).array(cb._G_T_RANK, "u1")
        first = int(ranks[:row].sum())
        put(m, graph_table(r, 0), cb._G_DIMS, "q", first, 1 << 61)
        put(m, graph_table(r, 0), cb._G_DIMS, "q", first + 1, 1 << 61)

    patch_meta(path, huge)
    assert "needs" in str(expect(path))


def test_shape_disagreeing_with_blob_size(written: tuple[Container, Path]) -> None:
    _, path = written

    def wrong(m: bytearray, r: Table) -> None:
        row = _row(r, 0, "W")
        first = int(graph_table(r, 0).array(cb._G_T_RANK, "u1")[:row].sum())
        put(m, graph_table(r, 0), cb._G_DIMS, "q", first, 4)  # 4x4 floats != 48 bytes

    patch_meta(path, wrong)
    expect(path, match="needs 64 bytes")


@pytest.mark.parametrize("dim", [-1, -2, -(1 << 40)])
def test_negative_dims_of_a_weight(written: tuple[Container, Path], dim: int) -> None:
    _, path = written

    def neg(m: bytearray, r: Table) -> None:
        row = _row(r, 0, "W")
        first = int(graph_table(r, 0).array(cb._G_T_RANK, "u1")[:row].sum())
        put(m, graph_table(r, 0), cb._G_DIMS, "q", first, dim)

    patch_meta(path, neg)
    expect(path)


def test_duplicate_graph_names(tmp_path: Path) -> None:
    path = tmp_path / "d.ctxbin"
    w = Blob.from_array(np.zeros(3, np.uint8))
    graphs = tuple(Graph(n, (), (), (), {"w": Tensor("w", DType.UINT8, (3,), TensorKind.STATIC, data=w)})
                   for n in ("graph_a", "graph_b"))
    cb.write(Container(graphs), path)

    def rename(m: bytearray, r: Table) -> None:
        i = bytes(m).index(b"graph_b")
        m[i : i + 7] = b"graph_a"

    patch_meta(path, rename)
    expect(path, match="appears twice")


def test_duplicate_tensor_names(written: tuple[Container, Path]) -> None:
    _, path = written

    def dup(m: bytearray, r: Table) -> None:
        g = graph_table(r, 1)
        first = int(g.array(cb._G_T_NAME, "<u4")[0])
        put(m, g, cb._G_T_NAME, "I", 1, first)

    patch_meta(path, dup)
    expect(path, match="appears twice")


def test_node_references_missing_name(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, graph_table(r, 0), cb._G_N_INPUTS, "I", 0, 1 << 30))
    expect(path, match="node_inputs")


def test_io_references_missing_row(written: tuple[Container, Path]) -> None:
    _, path = written
    patch_meta(path, lambda m, r: put(m, graph_table(r, 2), cb._G_OUTPUTS, "I", 0, 1000))
    expect(path, match="outputs")


def test_unknown_dtype_and_kind(written: tuple[Container, Path], tmp_path: Path) -> None:
    _, path = written
    other = tmp_path / "o.ctxbin"
    other.write_bytes(path.read_bytes())
    patch_meta(path, lambda m, r: put(m, graph_table(r, 0), cb._G_T_DTYPE, "I", 0, 0x9999))
    expect(path, match="data type")
    patch_meta(other, lambda m, r: put(m, graph_table(r, 0), cb._G_T_KIND, "B", 0, 77))
    expect(other, match="tensor_kind")


def test_string_pool_must_be_utf8(written: tuple[Container, Path]) -> None:
    _, path = written

    def garble(m: bytearray, r: Table) -> None:
        pos, n = graph_table(r, 0).vector_span(cb._G_STRINGS, 1)
        m[pos] = 0xFF

    patch_meta(path, garble)
    expect(path, match="UTF-8")


def test_attribute_references(written: tuple[Container, Path], tmp_path: Path) -> None:
    _, path = written
    other = tmp_path / "o.ctxbin"
    other.write_bytes(path.read_bytes())
    patch_meta(path, lambda m, r: put(m, graph_table(r, 0), cb._G_A_KIND, "B", 0, 42))
    expect(path, match="attribute kind")
    patch_meta(other, lambda m, r: put(m, graph_table(r, 0), cb._G_A_REF, "Q", 0, (1 << 64) - 1))
    expect(other, match="run past")


def _column_at(path: Path, slot: int, elem: int, index: int = 0) -> int:
    """File offset of element ``index`` of a column of the first graph."""
    data = path.read_bytes()
    ms = struct.unpack_from("<Q", data, 24)[0]
    pos, _ = graph_table(FlatBuffer(data[64 : 64 + ms]).root(cb.IDENTIFIER), 0).vector_span(slot, elem)
    return 64 + pos + elem * index


def _rename_in_pool(old: bytes, new: bytes) -> Callable[[bytearray, Table], None]:
    def edit(m: bytearray, r: Table) -> None:  # in every graph's pool
        m[:] = bytes(m).replace(old + b"\0", new + b"\0")

    return edit


def _strs_entry(m: bytearray, r: Table) -> None:
    g = graph_table(r, 0)
    strs = list(ALL_ATTRS).index("strs")
    put(m, g, cb._G_A_INTS, "q", int(g.array(cb._G_A_REF, "<u8")[strs]) + 1, 1 << 40)


@pytest.mark.parametrize(
    "patch, match, slot, elem, index",
    [
        (lambda m, r: put(m, graph_table(r, 0), cb._G_A_KIND, "B", 3, 42), "attribute kind", cb._G_A_KIND, 1, 3),
        (lambda m, r: put(m, graph_table(r, 0), cb._G_A_REF, "Q", 6, (1 << 64) - 1), "run past", cb._G_A_KIND, 1, 6),
        (lambda m, r: put(m, graph_table(r, 0), cb._G_A_LEN, "I", 0, 2), "run past", cb._G_A_KIND, 1, 0),
        (_strs_entry, "string pool", cb._G_A_KIND, 1, list(ALL_ATTRS).index("strs")),
        (lambda m, r: put(m, graph_table(r, 0), cb._G_A_NAME, "I", 2,
                          int(graph_table(r, 0).array(cb._G_A_NAME, "<u4")[0])), "appears twice", cb._G_A_NAME, 4, 2),
        # two pool entries holding the same string: names compare as strings, not as indices
        (_rename_in_pool(b"strs", b"ints"), "appears twice", cb._G_A_NAME, 4, list(ALL_ATTRS).index("strs")),
        (lambda m, r: put(m, graph_table(r, 0), cb._G_N_OP, "I", 1, 1 << 20), "node_op_type", cb._G_N_OP, 4, 1),
    ],
)
def test_bad_node_columns_fail_at_open(written: tuple[Container, Path], patch: Callable, match: str, slot: int,
                                       elem: int, index: int) -> None:
    """Nodes are built lazily, but every rule about them is checked when the file is opened."""
    _, path = written
    patch_meta(path, patch)
    with pytest.raises(FormatError, match=match) as e:
        cb.read(path)
    assert e.value.path == str(path) and e.value.offset == _column_at(path, slot, elem, index)
    assert "prompt_ar128" in str(e.value)


def test_long_node_names_fail_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "n.ctxbin"
    long = "é" * 3000  # 6000 bytes but 3000 characters: within the limit
    nodes = (Node("ok", "Relu", "onnx", (), ()), Node(long, "Relu", "onnx", (), ()), Node("x" * 5000, "Relu", "onnx", (), ()))
    with pytest.raises(FormatError, match="4096"):
        cb.write(Container((Graph("g", (), (), nodes),)), path)
    cb.write(Container((Graph("g", (), (), nodes[:2]),)), path)
    assert cb.read(path).graphs[0].nodes[1].name == long
    monkeypatch.setattr(cb, "LIMITS", cb.Limits(name=2999))
    with pytest.raises(FormatError, match="node_name\\[1\\].*longer") as e:
        cb.read(path)
    assert e.value.offset == _column_at(path, cb._G_N_NAME, 4, 1)


def test_array_attribute_type_is_whitelisted(tmp_path: Path) -> None:
    path = tmp_path / "a.ctxbin"
    n = Node("n", "Constant", "onnx", (), ("y",), {"value": np.zeros(2, np.float32)})
    cb.write(Container((Graph("g", (), (), (n,), {}),)), path)

    def to_object(m: bytearray, r: Table) -> None:
        i = bytes(m).index(b"<f4")
        m[i : i + 3] = b"|O8"

    patch_meta(path, to_object)
    expect(path, match="not allowed")


def test_limits_are_enforced_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "l.ctxbin"
    x = Tensor("x", DType.FLOAT32, (1, 1, 1), TensorKind.INPUT)
    c = Container(tuple(Graph(f"g{i}", (x,), (), (), {"x": x}) for i in range(3)))
    cb.write(c, path)
    monkeypatch.setattr(cb, "LIMITS", cb.Limits(graphs=2))
    with pytest.raises(FormatError, match="graphs"):
        cb.write(c, tmp_path / "w.ctxbin")
    expect(path, match="limit 2")
    monkeypatch.setattr(cb, "LIMITS", cb.Limits(rank=2))
    with pytest.raises(FormatError, match="rank"):
        cb.write(c, tmp_path / "w.ctxbin")
    expect(path, match="tensor_rank")
    monkeypatch.setattr(cb, "LIMITS", cb.Limits(name=1))
    expect(path, match="longer")
    monkeypatch.setattr(cb, "LIMITS", cb.Limits(metadata_size=100))
    expect(path, match="metadata size")


def test_metadata_must_be_a_ctxbin_flatbuffer(written: tuple[Container, Path]) -> None:
    _, path = written

    def ident(m: bytearray, r: Table) -> None:
        m[4:8] = b"NETD"

    patch_meta(path, ident)
    expect(path, match="identifier")


# --------------------------------------------------------------------------- writer refusals


@pytest.mark.parametrize(
    "graph, match",
    [
        (Graph("g", (), (), (), {"a\0b": Tensor("a\0b", DType.FLOAT32, (1,))}), "NUL"),
        (Graph("g", (), (), (Node("n", "X", "onnx", (), (), {"bad": {1: 2}}),), {}), "dict"),
        (Graph("g", (), (), (Node("n", "X", "onnx", (), (), {"bad": (1, "a")}),), {}), "lists"),
        (Graph("g", (), (), (Node("n", "X", "onnx", (), (), {"big": 1 << 64}),), {}), "64 bits"),
        (Graph("g", (), (), (Node("n", "X", "onnx", (), (), {"o": np.array([None])}),), {}), "object"),
        (Graph("g", (), (), (), {"w": Tensor("w", DType.FLOAT32, (3,), TensorKind.STATIC,
                                              data=Blob.from_array(np.zeros(2, np.float32)))}), "needs 12"),
        (Graph("g", (), (), (), {"w": Tensor("w", DType.FLOAT32, ("n",), TensorKind.STATIC,
                                              data=Blob.from_array(np.zeros(2, np.float32)))}), "concrete"),
        (Graph("g", (), (), (), {"w": Tensor("w", DType.FLOAT32, (-1,))}), "dimension"),
        (Graph("g", (), (), (), {"w": Tensor("w", DType.STRING, (2,), TensorKind.STATIC,
                                              data=Blob(b"ab"))}), "cannot hold data"),
    ],
)
def test_writer_refuses_what_it_cannot_store(tmp_path: Path, graph: Graph, match: str) -> None:
    path = tmp_path / "r.ctxbin"
    with pytest.raises(FormatError, match=match):
        cb.write(Container((graph,)), path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_writer_numpy_dims_and_plain_ints_write_the_same(tmp_path: Path) -> None:
    # plain int shapes take the writer's fast size check, numpy ints the full one
    def graph(shape: tuple) -> Container:
        w = Tensor("w", DType.FLOAT32, shape, TensorKind.STATIC, data=Blob.from_array(np.zeros(6, np.float32)))
        n = Node("n", "X", "onnx", (), (), {"pads": (1, 2), "kernel": tuple(np.int64(v) for v in shape)})
        return Container((Graph("g", (), (), (n,), {"w": w}),))

    cb.write(graph((2, 3)), tmp_path / "a.ctxbin")
    cb.write(graph((np.int64(2), np.int64(3))), tmp_path / "b.ctxbin")
    assert (tmp_path / "a.ctxbin").read_bytes() == (tmp_path / "b.ctxbin").read_bytes()


def test_writer_refuses_duplicate_graph_names(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="unique"):
        cb.write(Container((Graph("g", (), ()), Graph("g", (), ()))), tmp_path / "x.ctxbin")


def test_writer_verifies_source_blobs(written: tuple[Container, Path], tmp_path: Path) -> None:
    _, path = written
    where = cb.read(path).graph("plain").tensors["q"].data.offset
    _flip_byte(path, where)
    with pytest.raises(ChecksumError):
        cb.write(cb.read(path), tmp_path / "copy.ctxbin")
    assert not (tmp_path / "copy.ctxbin").exists()


# --------------------------------------------------------------------------- fuzzing

_SEED_PATH: list[bytes] = []


def _seed_file() -> bytes:
    if not _SEED_PATH:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "seed.ctxbin"
            cb.write(make_container(), p)
            _SEED_PATH.append(p.read_bytes())
    return _SEED_PATH[0]


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 30), st.just(0)),
    st.tuples(st.just("u32"), st.integers(0, 1 << 30), st.integers(0, (1 << 32) - 1)),
    st.tuples(st.just("u64"), st.integers(0, 1 << 30), st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 30), st.integers(0, 255)),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(mutation, min_size=1, max_size=4), target=st.sampled_from(["any", "header", "meta"]),
       reseal=st.booleans())
def test_fuzz_only_ctxbin_errors(tmp_path: Path, mutations: list, target: str, reseal: bool) -> None:
    data = bytearray(_seed_file())
    ms = struct.unpack_from("<Q", data, 24)[0]
    lo, hi = {"any": (0, len(data)), "header": (0, 64), "meta": (64, 64 + ms)}[target]
    for kind, at, value in mutations:
        pos = lo + at % max(1, hi - lo)
        if kind == "truncate":
            del data[pos:]
        elif pos < len(data):
            if kind == "flip":
                data[pos] ^= 1 << value
            elif kind == "byte":
                data[pos] = value
            else:
                width = 4 if kind == "u32" else 8
                if pos + width <= len(data):
                    struct.pack_into("<I" if width == 4 else "<Q", data, pos, value)
    if reseal and len(data) >= 64:
        ms = struct.unpack_from("<Q", data, 24)[0]
        if 64 + ms <= len(data):  # re-seal so the mutation reaches the metadata decoder
            fix_hashes(data)
    path = tmp_path / "fuzz.ctxbin"
    path.write_bytes(bytes(data))
    try:
        read_all(path)
        cb.check(path)
    except CtxbinError:
        pass


# --------------------------------------------------------------------------- writing spans of a source file


def _file_blobs(path: Path, layout: list[tuple[int, bytes]], filler: bytes = b"\xee") -> list[Blob]:
    """Blobs mapped from a file holding ``layout``'s (offset, bytes) pieces,
    ``filler`` bytes in between."""
    import mmap

    size = max(o + len(b) for o, b in layout)
    raw = bytearray(filler * size)
    for o, b in layout:
        raw[o : o + len(b)] = b
    path.write_bytes(bytes(raw))
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return [Blob(m, o, len(b), expected_hash=xxhash.xxh3_64_intdigest(b), origin=(str(path), f"blob {i}", o),
                 file=str(path)) for i, (o, b) in enumerate(layout)]


def test_coalesce_merges_only_runs_with_the_output_gaps_and_zero_padding(tmp_path: Path) -> None:
    from ctxbin.weights import coalesce

    layout = [(0, b"A" * 10), (64, b"B" * 64), (128, b"C" * 5), (192, b"D" * 3)]
    out = [0, 64, 128, 192]
    spans = lambda blobs, offs: [(x.offset, x.nbytes, o) for x, o in coalesce(blobs, offs)]  # noqa: E731
    # non-zero gaps are never copied into the output's padding; B and C touch
    junk = _file_blobs(tmp_path / "junk.bin", layout)
    assert spans(junk, out) == [(0, 10, 0), (64, 69, 64), (192, 3, 192)]
    zero = _file_blobs(tmp_path / "zero.bin", layout, b"\0")
    assert spans(zero, out) == [(0, 195, 0)]
    # gaps that differ from the output's are not merged
    assert spans(zero, [0, 128, 256, 320]) == [(0, 10, 0), (64, 64, 128), (128, 67, 256)]
    # blobs of another mapping or from memory are not merged
    assert len(spans([zero[0], junk[1], Blob(b"C" * 5)], [0, 64, 128])) == 3
    # a corrupt member is caught before its span is copied
    bad = Blob(zero[1]._buf, 64, 64, expected_hash=1, file=zero[1].file, origin=("zero.bin", "B", 64))
    with pytest.raises(ChecksumError):
        list(coalesce([zero[0], bad], [0, 64]))


def test_writing_blobs_from_a_file_gives_the_same_bytes_as_from_memory(tmp_path: Path) -> None:
    """Relinked files copy runs of blobs in one piece: same bytes as writing
    each blob from memory, and padding stays zero even when the source's
    gaps are not."""
    pieces = [np.arange(n, dtype=np.uint8).tobytes() for n in (10, 64, 5, 200, 0, 3)]
    offsets = [0, 64, 128, 192, 448, 448]

    def container(blobs: list[Blob]) -> Container:
        ts = {f"t{i}": Tensor(f"t{i}", DType.UINT8, (b.nbytes,), TensorKind.STATIC, data=b)
              for i, b in enumerate(blobs)}
        return Container(graphs=(Graph("g", (), (), tensors=ts),))

    cb.write(container([Blob(p) for p in pieces]), tmp_path / "mem.ctxbin")
    cb.write(container(_file_blobs(tmp_path / "src.bin", list(zip(offsets, pieces)))), tmp_path / "file.ctxbin")
    first = cb.read(tmp_path / "mem.ctxbin")
    cb.write(first, tmp_path / "again.ctxbin")  # every blob from one mapping, zero gaps: one span
    mem = (tmp_path / "mem.ctxbin").read_bytes()
    assert (tmp_path / "file.ctxbin").read_bytes() == mem
    assert (tmp_path / "again.ctxbin").read_bytes() == mem
    assert cb.check(tmp_path / "file.ctxbin") == []


def test_dims_whose_product_overflows_a_float_are_refused_without_warnings(
    own_dlc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight of 20 dims of 2**61 over 4 bytes (written with the writer's
    own check turned off): the vectorized size check's float product
    overflows, the exact check refuses it, and numpy warns nothing."""
    c = dlc.read(own_dlc)
    (g,) = c.graphs
    w = g.weights[0]
    big = Tensor(w.name, w.dtype, (1 << 61,) * 20, TensorKind.STATIC, None, Blob(np.zeros(4, np.uint8)))
    with monkeypatch.context() as m:
        m.setattr(cb._Writer, "check_static", lambda *args: None)
        cb.write(dataclasses.replace(c, graphs=(dataclasses.replace(g, tensors={**g.tensors, w.name: big}),)),
                 tmp_path / "big.ctxbin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FormatError, match="but its blob holds 4"):
            cb.read(tmp_path / "big.ctxbin")
