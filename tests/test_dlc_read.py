"""Reading QNN DLC files: real v3 files from SNPE, real v4 files written by the QNN
IR backend (made here from ONNX models, see dlc_oracle.py), v2 refused, and
hostile/corrupted files giving only ctxbin errors."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from ctxbin.errors import FormatError, UnsupportedVersionError
from ctxbin.formats import dlc
from ctxbin.ir import DType, LazyTuple, QuantKind, Tensor, TensorKind
from ctxbin.weights import Blob
from ctxbin.ziparchive import ZipArchive

from . import dlc_oracle as oracle
from .flatbuffers_vectors import offset_vector
from .native_paths import both_paths, needs_native
from .shared_data import DLC_DIR
from .test_dlc_native import _summary, record_c_checks

DATA = DLC_DIR
DEEPLAB = DATA / "mlcommons_v1_0_deeplabv3_hta.dlc"
OPENPILOT = DATA / "openpilot_dmonitoring_model_q_v3.dlc"
V2 = DATA / "openpilot_monitoring_model_v2.dlc"

NHWC = (0, 2, 3, 1)  # NCHW -> NHWC
HWIO = (2, 3, 1, 0)  # OIHW -> HWIO


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real DLC {path} is not available here")
    return path


# ----------------------------------------------------------------------------- v4 files
MODELS = oracle.MODELS


@pytest.fixture(scope="module")
def v4(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    oracle.require_qnn()
    built = {name: make() for name, make in MODELS.items()}
    paths = oracle.make_dlcs(built, tmp_path_factory.mktemp("dlc"))
    inits = {name: {i.name: numpy_helper.to_array(i) for i in m.graph.initializer} for name, (m, _) in built.items()}
    return {name: (paths[name], inits[name]) for name in MODELS}


def _only_graph(path: Path):
    c = dlc.read(path)
    assert c.format == "dlc" and c.format_version == "4.1"
    assert len(c.graphs) == 1
    g = c.graphs[0]
    assert g.name == path.stem  # the IR backend names the file after the graph
    assert all(n.namespace == "qnn" and n.domain == "qti.aisw" for n in g.nodes)
    return c, g


def _check_weight_bytes(g) -> None:
    for t in g.weights:
        assert t.kind == TensorKind.STATIC
        assert t.nbytes == int(np.prod(t.shape)) * t.dtype.itemsize


def test_v4_float_conv_net(v4) -> None:
    path, src = v4["conv"]
    c, g = _only_graph(path)
    assert c.metadata["converter-version"].startswith("2.") and c.target.sdk_version == c.metadata["converter-version"]
    assert "libQnnIr" in c.metadata["converter-command"]
    assert [n.op_type for n in g.nodes] == [
        "Transpose", "Conv2d", "Neuron", "Pool", "Transpose", "Reshape", "FullyConnected", "Softmax"]
    (x,), (y,) = g.inputs, g.outputs
    assert (x.name, x.shape, x.dtype, x.kind) == ("x", (1, 3, 8, 8), DType.FLOAT32, TensorKind.INPUT)
    assert (y.name, y.shape, y.dtype, y.kind) == ("y", (1, 16), DType.FLOAT32, TensorKind.OUTPUT)
    assert all(t.encoding is None and t.dtype == DType.FLOAT32 for t in g.tensors.values())
    _check_weight_bytes(g)
    np.testing.assert_array_equal(g.tensors["W"].numpy(), src["W"].transpose(HWIO))
    np.testing.assert_array_equal(g.tensors["B"].numpy(), src["B"])
    np.testing.assert_array_equal(g.tensors["W2_transpose"].numpy(), src["W2"].T)
    nodes = {n.op_type: n for n in g.nodes}
    conv = nodes["Conv2d"]
    assert conv.inputs[1:] == ("W", "B")
    np.testing.assert_array_equal(conv.attrs["stride"], [1, 1])
    np.testing.assert_array_equal(conv.attrs["dilation"], [1, 1])
    np.testing.assert_array_equal(conv.attrs["pad_amount"], [[1, 1], [1, 1]])
    assert conv.attrs["group"] == 1 and conv.attrs["reuse_sparse_indices"] is False
    pool = nodes["Pool"]
    assert pool.attrs["pool_type"] == "PoolMax2d"
    np.testing.assert_array_equal(pool.attrs["filter_size"], [2, 2])
    np.testing.assert_array_equal(pool.attrs["stride"], [2, 2])
    assert nodes["Softmax"].attrs["axis"] == 1
    assert nodes["Neuron"].attrs["operation"] == 4  # ReLU in QNN's IR
    perms = [tuple(n.attrs["perm"]) for n in g.nodes if n.op_type == "Transpose"]
    assert perms == [NHWC, (0, 3, 1, 2)]


def test_v4_weights_are_zero_copy_views_of_the_file(v4) -> None:
    path, _ = v4["conv"]
    _, g = _only_graph(path)
    raw = path.read_bytes()
    w = g.tensors["W"]
    _, obj, offset = w.data.origin
    assert obj.endswith("/W")
    assert raw[offset : offset + w.nbytes] == w.numpy().tobytes()
    assert not w.numpy().flags.writeable
    assert not w.numpy().flags.owndata


def test_v4_mixed_net_params(v4) -> None:
    path, src = v4["mixed"]
    _, g = _only_graph(path)
    assert [t.name for t in g.inputs] == ["a", "b"] and [t.name for t in g.outputs] == ["ap", "out"]
    _check_weight_bytes(g)
    np.testing.assert_array_equal(g.tensors["K"].numpy(), src["K"])
    np.testing.assert_array_equal(g.tensors["W"].numpy(), src["W"].transpose(HWIO))
    np.testing.assert_array_equal(g.tensors["G"].numpy(), src["G"].T)
    np.testing.assert_array_equal(g.tensors["GB"].numpy(), src["GB"])
    nodes = {n.name: n for n in g.nodes}
    clip = next(n for n in g.nodes if n.op_type == "Neuron")
    assert clip.attrs["min_value"] == -0.5 and clip.attrs["max_value"] == 0.75  # doubles
    assert isinstance(clip.attrs["min_value"], float)
    prelu = next(n for n in g.nodes if n.op_type == "Prelu")
    np.testing.assert_array_equal(g.tensors[prelu.inputs[1]].numpy(), [0.125])
    assert next(n for n in g.nodes if n.op_type == "Concat").attrs["axis"] == 1
    pool = next(n for n in g.nodes if n.op_type == "Pool")
    assert pool.attrs["pool_type"] == "PoolAvg2d" and pool.attrs["count_pad_for_edges"] is False
    assert "Gemm7" in nodes and nodes["Gemm7"].inputs == ("fl", "G", "GB")


def test_v4_fp16_net(v4) -> None:
    path, src = v4["fp16"]
    _, g = _only_graph(path)
    assert {t.dtype for t in g.tensors.values()} == {DType.FLOAT16}
    _check_weight_bytes(g)
    np.testing.assert_array_equal(g.tensors["W"].numpy(), src["W"].transpose(HWIO))
    np.testing.assert_array_equal(g.tensors["B"].numpy(), src["B"])
    assert [n.attrs.get("operation") for n in g.nodes if n.op_type in ("Neuron", "Eltwise_Binary")] == [6, 13]


@pytest.mark.parametrize("per_channel", [False, True])
def test_v4_qdq_encodings_and_weights(v4, per_channel: bool) -> None:
    path, src = v4["qdq_channel" if per_channel else "qdq_tensor"]
    _, g = _only_graph(path)
    _check_weight_bytes(g)
    x = g.tensors["x"]
    assert x.dtype == DType.UFIXED8 and x.encoding.kind == QuantKind.SCALE_OFFSET
    assert x.encoding.scales == (float(src["x_scale"]),) and x.encoding.offsets == (-int(src["x_zp"]),)
    assert x.encoding.bitwidth == 8 and not x.encoding.is_symmetric
    (y,) = g.outputs
    assert y.dtype == DType.UFIXED8 and y.encoding.offsets == (-int(src["y_zp"]),)
    assert y.encoding.scales == (float(src["y_scale"]),)
    w, b, k = g.tensors["wq"], g.tensors["bq"], g.tensors["kq"]
    assert (w.dtype, b.dtype, k.dtype) == (DType.SFIXED8, DType.SFIXED32, DType.UFIXED8)
    np.testing.assert_array_equal(w.numpy(), src["wq"].transpose(HWIO))
    np.testing.assert_array_equal(b.numpy(), src["bq"])
    np.testing.assert_array_equal(k.numpy(), src["kq"].transpose(NHWC))
    assert k.encoding.scales == (float(src["k_scale"]),) and k.encoding.offsets == (0,)
    assert w.encoding.is_symmetric and b.encoding.is_symmetric and w.encoding.bitwidth == 8 and b.encoding.bitwidth == 32
    if per_channel:
        assert w.encoding.kind == QuantKind.AXIS_SCALE_OFFSET and w.encoding.axis == 3  # HWIO: O last
        np.testing.assert_array_equal(np.float32(w.encoding.scales), src["w_scale"])
        assert b.encoding.kind == QuantKind.AXIS_SCALE_OFFSET and b.encoding.axis == 0
        np.testing.assert_array_equal(np.float32(b.encoding.scales), src["b_scale"])
        assert w.encoding.offsets == (0,) * 6
    else:
        assert w.encoding.kind == QuantKind.SCALE_OFFSET and w.encoding.scales == (float(src["w_scale"]),)
        assert b.encoding.scales == (float(src["b_scale"]),)
    # dequantized weights match the float weights the QDQ model describes
    deq = w.encoding.dequantize(w.numpy())
    ref = (src["wq"].astype(np.float32) * (src["w_scale"].reshape(-1, 1, 1, 1) if per_channel else src["w_scale"]))
    np.testing.assert_allclose(deq, ref.transpose(HWIO), rtol=1e-6)


# ----------------------------------------------------------------------------- v3 / v2
def test_v3_deeplab_all_layers_and_weights() -> None:
    c = dlc.read(_need(DEEPLAB))
    assert c.format_version == "3.0" and c.target.sdk_version == "1.48.0.2554"
    assert c.metadata["converter-command"].startswith("snpe-tensorflow-to-dlc")
    assert "quantizer-command" in c.metadata
    (g,) = c.graphs
    assert len(g.nodes) == 120  # 119 layers + the Input layer
    assert g.op_histogram() == {"Convolutional": 60, "Neuron": 42, "ElementwiseOp": 10, "Scaling": 3,
                                "Concat": 2, "ArgMax": 1, "Input": 1, "Pooling": 1}
    assert all(n.namespace == "snpe" for n in g.nodes)
    assert [t.name for t in g.inputs] == ["ImageTensor:0"] and g.inputs[0].shape == (1, 512, 512, 3)
    assert [t.name for t in g.outputs] == ["ArgMax:0"]
    weights = g.weights
    assert len(weights) == 120  # weights + bias for each of the 60 convolutions
    for t in weights:
        assert t.dtype == DType.UFIXED8 and t.nbytes == int(np.prod(t.shape))
        enc = t.encoding
        assert enc.kind == QuantKind.SCALE_OFFSET and enc.bitwidth == 8 and enc.scales[0] > 0
        assert -255 <= enc.offsets[0] <= 0
    conv = next(n for n in g.nodes if n.op_type == "Convolutional")
    assert conv.inputs == ("ImageTensor:0", f"{conv.name}/bias", f"{conv.name}/weights_0")  # file order
    assert conv.attrs["stride"] == 2 and conv.attrs["kernel_size"] == 3 and conv.attrs["padding_strategy"] == 3
    w = g.tensors[f"{conv.name}/weights_0"]
    assert w.shape == (3, 3, 3, 32)
    # weight bytes are views of the file at the recorded offset
    _, _, off = w.data.origin
    raw = DEEPLAB.read_bytes()
    assert w.numpy().tobytes() == bytes(w.data.raw())
    assert raw.find(w.numpy().tobytes()) > 0 and off < len(raw)
    # activation encodings come from FxpData
    act = g.tensors[conv.outputs[0]]
    assert act.encoding is not None and act.encoding.scales[0] == pytest.approx(0.25033, rel=1e-3)


def test_v3_openpilot_quantized() -> None:
    c = dlc.read(_need(OPENPILOT))
    (g,) = c.graphs
    assert len(g.nodes) == 88 and len(g.weights) == 92
    for t in g.weights:
        assert t.nbytes == int(np.prod(t.shape)) * t.dtype.itemsize and t.encoding is not None
    assert g.outputs[0].name == "outputs/concat:0"
    assert g.inputs[0].shape == (1, 6, 160, 320)


def test_v2_is_refused() -> None:
    with pytest.raises(UnsupportedVersionError, match=r"v2 \(protobuf"):
        dlc.read(_need(V2))


def test_sniff() -> None:
    for f in (DEEPLAB, OPENPILOT, V2):
        assert dlc.sniff(_need(f).read_bytes()[:4096])
    assert not dlc.sniff(b"PK\x03\x04" + b"\0" * 26)
    assert not dlc.sniff(b"\x08\x07onnx")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", b"x")
    assert not dlc.sniff(buf.getvalue())


# ----------------------------------------------------------------------------- bad input
def _rezip(entries: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _entries(path: Path) -> dict[str, bytes]:
    z = ZipArchive.open(path)
    return {e.name: bytes(z.read(e.name)) for e in z}


def test_unknown_major_version(tmp_path: Path) -> None:
    e = _entries(_need(OPENPILOT))
    e["model"] = e["model"][:2] + b"\x09\x00" + e["model"][4:]
    with pytest.raises(UnsupportedVersionError, match="major version 9"):
        dlc.read(_rezip(e, tmp_path / "v9.dlc"))


def test_missing_model_entry(tmp_path: Path) -> None:
    e = _entries(_need(OPENPILOT))
    del e["model"]
    with pytest.raises(FormatError, match="no entry 'model'"):
        dlc.read(_rezip(e, tmp_path / "nomodel.dlc"))


def test_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "x.dlc"
    p.write_bytes(b"\xd5\x0a\x04\x00" + b"\0" * 100)
    with pytest.raises(FormatError, match="not a ZIP"):
        dlc.read(p)


@pytest.mark.parametrize("text", [b"[" * 100_000, b'{"header":' * 5000 + b"1" + b"}" * 5000])
def test_metadata_nested_too_deeply_is_a_format_error(own_dlc: Path, tmp_path: Path, text: bytes) -> None:
    """json.loads recurses once per level: a hostile metadata entry must not
    get a RecursionError out of the reader; rewriting a container whose
    history is as deep carries no steps over instead."""
    e = _entries(own_dlc)
    e["dlc.metadata2.3.0"] = text
    path = _rezip(e, tmp_path / "deep.dlc")
    for _ in both_paths():
        with pytest.raises(FormatError, match="dlc.metadata2.3.0.*nested too deeply"):
            dlc.read(path)
    c = dlc.read(own_dlc)
    deep = dataclasses.replace(c, metadata={**c.metadata, dlc.HISTORY_KEY: text.decode()})
    dlc.write(deep, tmp_path / "rewritten.dlc")
    steps = json.loads(dlc.read(tmp_path / "rewritten.dlc").metadata[dlc.HISTORY_KEY])
    assert [s["converterCommand"]["tool"] for s in steps] == ["ctxbin"]


def test_dims_whose_product_overflows_a_float_are_refused_without_warnings(
    own_dlc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight of 40 dims of 2**31 over 4 bytes (written with the writer's
    own check turned off): the vectorized size check's float product
    overflows to inf, the exact check refuses the tensor, and numpy warns
    nothing (no output from library code)."""
    c = dlc.read(own_dlc)
    (g,) = c.graphs
    w = g.weights[0]
    tensors = {**g.tensors, w.name: Tensor(w.name, w.dtype, (1 << 31,) * 40, TensorKind.STATIC, None,
                                           Blob(np.zeros(4, np.uint8)))}
    with monkeypatch.context() as m:
        m.setattr(dlc, "_check_writable", lambda *args: None)
        dlc.write(dataclasses.replace(c, graphs=(dataclasses.replace(g, tensors=tensors),)), tmp_path / "big.dlc")
    for _ in both_paths():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(FormatError, match="4 data bytes for shape"):
                dlc.read(tmp_path / "big.dlc")


