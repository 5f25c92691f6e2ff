"""Writing QNN DLC v4 files: real DLCs from the QNN IR backend (dlc_oracle.py) are
read, written by ctxbin and compared with the vendor's file field by field; the
IR survives the round trip; several graphs share one copy of their weights;
the bytes are deterministic, the ZIP is valid (CRCs, alignment, ZIP64), writes
are atomic, and graphs a DLC cannot hold are refused clearly."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import ctxbin
from ctxbin.errors import FormatError, GraphNotFoundError
from ctxbin.flatbuf import FlatBuffer, Table
from ctxbin.formats import dlc
from ctxbin.ir import Container, DType, Graph, Node, QuantEncoding, QuantKind, Tensor, TensorKind
from ctxbin.weights import Blob, BlobCopy
from ctxbin.ziparchive import ZipArchive

from . import dlc_oracle as oracle
from .shared_data import DLC_DIR

V3 = DLC_DIR / "mlcommons_v1_0_deeplabv3_hta.dlc"


def misc_net() -> onnx.ModelProto:
    """Ops whose params are not uint32: Gather's int32 axis, StridedSlice's int32
    ranges, LayerNorm's float epsilon, ArgMax with an int64 output (int32 + Cast)."""
    inits = {
        "idx": np.array([2, 0, 1], np.int64), "starts": np.array([1], np.int64),
        "ends": np.array([5], np.int64), "axes": np.array([3], np.int64),
        "g": np.linspace(0.5, 1.5, 6).astype(np.float32), "b": np.linspace(-1, 1, 6).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["x", "idx"], ["ga"], axis=1),
        helper.make_node("Slice", ["ga", "starts", "ends", "axes"], ["sl"]),
        helper.make_node("ReduceMean", ["sl"], ["rm"], axes=[2], keepdims=1),
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("ArgMax", ["ln"], ["am"], axis=1, keepdims=1),
        helper.make_node("Tanh", ["ln"], ["th"]),
    ]
    return oracle._model(
        nodes, [oracle._vi("x", [1, 3, 6, 6])],
        [oracle._vi("rm", [1, 3, 1, 4]), oracle._vi("am", [1, 1, 6, 6], TensorProto.INT64), oracle._vi("th", [1, 3, 6, 6])],
        inits,
    )


MODELS = {**oracle.MODELS, "misc": lambda: (misc_net(), True)}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> a DLC written by the QNN IR backend."""
    oracle.require_qnn()
    return oracle.make_dlcs({k: make() for k, make in MODELS.items()}, tmp_path_factory.mktemp("vendor"))


@pytest.fixture(scope="module")
def rewritten(vendor: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the same DLC read and written by ctxbin."""
    out = tmp_path_factory.mktemp("ctxbin")
    paths = {}
    for name, src in vendor.items():
        paths[name] = out / f"{name}.dlc"
        dlc.write(dlc.read(src), paths[name])
    return paths


# ----------------------------------------------------------------- a schema-driven decoder
# Every field of every v4 table as docs/DLC.md lists it; the decoder reports
# the fields present in a file (and any slot the schema does not know), so two
# files can be compared field by field.
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Model": {0: ("graphs", "[Graph]")},
    "Graph": {0: ("name", "str"), 1: ("nodes", "[Node]"), 2: ("tensors", "[Tensor]"), 4: ("name2", "str")},
    "Node": {0: ("name", "str"), 1: ("type", "str"), 2: ("inputs", "[str]"), 3: ("outputs", "[str]"), 4: ("params", "[Param]")},
    "Param": {0: ("name", "str"), 1: ("kind", "i"), 2: ("flag", "B"), 3: ("value", "Scalar"), 4: ("tensor", "Tensor")},
    "Scalar": {0: ("dtype", "i"), 1: ("int", "q"), 2: ("float", "d"), 3: ("string", "str")},
    "Tensor": {
        0: ("id", "I"), 1: ("name", "str"), 2: ("type", "i"), 3: ("dims", "[u4]"), 4: ("unk4", "i"),
        5: ("quant", "Quant"), 6: ("dtype", "i"), 7: ("unk7", "i"), 8: ("unk8", "B"), 12: ("unk12", "i"),
        14: ("unk14", "[u1]"),
    },
    "Quant": {0: ("encoding", "i"), 1: ("defined", "B"), 2: ("scale_offset", "ScaleOffset"), 3: ("axis", "Axis")},
    "ScaleOffset": {0: ("bitwidth", "i"), 1: ("min", "f"), 2: ("max", "f"), 3: ("scale", "f"), 4: ("offset", "i"), 5: ("symmetric", "B")},
    "Axis": {0: ("axis", "i"), 1: ("channels", "[ScaleOffset]")},
    "Params": {0: ("graphs", "[GraphParams]")},
    "GraphParams": {0: ("name", "str"), 1: ("tensors", "[TensorData]"), 2: ("nodes", "[NodeParams]")},
    "NodeParams": {0: ("tensors", "[TensorData]")},
    "TensorData": {0: ("name", "str"), 1: ("bytes", "[u1]"), 3: ("ref", "BinRef")},
    "BinRef": {0: ("offset", "Q"), 1: ("size", "Q")},
}


