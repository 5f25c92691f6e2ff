"""ONNX import/export (ctxbin.formats.onnx) against onnxruntime, and the model builders."""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from ctxbin.errors import CtxbinError, FormatError, UnsupportedOpError
from ctxbin.formats import onnx as onnx_format
from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob
from tests.models import FCN_CLASSES, IR_VERSION, OPSET, build_fcn, build_transformer, save_with_external_data

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference for round trips")

RNG = np.random.default_rng(1234)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _feeds(name: str) -> dict[str, np.ndarray]:
    if name.startswith("fcn"):
        h, w = (256, 384) if name == "fcn_landscape" else (384, 256)
        return {"image": RNG.standard_normal((1, 3, h, w), dtype=np.float32)}
    seq = 128 if name == "transformer_ar128" else 1
    return {"tokens": RNG.integers(0, 64, (1, seq), dtype=np.int64)}


def _model(nodes, inputs, outputs, inits=(), opset=OPSET) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(m, str(path))
    return path


# ---------------------------------------------------------------- builders


@pytest.mark.parametrize("pair", [("fcn_landscape", "fcn_portrait"), ("transformer_ar128", "transformer_ar1")])
def test_variants_share_every_initializer(tiny_models, pair):
    a, b = (onnx.load(str(tiny_models[n])) for n in pair)
    ia = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    ib = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    assert ia.keys() == ib.keys() and len(ia) > 20
    for name in ia:
        assert ia[name].dtype == ib[name].dtype and np.array_equal(ia[name], ib[name]), name
    assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]


def test_builders_are_deterministic_and_named_like_pytorch():
    a, b = build_fcn(64, 64, tiny=True), build_fcn(64, 64, tiny=True)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    names = {t.name for t in a.graph.initializer}
    assert {"backbone.conv1.weight", "backbone.bn1.running_var", "backbone.layer1.0.conv1.weight",
            "backbone.layer1.0.downsample.0.weight", "classifier.4.bias"} <= names
    ops = {n.op_type for n in a.graph.node}
    assert {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Dropout", "Resize"} <= ops
    t = build_transformer(8, tiny=True)
    ops = {n.op_type for n in t.graph.node}
    assert {"Gather", "Slice", "LayerNormalization", "MatMul", "Reshape", "Transpose", "Softmax", "Div",
            "Erf", "Mul", "ReduceMean", "Sqrt", "Add"} <= ops


@pytest.mark.parametrize("name", ["fcn_landscape", "fcn_portrait", "transformer_ar128", "transformer_ar1"])
def test_tiny_models_load_with_expected_io(tiny_models, name):
    c = onnx_format.read(tiny_models[name])
    g = c.graphs[0]
    if name.startswith("fcn"):
        h, w = (256, 384) if name == "fcn_landscape" else (384, 256)
        assert [(t.name, t.dtype, t.shape) for t in g.inputs] == [("image", DType.FLOAT32, (1, 3, h, w))]
        assert [(t.name, t.shape) for t in g.outputs] == [("out", (1, FCN_CLASSES, h, w))]
        assert 100_000 < sum(t.nbytes for t in g.weights) < 1_000_000  # "a few hundred KB"
    else:
        seq = 128 if name == "transformer_ar128" else 1
        assert [(t.name, t.dtype, t.shape) for t in g.inputs] == [("tokens", DType.INT64, (1, seq))]
        assert [(t.name, t.dtype, t.shape) for t in g.outputs] == [("hidden", DType.FLOAT32, (1, seq, 32))]
    (out,) = _run(tiny_models[name], _feeds(name))
    assert np.isfinite(out).all() and 0.1 < float(out.std()) < 100.0
    assert all(n.namespace == "onnx" for n in g.nodes)
    assert g.opsets == {"": OPSET}
    assert c.format == "onnx" and c.metadata["producer"] == "ctxbin-tests"


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["fcn_landscape", "transformer_ar128", "transformer_ar1"])
@pytest.mark.parametrize("external", [False, True])
def test_onnx_ir_onnx_gives_identical_outputs(tiny_models, tmp_path, name, external):
    feeds = _feeds(name)
    expected = _run(tiny_models[name], feeds)
    c = onnx_format.read(tiny_models[name])
    out = tmp_path / "copy.onnx"
    onnx_format.write(c, out, external_data=external)
    assert (tmp_path / "copy.onnx.data").exists() == external
    for got, want in zip(_run(out, feeds), expected):
        np.testing.assert_array_equal(got, want)
    onnx.checker.check_model(str(out))
    c2 = onnx_format.read(out)
    assert c.graphs[0] == c2.graphs[0]
    assert dict(c2.metadata) == dict(c.metadata)