def _read_or_format_error(path: Path) -> None:
    t0 = time.perf_counter()
    try:
        c = dlc.read(path)
    except FormatError:
        c = None
    for g in c.graphs if c is not None else ():
        list(g.nodes)  # everything was checked at open: making the objects never fails
        for t in g.tensors.values():
            if t.data is not None:
                t.numpy()
    assert time.perf_counter() - t0 < 5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_v4_bytes(v4, tmp_path: Path, data: st.DataObject) -> None:
    """Bit flips and overwrites anywhere in a real v4 file (CRCs are 0, so every
    flip reaches the parsers), plus truncation."""
    name = data.draw(st.sampled_from(sorted(MODELS)))
    raw = bytearray(v4[name][0].read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        else:
            raw[at] = data.draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, data.draw(st.integers(0, 255))]))
    cut = data.draw(st.one_of(st.just(len(raw)), st.integers(0, len(raw))))
    p = tmp_path / "fuzz.dlc"
    p.write_bytes(bytes(raw[:cut]))
    _read_or_format_error(p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_flatbuffers(v4, tmp_path: Path, data: st.DataObject) -> None:
    """Overwrite bytes inside the flatbuffer entries of real v3/v4 files and
    re-zip them with valid CRCs, so the corruption reaches the graph readers."""
    source = data.draw(st.sampled_from(["v3"] + sorted(MODELS)))
    e = _entries(_need(OPENPILOT)) if source == "v3" else _entries(v4[source][0])
    entry = data.draw(st.sampled_from(["model", "model.params"]))
    buf = bytearray(e[entry])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(8, min(len(buf), 4096) - 1))  # the flatbuffer head holds the offsets
        buf[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    e[entry] = bytes(buf)
    path = _rezip(e, tmp_path / "fb.dlc")
    _read_or_format_error(path)
    if source != "v3":  # the C core and the Python path: the same graphs, or both an error of the same class
        a, *b = (_summary(path) for _ in both_paths())  # (the walks may word a bad table apart: test_flatbuf_walk.py)
        assert all(x[:2] == a[:2] and (a[0] == "error" or x == a) for x in b)


def test_vendor_files_pass_the_c_checks_and_read_alike(v4, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DLC the QNN IR backend wrote takes the C core's path (nothing left
    to the Python checks), and both paths give the same graphs, nodes and params."""
    results = record_c_checks(monkeypatch)
    for name in sorted(MODELS):
        got = [_summary(v4[name][0]) for _ in both_paths()]
        assert got[0][0] == "ok" and all(g == got[0] for g in got)
    assert all(r is not None for r in results)


def test_hostile_shared_tables_are_bounded(tmp_path: Path) -> None:
    """A v3 model whose N nodes are one shared node holding N shared attributes:
    N² tables from O(N) bytes. The reader must stop early, not grind."""
    import flatbuffers

    n = 20_000
    b = flatbuffers.Builder(0)

    def shared_vector(target: int) -> int:
        return offset_vector(b, [target] * n)

    key = b.CreateString("k")
    b.StartObject(13)
    b.PrependUOffsetTRelativeSlot(0, key, 0)
    b.PrependUint8Slot(1, 2, 0)  # int32 attribute
    attr = b.EndObject()
    attrs = shared_vector(attr)
    name = b.CreateString("n")
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(1, name, 0)
    b.PrependUOffsetTRelativeSlot(5, attrs, 0)
    node = b.EndObject()
    nodes = shared_vector(node)
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(1, nodes, 0)
    b.Finish(b.EndObject(), file_identifier=b"NETD")
    model = b"\xd5\x0a\x03\x00\x00\x00\x00\x00" + bytes(b.Output())
    p = _rezip({"model": model}, tmp_path / "shared.dlc")
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="shared beyond"):
        dlc.read(p)
    assert time.perf_counter() - t0 < 5


def test_copy_of_real_file_reads_the_same(v4, tmp_path: Path) -> None:
    path, _ = v4["qdq_channel"]
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    (a,), (b,) = dlc.read(path).graphs, dlc.read(copy).graphs
    assert list(a.tensors.items()) == list(b.tensors.items())  # Tensor equality compares bytes
    assert [(n.name, n.op_type, n.inputs, n.outputs, sorted(n.attrs)) for n in a.nodes] == [
        (n.name, n.op_type, n.inputs, n.outputs, sorted(n.attrs)) for n in b.nodes]


# ----------------------------------------------------------------------------- laziness
@needs_native
def test_nodes_are_decoded_on_first_access(own_dlc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C core checks every node at open; Node objects are made on first access."""
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    calls = []
    decode = dlc._v4_nodes
    monkeypatch.setattr(dlc, "_v4_nodes", lambda *a: calls.append(1) or decode(*a))
    (g,) = dlc.read(own_dlc).graphs
    assert isinstance(g.nodes, LazyTuple) and len(g.nodes) > 10 and not calls  # no Node built at open
    nodes = list(g.nodes)
    assert calls == [1] and list(g.nodes) == nodes and nodes[0] is g.nodes[0]  # built once, kept
    assert all(isinstance(v, np.ndarray) and not v.flags.writeable for n in nodes for v in n.attrs.values()
               if not isinstance(v, (bool, int, float, str)))


@needs_native
def test_open_makes_no_walk_columns_or_tensors(own_dlc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the C core, open reads each graph's name and counts straight from
    the C call's results: the walks' numpy columns, the tensor table and the
    input and output Tensors are made on first use, equal to the Python path's."""
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    calls = record_c_checks(monkeypatch)
    (g,) = dlc.read(own_dlc).graphs
    opened = calls[0]
    assert opened.model._walk is None and opened.params._walk is None and opened._data is None
    assert isinstance(g.inputs, LazyTuple) and isinstance(g.outputs, LazyTuple)
    assert len(g.inputs) == 1 and len(g.outputs) == 1 and opened.model._walk is None  # counts need nothing made
    monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
    (ref,) = dlc.read(own_dlc).graphs
    assert isinstance(ref.inputs, tuple) and g.inputs == ref.inputs and g.outputs == ref.outputs
    assert g.name == ref.name == opened.model.walk().texts("Graph", "name")[0]
    assert g.inputs + g.outputs == ref.inputs + ref.outputs  # concatenates like the tuples it stands for
    assert () + g.inputs == ref.inputs and isinstance(g.inputs + (), tuple)
    with pytest.raises(TypeError):
        g.inputs + [1]  # as a tuple would: no tuple + list
    assert g.inputs[0] is g.inputs[0] and g.inputs[0] is g.tensors[g.inputs[0].name]  # one Tensor per row


def test_python_path_decodes_nodes_at_open(own_dlc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the C core the nodes are decoded (so checked) by dlc.read itself."""
    monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
    calls = []
    decode = dlc._v4_nodes
    monkeypatch.setattr(dlc, "_v4_nodes", lambda *a: calls.append(1) or decode(*a))
    (g,) = dlc.read(own_dlc).graphs
    assert calls == [1] and isinstance(g.nodes, LazyTuple) and len(list(g.nodes)) == len(g.nodes) > 10
    assert calls == [1]


def test_lazy_read_equals_the_eager_graph(own_dlc: Path, tmp_path: Path) -> None:
    """Write a container whose nodes and tensors are plain tuples/dicts, read it
    back lazily: every node, param (type included), tensor and weight is equal."""
    import dataclasses

    c = dlc.read(own_dlc)
    eager = dataclasses.replace(c, graphs=tuple(
        dataclasses.replace(g, nodes=tuple(g.nodes), tensors=dict(g.tensors)) for g in c.graphs))
    dlc.write(eager, tmp_path / "eager.dlc")
    (lazy,), (g,) = dlc.read(tmp_path / "eager.dlc").graphs, eager.graphs
    assert lazy == g and lazy.nodes == g.nodes and lazy.inputs == g.inputs and lazy.outputs == g.outputs
    for a, b in zip(lazy.nodes, g.nodes):
        assert [type(v) for v in a.attrs.values()] == [type(v) for v in b.attrs.values()]
    assert list(lazy.tensors.items()) == list(g.tensors.items())


def _corrupt_scalar_param(path: Path, out: Path) -> tuple[Path, int]:
    """``path`` re-zipped with the data type of node 0's first scalar param made
    unknown (valid CRCs, so only the node decoder can notice); returns the
    flatbuffer position of that param's value table."""
    from ctxbin.flatbuf import FlatBuffer

    e = _entries(path)
    model = bytearray(e["model"])
    fb = FlatBuffer(bytes(model), start=8)
    node = fb.root().tables(0)[0].tables(1)[0]
    param = next(p for p in node.tables(4) if p.scalar(1, "i") == 0)
    value = param.table(3)
    at = value.struct(0, 4)
    assert at is not None
    model[8 + at : 12 + at] = (0x0999).to_bytes(4, "little")
    e["model"] = bytes(model)
    return _rezip(e, out), value.pos


def test_bad_node_param_raises_at_open_and_in_check(own_dlc: Path, tmp_path: Path) -> None:
    """A node's param is checked by dlc.read itself (both paths), not on first access."""
    from ctxbin.cli import main

    bad, pos = _corrupt_scalar_param(own_dlc, tmp_path / "bad.dlc")
    model_at = ZipArchive.open(bad).entry("model").data_offset
    for _ in both_paths():
        with pytest.raises(FormatError, match="unknown data type 0x0999") as e:
            dlc.read(bad)
        assert e.value.path == str(bad) and e.value.obj.startswith("fcn/") and e.value.offset == model_at + 8 + pos
    assert any("0x0999" in p for p in dlc.check(bad))
    assert main(["check", str(bad)]) == 1