def decode(t: Table, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"#slots": (t.vt_size - 4) // 2}
    for i in range(out["#slots"]):
        if not t.has(i):
            continue
        if i not in SCHEMA[kind]:
            out[f"unknown slot {i}"] = True
            continue
        name, ft = SCHEMA[kind][i]
        if ft == "str":
            out[name] = t.string(i)
        elif ft == "[str]":
            out[name] = t.strings(i)
        elif ft == "[u4]":
            out[name] = t.array(i, "<u4").tolist()
        elif ft == "[u1]":
            out[name] = bytes(t.bytes_(i) or b"")
        elif ft.startswith("["):
            out[name] = [decode(x, ft[1:-1]) for x in t.tables(i)]
        elif ft in SCHEMA:
            out[name] = decode(t.table(i), ft)  # type: ignore[arg-type]
        else:
            out[name] = t.scalar(i, ft)
    return out


def decode_file(path: Path) -> tuple[dict[str, Any], dict[str, Any], ZipArchive]:
    z = ZipArchive.open(path)
    model, params = z.read("model"), z.read("model.params")
    assert bytes(model[:8]) == bytes(params[:8]) == b"\xd5\x0a\x04\x00\x01\x00\x00\x00"
    return (
        decode(FlatBuffer(model, start=8).root(b"NETD"), "Model"),
        decode(FlatBuffer(params, start=8).root(b"NETP"), "Params"),
        z,
    )


def masked(x: Any) -> Any:
    """What may differ between two writers of the same graph: tensor ids (QNN
    numbers tensors as it creates them), the names of tensor params (the IR does
    not keep them) and where bytes sit in model.params.bin."""
    if isinstance(x, dict):
        return {k: "*" if k in ("id", "offset") else masked(v) for k, v in x.items()}
    if isinstance(x, list):
        return [masked(v) for v in x]
    return x


def param_tensor_names(model: dict[str, Any]) -> list[str]:
    return [p["tensor"]["name"] for g in model["graphs"] for n in g["nodes"] for p in n["params"] if "tensor" in p]


def unmask_param_names(model: dict[str, Any], params: dict[str, Any], names: list[str]) -> None:
    mapping = dict(zip(param_tensor_names(model), names))
    it = iter(names)
    for g in model["graphs"]:
        for n in g["nodes"]:
            for p in n["params"]:
                if "tensor" in p:
                    p["tensor"]["name"] = next(it)
    for g in params["graphs"]:
        for n in g["nodes"]:
            for td in n["tensors"]:
                td["name"] = mapping.get(td["name"], td["name"])


# ----------------------------------------------------------------- agreement with the vendor
@pytest.mark.parametrize("name", list(MODELS))
def test_fields_agree_with_the_vendor(vendor, rewritten, name: str) -> None:
    vm, vp, vz = decode_file(vendor[name])
    cm, cp, cz = decode_file(rewritten[name])
    # ctxbin names tensor params after node and param; rename them to the vendor's
    mine = param_tensor_names(cm)
    assert len(set(mine)) == len(mine)
    unmask_param_names(cm, cp, param_tensor_names(vm))
    assert masked(cm) == masked(vm)
    assert masked(cp) == masked(vp)
    # ids: unique per graph, like QNN's
    for g in cm["graphs"]:
        ids = [t["id"] for t in g["tensors"]] + [p["tensor"]["id"] for n in g["nodes"] for p in n["params"] if "tensor" in p]
        assert len(set(ids)) == len(ids) and min(ids) >= 1
    # the bytes each reference points to are the vendor's
    vbin, cbin = bytes(vz.read("model.params.bin")), bytes(cz.read("model.params.bin"))
    for vg, cg in zip(vp["graphs"], cp["graphs"]):
        vrefs = [td["ref"] for td in vg["tensors"]] + [td["ref"] for n in vg["nodes"] for td in n["tensors"]]
        crefs = [td["ref"] for td in cg["tensors"]] + [td["ref"] for n in cg["nodes"] for td in n["tensors"]]
        for v, c in zip(vrefs, crefs):
            vo, co = v.get("offset", 0), c.get("offset", 0)
            assert co % 64 == 0
            assert vbin[vo : vo + v["size"]] == cbin[co : co + c["size"]]
    assert sorted(vz.names()) == sorted(cz.names())


@pytest.mark.parametrize("name", ["conv", "qdq_channel"])
def test_metadata_entries_like_the_vendor(vendor, rewritten, name: str) -> None:
    vz, cz = ZipArchive.open(vendor[name]), ZipArchive.open(rewritten[name])
    for entry in ("dlc.metadata2.3.0", "dlc.metadata.history.2.3.0"):
        v, c = json.loads(bytes(vz.read(entry))), json.loads(bytes(cz.read(entry)))
        assert v["header"] == c["header"]  # the source's timestamp is kept
    v = json.loads(bytes(vz.read("dlc.metadata.history.2.3.0")))["dlcGenerationInfo"]
    c = json.loads(bytes(cz.read("dlc.metadata.history.2.3.0")))["dlcGenerationInfo"]
    assert c[:-1] == v
    step = c[-1]["converterCommand"]
    assert step["tool"] == "ctxbin" and step["converterVersion"] == ctxbin.__version__
    assert step["timestamp"] == v[-1]["converterCommand"]["timestamp"]
    assert set(step) == set(v[-1]["converterCommand"])


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", list(MODELS))
def test_read_write_read_is_identical(vendor, rewritten, name: str) -> None:
    a, b = dlc.read(vendor[name]), dlc.read(rewritten[name])
    assert a.graphs == b.graphs
    assert a.target == b.target and a.format_version == b.format_version == "4.1"
    assert {k: v for k, v in a.metadata.items() if k != dlc.HISTORY_KEY} == {
        k: v for k, v in b.metadata.items() if k != dlc.HISTORY_KEY
    }
    # and once more: a ctxbin file rewritten by ctxbin gives the same IR again
    again = rewritten[name].with_name(f"{name}_again.dlc")
    dlc.write(b, again)
    assert dlc.read(again).graphs == a.graphs


def test_scalar_param_types_survive(vendor, rewritten) -> None:
    g = dlc.read(rewritten["misc"]).graphs[0]
    gather = next(n for n in g.nodes if n.op_type == "Gather")
    axis = gather.attrs["axis"]  # int32 in QNN's op definition: kept as a typed 0-d array
    assert isinstance(axis, np.ndarray) and axis.dtype == np.int32 and int(axis) == 1
    ln = next(n for n in g.nodes if n.op_type == "LayerNorm")
    assert ln.attrs["epsilon"] == float(np.float32(1e-5))
    ranges = next(n for n in g.nodes if n.op_type == "StridedSlice").attrs["ranges"]
    assert ranges.dtype == np.int32 and ranges.shape == (4, 3)
    assert g.tensors["am"].dtype == DType.INT64


def test_deterministic_bytes(vendor, tmp_path: Path) -> None:
    c = dlc.read(vendor["mixed"])
    dlc.write(c, tmp_path / "a.dlc")
    dlc.write(c, tmp_path / "b.dlc")
    dlc.write(dlc.read(tmp_path / "a.dlc"), tmp_path / "c.dlc")
    assert (tmp_path / "a.dlc").read_bytes() == (tmp_path / "b.dlc").read_bytes()
    # a rewrite differs only by the extra history step
    assert dlc.read(tmp_path / "c.dlc").graphs == c.graphs


def test_zip_is_valid_aligned_and_checksummed(rewritten) -> None:
    for path in rewritten.values():
        with zipfile.ZipFile(path) as zf:  # Python's reader verifies every CRC-32
            assert zf.testzip() is None
            assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        z = ZipArchive.open(path)
        assert all(e.crc != 0 and e.data_offset % 64 == 0 for e in z.entries)
        assert z.entries[0].name == "dlc.metadata.history.2.3.0"  # central directory sorted by name
        assert z.entry("model.params.bin").header_offset == 0
        g = dlc.read(path).graphs[0]
        for t in g.weights:  # zero-copy views are aligned
            assert t.data.offset % 64 == 0 and t.numpy().ctypes.data % 64 == 0


def test_zip64_records_when_sizes_need_them(vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZIP64 (what > 4 GB weights need) exercised on a small file by lowering the limit."""
    c = dlc.read(vendor["conv"])
    monkeypatch.setattr(dlc, "_ZIP32_MAX", 1000)
    out = tmp_path / "z64.dlc"
    dlc.write(c, out)
    raw = out.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert zf.getinfo("model.params.bin").file_size > 1000
    assert dlc.read(out).graphs == c.graphs
    assert all(e.data_offset % 64 == 0 for e in ZipArchive.open(out).entries)


def test_overwrite_the_source_file(vendor, tmp_path: Path) -> None:
    path = tmp_path / "self.dlc"
    path.write_bytes(vendor["conv"].read_bytes())
    c = dlc.read(path)
    ref = dlc.read(vendor["conv"])
    dlc.write(c, path)  # the weights come from the mapping of the file being replaced
    assert dlc.read(path).graphs == ref.graphs


def test_save_dispatches_by_extension(vendor, tmp_path: Path) -> None:
    c = ctxbin.load(vendor["fp16"])
    ctxbin.save(c, tmp_path / "x.dlc")
    assert ctxbin.load(tmp_path / "x.dlc").graphs == c.graphs


# ----------------------------------------------------------------- several graphs, shared weights
def renamed(c: Container, *names: str) -> Container:
    g = c.graphs[0]
    return dataclasses.replace(c, graphs=tuple(dataclasses.replace(g, name=n) for n in names))


def test_same_bytes_with_and_without_the_c_core(vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry CRCs combined from per-blob CRCs (C core) and from zlib (fallback)
    agree, with padding between blobs, blobs copied from the mapped source and
    blobs from memory (a graph with changed weights), and shared blobs."""
    c = dlc.read(vendor["mixed"])
    (g,) = c.graphs
    changed = {n: dataclasses.replace(t, data=Blob.from_array(t.numpy() * 2 if t.dtype == DType.FLOAT32 else t.numpy()))
               for n, t in list(g.tensors.items())[::2] if t.data is not None}
    c = dataclasses.replace(c, graphs=(g, dataclasses.replace(g, name="other", tensors={**g.tensors, **changed})))
    outs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("CTXBIN_NO_NATIVE", mode)
        outs[mode] = tmp_path / f"native{mode}.dlc"
        dlc.write(c, outs[mode])
    assert outs["0"].read_bytes() == outs["1"].read_bytes()
    with zipfile.ZipFile(outs["0"]) as zf:  # Python's reader verifies every CRC-32
        assert zf.testzip() is None
    assert dlc.check(outs["0"]) == []


def test_two_graphs_share_one_copy_of_weights(vendor, tmp_path: Path) -> None:
    c = dlc.read(vendor["conv"])
    one, two = tmp_path / "one.dlc", tmp_path / "two.dlc"
    dlc.write(renamed(c, "prompt"), one)
    dlc.write(renamed(c, "prompt", "token"), two)
    size = lambda p: ZipArchive.open(p).entry("model.params.bin").size  # noqa: E731
    assert size(two) == size(one)
    back = dlc.read(two)
    assert back.graph_names == ["prompt", "token"]
    for g in back.graphs:
        assert g == dataclasses.replace(c.graphs[0], name=g.name)
    a, b = back.graphs
    for name, t in a.tensors.items():
        if t.data is not None:
            assert b.tensors[name].data.offset == t.data.offset  # one copy, two references
    _, params, _ = decode_file(two)
    assert [g["name"] for g in params["graphs"]] == ["prompt", "token"]
    # sharing off: every graph gets its own copy
    dlc.write(renamed(c, "prompt", "token"), tmp_path / "none.dlc", share="none")
    assert size(tmp_path / "none.dlc") >= 2 * size(one) - 64
    # only the graphs asked for, in the order asked
    dlc.write(renamed(c, "prompt", "token"), tmp_path / "sel.dlc", graphs=["token"])
    assert dlc.read(tmp_path / "sel.dlc").graph_names == ["token"]
    with pytest.raises(GraphNotFoundError):
        dlc.write(c, tmp_path / "x.dlc", graphs=["nope"])


def test_same_name_different_content_is_not_shared(vendor, tmp_path: Path) -> None:
    c = dlc.read(vendor["conv"])
    g = c.graphs[0]
    w = g.tensors["W"]
    changed = Tensor(w.name, w.dtype, w.shape, w.kind, w.encoding, Blob.from_array(w.numpy() + 1))
    g2 = dataclasses.replace(g, name="other", tensors={**g.tensors, "W": changed})
    out = tmp_path / "two.dlc"
    dlc.write(dataclasses.replace(c, graphs=(g, g2)), out)
    a, b = dlc.read(out).graphs
    assert a.tensors["W"].data.offset != b.tensors["W"].data.offset
    np.testing.assert_array_equal(b.tensors["W"].numpy(), w.numpy() + 1)
    assert a.tensors["B"].data.offset == b.tensors["B"].data.offset


# ----------------------------------------------------------------- refusals
def tiny_graph(namespace: str = "qnn", **attrs: Any) -> Graph:
    x = Tensor("x", DType.FLOAT32, (1, 4), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1, 4), TensorKind.OUTPUT)
    node = Node("n", "Neuron" if namespace == "qnn" else "Relu", namespace, ("x",), ("y",), {"operation": 4, **attrs}, "qti.aisw")
    return Graph("g", (x,), (y,), (node,), {"x": x, "y": y})


def test_onnx_graphs_must_be_converted_first(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="convert"):
        dlc.write(Container((tiny_graph("onnx"),)), tmp_path / "x.dlc")
    assert not list(tmp_path.iterdir())


def test_v3_graphs_are_refused(tmp_path: Path) -> None:
    if not V3.exists():
        pytest.skip(f"real v3 DLC {V3} is not available here")
    with pytest.raises(FormatError, match="SNPE"):
        dlc.write(dlc.read(V3), tmp_path / "x.dlc")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda g: dataclasses.replace(g, tensors={**g.tensors, "x": Tensor("x", DType.FLOAT32, ("batch", 4), TensorKind.INPUT)}), "bind symbolic"),
        (lambda g: dataclasses.replace(g, nodes=(dataclasses.replace(g.nodes[0], attrs={"k": (1, 2)}),)), "no DLC form"),
        (lambda g: dataclasses.replace(g, nodes=(dataclasses.replace(g.nodes[0], inputs=("ghost",)),)), "ghost"),
        (lambda g: dataclasses.replace(g, tensors={**g.tensors, "x": Tensor("x", DType.UINT8, (1, 4), TensorKind.INPUT, QuantEncoding(QuantKind.BLOCK))}), "BLOCK"),
    ],
)
def test_unwritable_graphs_are_refused_before_writing(tmp_path: Path, change, match: str) -> None:
    target = tmp_path / "x.dlc"
    target.write_bytes(b"old")
    with pytest.raises(FormatError, match=match):
        dlc.write(Container((change(tiny_graph()),)), target)
    assert target.read_bytes() == b"old"