def test_external_data_written_aligned(tiny_models, tmp_path):
    out = tmp_path / "m.onnx"
    onnx_format.write(onnx_format.read(tiny_models["fcn_landscape"]), out, external_data=True)
    m = onnx.load(str(out), load_external_data=False)
    offsets = [int({e.key: e.value for e in t.external_data}["offset"])
               for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert offsets and all(o % 64 == 0 for o in offsets)


def test_external_data_is_memory_mapped(tiny_models):
    g = onnx_format.read(tiny_models["fcn_landscape"]).graphs[0]
    w = g.tensors["backbone.conv1.weight"]
    assert w.kind == TensorKind.STATIC and w.dtype == DType.FLOAT32
    arr = w.numpy()
    base = arr
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.obj if isinstance(base, memoryview) else base.base
    assert isinstance(base, mmap.mmap), f"weights are a copy over {type(base).__name__}"
    assert not arr.flags.writeable
    ref = numpy_helper.to_array(
        next(t for t in onnx.load(str(tiny_models["fcn_landscape"])).graph.initializer if t.name == w.name))
    np.testing.assert_array_equal(arr, ref)
    # Two weights of one file share one mapping.
    b = g.tensors["classifier.4.weight"].numpy()
    assert np.shares_memory(np.frombuffer(base, np.uint8), b)


def test_typed_fields_and_dtypes_convert(tmp_path):
    inits = [
        helper.make_tensor("f32", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0]),
        helper.make_tensor("i64", TensorProto.INT64, [3], [-1, 0, 2**40]),
        helper.make_tensor("u8", TensorProto.UINT8, [2], [0, 255]),
        helper.make_tensor("b", TensorProto.BOOL, [3], [True, False, True]),
        helper.make_tensor("f16", TensorProto.FLOAT16, [2], [1.5, -2.0]),  # bit patterns in int32_data
        helper.make_tensor("f64", TensorProto.DOUBLE, [1], [0.25]),
        helper.make_tensor("u64", TensorProto.UINT64, [1], [2**63]),
        numpy_helper.from_array(np.arange(6, dtype=np.int32).reshape(2, 3), "raw_i32"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    p = _save(_model([helper.make_node("Add", ["x", "f32"], ["y"])], [x], [y], inits), tmp_path / "t.onnx")
    g = onnx_format.read(p).graphs[0]
    expect = {
        "f32": (DType.FLOAT32, [[1, 2], [3, 4]]), "i64": (DType.INT64, [-1, 0, 2**40]),
        "u8": (DType.UINT8, [0, 255]), "b": (DType.BOOL8, [True, False, True]),
        "f16": (DType.FLOAT16, [1.5, -2.0]), "f64": (DType.FLOAT64, [0.25]),
        "u64": (DType.UINT64, [2**63]), "raw_i32": (DType.INT32, [[0, 1, 2], [3, 4, 5]]),
    }
    for name, (dtype, values) in expect.items():
        t = g.tensors[name]
        assert t.dtype == dtype, name
        np.testing.assert_array_equal(t.numpy(), np.array(values, dtype.numpy))
    # ...and come back identical through ONNX.
    q = tmp_path / "back.onnx"
    onnx_format.write(onnx_format.read(p), q)
    back = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(q)).graph.initializer}
    for name, (dtype, values) in expect.items():
        np.testing.assert_array_equal(back[name], np.array(values, dtype.numpy))


def test_symbolic_and_unknown_dims_kept(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, None])
    unranked = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])]
    p = _save(_model(nodes, [x], [y, unranked]), tmp_path / "sym.onnx")
    g = onnx_format.read(p).graphs[0]
    assert g.inputs[0].shape == ("batch", 3, None) and g.inputs[0].is_symbolic
    assert g.outputs[0].shape == ("batch", 3, None)
    q = tmp_path / "sym2.onnx"
    onnx_format.write(onnx_format.read(p), q)
    m = onnx.load(str(q))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value, dims[2].WhichOneof("value")) == ("batch", 3, None)
    assert not m.graph.output[1].type.tensor_type.HasField("shape")
    assert g == onnx_format.read(q).graphs[0]
    x_in = RNG.standard_normal((5, 3, 7), dtype=np.float32)
    y_out, z_out = _run(q, {"x": x_in})
    np.testing.assert_array_equal(y_out, np.maximum(x_in, 0))
    np.testing.assert_array_equal(z_out, -x_in)


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000, "5", '["z", 3]'])
def test_unranked_metadata_that_is_no_list_of_names_is_a_format_error(tmp_path, text):
    """The graph metadata the ONNX reader keeps (onnx.unranked) may come back
    changed, e.g. from a .ctxbin file: the writer names it instead of raising
    json's or Python's own errors."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    p = _save(_model([helper.make_node("Neg", ["x"], ["z"])], [x], [z]), tmp_path / "u.onnx")
    c = onnx_format.read(p)
    g = c.graphs[0]
    assert json.loads(g.metadata["onnx.unranked"]) == ["z"]
    bad = dataclasses.replace(c, graphs=(dataclasses.replace(g, metadata={**g.metadata, "onnx.unranked": text}),))
    with pytest.raises(FormatError, match="onnx.unranked"):
        onnx_format.write(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_initializer_inputs_are_not_graph_inputs_and_names_default(tmp_path):
    w = numpy_helper.from_array(np.ones((2,), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    w_in = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    m = _model([helper.make_node("Mul", ["x", "w"], ["y"])], [x, w_in], [y], [w])
    m.graph.name = ""
    g = onnx_format.read(_save(m, tmp_path / "stem_name.onnx")).graphs[0]
    assert [t.name for t in g.inputs] == ["x"] and g.tensors["w"].is_static
    assert g.name == "stem_name"
    assert onnx_format.read(tmp_path / "stem_name.onnx", name="mine").graphs[0].name == "mine"


def test_attributes_round_trip(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "c")]
    custom = helper.make_node("Custom", ["x"], ["u"], domain="example.custom",
                              blob=b"\xff\x00\xfe", names=["a", "b"], ratio=0.5)
    custom.attribute.append(helper.make_attribute("empty", [], attr_type=onnx.AttributeProto.INTS))
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.125),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.eye(2, dtype=np.float32))),
        custom,
    ]
    m = _model(nodes, [x], outs)
    m.opset_import.append(helper.make_opsetid("example.custom", 1))
    g = onnx_format.read(_save(m, tmp_path / "a.onnx")).graphs[0]
    leaky, const, cust = g.nodes
    assert leaky.attrs == {"alpha": 0.125}
    assert isinstance(const.attrs["value"], np.ndarray) and const.attrs["value"].shape == (2, 2)
    assert cust.domain == "example.custom" and cust.attrs["blob"] == b"\xff\x00\xfe"
    assert cust.attrs["names"] == ("a", "b") and cust.attrs["empty"] == ()
    onnx_format.write(onnx_format.read(tmp_path / "a.onnx"), tmp_path / "b.onnx")
    back = onnx.load(str(tmp_path / "b.onnx")).graph.node
    assert helper.get_attribute_value(back[2].attribute[0]) == b"\xff\x00\xfe"
    assert g == onnx_format.read(tmp_path / "b.onnx").graphs[0]


def test_schema_types_attributes_written_from_ir(tmp_path):
    # An IR built elsewhere: alpha given as an int, axes as an empty tuple.
    x = Tensor("x", DType.FLOAT32, (2, 3), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (2, 3), TensorKind.OUTPUT)
    g = Graph("g", (x,), (y,), (Node("n", "Elu", "onnx", ("x",), ("y",), {"alpha": 1}),),
              {"x": x, "y": y}, {"": OPSET})
    onnx_format.write(Container((g,)), tmp_path / "elu.onnx")
    (attr,) = onnx.load(str(tmp_path / "elu.onnx")).graph.node[0].attribute
    assert attr.type == onnx.AttributeProto.FLOAT and attr.f == 1.0
    xin = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    (got,) = _run(tmp_path / "elu.onnx", {"x": xin})
    np.testing.assert_allclose(got, np.where(xin > 0, xin, np.expm1(xin)), rtol=1e-6)


def test_model_local_functions_are_inlined(tmp_path):
    fn = helper.make_function("local", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", OPSET)])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    m = _model([helper.make_node("Double", ["x"], ["y"], domain="local")], [x], [y])
    m.opset_import.append(helper.make_opsetid("local", 1))
    m.functions.append(fn)
    g = onnx_format.read(_save(m, tmp_path / "f.onnx")).graphs[0]
    assert [n.op_type for n in g.nodes] == ["Add"]


# ---------------------------------------------------------------- hostile input


def _external_model(tmp_path: Path, location: str, *, offset: int = 0, length: int = 64) -> Path:
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[16], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        w.external_data.add(key=k, value=v)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])
    return _save(_model([helper.make_node("Add", ["x", "w"], ["y"])], [x], [y], [w]), tmp_path / "ext.onnx")


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd", "link/secret.bin", ""])
def test_external_location_escaping_the_model_dir_is_rejected(tmp_path, location):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(bytes(64))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(outside, model_dir / "link")
    (tmp_path / "secret.bin").write_bytes(bytes(64))
    p = _external_model(model_dir, location)
    with pytest.raises(FormatError, match="initializer 'w'") as e:
        onnx_format.read(p)
    assert "location" in str(e.value)


def test_truncated_external_data_is_rejected(tmp_path):
    (tmp_path / "w.bin").write_bytes(bytes(100))
    with pytest.raises(FormatError, match=r"initializer 'w'.*offset 64.*outside the 100-byte file"):
        onnx_format.read(_external_model(tmp_path, "w.bin", offset=64))
    with pytest.raises(FormatError, match="holds 32 bytes but the shape needs 64"):
        onnx_format.read(_external_model(tmp_path, "w.bin", length=32))
    with pytest.raises(FormatError, match="not a regular file"):
        onnx_format.read(_external_model(tmp_path, "missing.bin"))
    if hasattr(os, "mkfifo"):  # opening a FIFO for reading would block forever
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(FormatError, match="not a regular file"):
            onnx_format.read(_external_model(tmp_path, "fifo"))
    assert onnx_format.read(_external_model(tmp_path, "w.bin", offset=36)).graphs[0].tensors["w"].nbytes == 64


def test_truncated_fcn_data_file_is_rejected(tiny_models, tmp_path):
    src = tiny_models["fcn_landscape"]
    (tmp_path / src.name).write_bytes(src.read_bytes())
    data = Path(str(src) + ".data").read_bytes()
    (tmp_path / (src.name + ".data")).write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"initializer '.*'.*lies outside"):
        onnx_format.read(tmp_path / src.name)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n" * 10, bytes(range(256)) * 4,
                                     b"PK\x03\x04" + bytes(100)])
def test_garbage_files_are_rejected(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(FormatError, match="bad.onnx"):
        onnx_format.read(p)
    assert not onnx_format.sniff(content[:4096])


def test_unsupported_content_gets_clear_errors(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    bf16 = helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1, 2])
    p = _save(_model([helper.make_node("Add", ["x", "x"], ["y"])], [x], [y], [bf16]), tmp_path / "bf.onnx")
    with pytest.raises(FormatError, match=r"initializer 'bf'.*BFLOAT16"):
        onnx_format.read(p)
    short = TensorProto(name="short", data_type=TensorProto.FLOAT, dims=[1000], float_data=[1.0])
    p = _save(_model([helper.make_node("Add", ["x", "x"], ["y"])], [x], [y], [short]), tmp_path / "s.onnx")
    with pytest.raises(FormatError, match="float_data holds 1 values but the shape needs 1000"):
        onnx_format.read(p)
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    if_node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then)
    p = _save(_model([if_node], [cond, x], [y]), tmp_path / "if.onnx")
    with pytest.raises(UnsupportedOpError, match="If"):
        onnx_format.read(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_model_bytes_never_crash(tiny_models, tmp_path_factory, data):
    src = tiny_models["transformer_ar1"].read_bytes()
    cut = data.draw(st.integers(0, len(src)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(src) - 1), st.integers(1, 255)), max_size=4))
    buf = bytearray(src[:cut] if data.draw(st.booleans()) else src)
    for at, xor in flips:
        if at < len(buf):
            buf[at] ^= xor
    d = tmp_path_factory.mktemp("fuzz")
    (d / "m.onnx").write_bytes(bytes(buf))
    data_file = Path(str(tiny_models["transformer_ar1"]) + ".data")
    (d / "m.onnx.data").write_bytes(data_file.read_bytes())
    try:
        c = onnx_format.read(d / "m.onnx")
    except (FormatError, UnsupportedOpError):
        return
    for t in c.graphs[0].weights:  # whatever parsed must be readable within bounds
        t.numpy()


# ---------------------------------------------------------------- sniff and write errors


def test_sniff(tiny_models):
    for p in tiny_models.values():
        assert onnx_format.sniff(p.read_bytes()[:4096])
    head = tiny_models["fcn_landscape"].read_bytes()
    assert onnx_format.sniff(head[:16])
    assert not onnx_format.sniff(head[:2])  # ir_version alone proves nothing
    assert not onnx_format.sniff(b"\x08\x07\x08\x07")  # a repeated ir_version is not a model
    assert not onnx_format.sniff(b"\x00\x00\x00\x02\x00\x00\x00\x03")  # a QNN context binary's start


def test_write_refuses_what_onnx_cannot_hold(tiny_models, tmp_path):
    a = onnx_format.read(tiny_models["fcn_landscape"], name="landscape").graphs[0]
    b = onnx_format.read(tiny_models["fcn_portrait"], name="portrait").graphs[0]
    two = Container((a, b))
    with pytest.raises(CtxbinError, match="'landscape', 'portrait'"):
        onnx_format.write(two, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    onnx_format.write(two, tmp_path / "p.onnx", graph="portrait")
    assert onnx_format.read(tmp_path / "p.onnx").graphs[0].inputs[0].shape == (1, 3, 384, 256)

    x = Tensor("x", DType.FLOAT32, (4,), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (4,), TensorKind.OUTPUT)
    qnn = Graph("q", (x,), (y,), (Node("n", "ElementWiseNeuron", "qnn", ("x",), ("y",), domain="qti.aisw"),),
                {"x": x, "y": y})
    with pytest.raises(UnsupportedOpError, match="qnn:ElementWiseNeuron"):
        onnx_format.write(Container((qnn,)), tmp_path / "q.onnx")
    w = Tensor("w", DType.SFIXED8, (4,), TensorKind.STATIC, data=Blob(bytes(4)))
    quant = Graph("g", (x,), (y,), (Node("n", "Add", "onnx", ("x", "w"), ("y",)),), {"x": x, "w": w, "y": y})
    with pytest.raises(FormatError, match="tensor 'w'.*SFIXED8"):
        onnx_format.write(Container((quant,)), tmp_path / "w.onnx")
    assert not (tmp_path / "w.onnx").exists() and not list(tmp_path.glob("*tmp*"))


# ---------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_fcn_runs_in_onnxruntime(tmp_path):
    model = build_fcn(256, 384)
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert 30e6 < n_params < 36e6  # the real FCN-ResNet50 has ~33M
    p = tmp_path / "fcn.onnx"
    data = save_with_external_data(model, p)
    assert 120e6 < data.stat().st_size < 145e6
    g = onnx_format.read(p).graphs[0]
    assert sum(t.nbytes for t in g.weights) == n_params * 4
    x = RNG.standard_normal((1, 3, 256, 384), dtype=np.float32)
    (out,) = _run(p, {"image": x})
    assert out.shape == (1, FCN_CLASSES, 256, 384)
    assert np.isfinite(out).all() and 0.1 < float(out.std()) < 1e3


@pytest.mark.parametrize("twice", ["initializer", "graph input", "node output"])
def test_names_defined_twice_are_refused(tmp_path, twice):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    inits = [numpy_helper.from_array(np.ones(2, np.float32), "w")]
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    inputs = [x]
    if twice == "initializer":
        inits.append(numpy_helper.from_array(np.zeros(2, np.float32), "w"))
    elif twice == "graph input":
        inputs.append(x)
    else:
        nodes.insert(0, helper.make_node("Relu", ["x"], ["y"]))
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [y], inits))
    model.ir_version = IR_VERSION
    path = tmp_path / "twice.onnx"
    onnx.save(model, path)
    with pytest.raises(FormatError, match=f"{twice} name .* is defined more than once"):
        onnx_format.read(path)


@pytest.mark.parametrize("field", ["node name", "initializer location"])
def test_invalid_utf8_in_a_string_field_is_named(tmp_path, field):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    onnx.external_data_helper.set_external_data(w, "QQQQ.bin")
    w.ClearField("raw_data")
    node = helper.make_node("Add", ["x", "w"], ["y"], name="ZZZZ" if field == "node name" else "add")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]))
    model.ir_version = IR_VERSION
    marker = b"ZZZZ" if field == "node name" else b"QQQQ"
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString().replace(marker, b"\xff\xfe\xfd\xfc"))
    where = "ModelProto.graph.node[0].name" if field == "node name" else "ModelProto.graph.initializer[0].external_data[0].value"
    with pytest.raises(FormatError, match="not valid UTF-8") as e:
        onnx_format.read(path)
    assert e.value.obj == where