def test_a_failed_write_leaves_the_target_alone(vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.dlc"
    target.write_bytes(b"old")

    def broken(self, f):
        f.write(b"\0" * 10)
        raise OSError("disk full")

    monkeypatch.setattr(BlobCopy, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        dlc.write(dlc.read(vendor["conv"]), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.dlc"]


# ----------------------------------------------------------------- property: any writable graph round-trips
_DTYPES = [DType.FLOAT32, DType.FLOAT16, DType.INT32, DType.UINT8, DType.UFIXED8, DType.SFIXED8, DType.UFIXED16, DType.SFIXED32, DType.BOOL8]
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(1 << 31), (1 << 32) - 1),
    st.floats(width=32, allow_nan=False),
    st.text(max_size=8),
    st.sampled_from([np.array(3, np.int32), np.array(-2, np.int8), np.array(0.5, np.float16), np.array(7, np.uint16)]),
)


@st.composite
def graphs(draw: Any) -> Graph:
    tensors: dict[str, Tensor] = {}
    n_static = draw(st.integers(0, 4))
    for i in range(n_static):
        dtype = draw(st.sampled_from(_DTYPES))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
        data = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize)), np.uint8)
        enc = None
        if dtype.is_quantized:
            if shape and draw(st.booleans()):
                axis = draw(st.integers(0, len(shape) - 1))
                enc = QuantEncoding(QuantKind.AXIS_SCALE_OFFSET, tuple(float(np.float32(0.5 + k)) for k in range(shape[axis])), (0,) * shape[axis], axis, 8, True)
            else:
                enc = QuantEncoding(QuantKind.SCALE_OFFSET, (float(np.float32(draw(st.floats(1e-4, 10)))),), (draw(st.integers(-255, 0)),), None, draw(st.sampled_from([8, 16])), False)
        tensors[f"w{i}"] = Tensor(f"w{i}", dtype, shape, TensorKind.STATIC, enc, Blob(data.copy()))
    tensors["x"] = Tensor("x", DType.FLOAT32, (1, 3), TensorKind.INPUT)
    tensors["y"] = Tensor("y", DType.FLOAT32, (1, 3), TensorKind.OUTPUT)
    attrs: dict[str, Any] = {}
    for k in range(draw(st.integers(0, 4))):
        value = draw(_SCALARS)
        if isinstance(value, float):
            value = float(np.float32(value))
        attrs[f"p{k}"] = value
    if draw(st.booleans()):
        attrs["tp"] = np.arange(draw(st.integers(1, 6)), dtype=draw(st.sampled_from([np.uint32, np.int32, np.float32])))
    node = Node("n0", draw(st.sampled_from(["Neuron", "Conv2d", "Custom"])), "qnn", ("x", *[t for t in tensors if t.startswith("w")]), ("y",), attrs, "qti.aisw")
    return Graph(draw(st.text(min_size=1, max_size=12)), (tensors["x"],), (tensors["y"],), (node,), tensors)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(g=graphs())
def test_any_writable_graph_round_trips(tmp_path: Path, g: Graph) -> None:
    out = tmp_path / "p.dlc"
    dlc.write(Container((g,)), out)
    back = dlc.read(out).graphs[0]
    assert back == g
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
    os.unlink(out)


def test_check_finds_a_corrupted_weight_by_its_crc(rewritten, tmp_path: Path) -> None:
    from ctxbin.check import check

    src = next(iter(rewritten.values()))
    assert check(src) == []
    archive = ZipArchive.open(src)
    entry = archive.entry("model.params.bin")
    data = bytearray(src.read_bytes())
    data[entry.data_offset + entry.size // 2] ^= 0x10
    bad = tmp_path / "bad.dlc"
    bad.write_bytes(bytes(data))
    problems = check(bad)
    assert len(problems) == 1 and "model.params.bin" in problems[0] and "CRC-32" in problems[0]


# ----------------------------------------------------------------- weights pass
@pytest.mark.parametrize("share", ["name+content", "content", "none"])
def test_layout_hashes_only_sharing_candidates_and_shares_as_a_full_plan(vendor, tmp_path: Path, share: str) -> None:
    """The writer hashes only blobs with a possible twin (same length, and
    name for name+content) or a recorded hash; the layout it gets equals
    dedup.plan over every static tensor, and the late-patched CRC-32s check."""
    from ctxbin.dedup import plan
    from ctxbin.hashing import hash_buffers

    c = dlc.read(vendor["mixed"])
    (g,) = c.graphs
    changed = {n: dataclasses.replace(t, data=Blob.from_array(t.numpy() * 2 if t.dtype == DType.FLOAT32 else t.numpy()))
               for n, t in list(g.tensors.items())[::2] if t.data is not None}
    graphs = (g, dataclasses.replace(g, name="other", tensors={**g.tensors, **changed}), dataclasses.replace(g, name="third"))
    out = tmp_path / f"{share}.dlc"
    dlc.write(dataclasses.replace(c, graphs=graphs), out)  # default mode, then the one under test
    dlc.write(dataclasses.replace(c, graphs=graphs), out, share=share)
    plans = [dlc._plan_graph(x, str(out)) for x in graphs]
    statics = [s for p in plans for s in p.statics]
    weights = dlc._layout(statics, share)
    views = [t.data.raw() for t in statics]
    canon = plan([t.name for t in statics], views, hash_buffers(views), mode=share).tolist()
    assert weights.offsets == [weights.offsets[k] for k in canon]
    assert len(weights.runs) == len(set(canon))
    with zipfile.ZipFile(out) as zf:  # Python's reader verifies every CRC-32
        assert zf.testzip() is None
    assert dlc.check(out) == []
    if share != "content":  # one graph: no name twice, nothing to hash
        assert dlc._layout(plans[0].statics, share).known == {}
