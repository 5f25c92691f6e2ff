"""The emulator's ``qnn`` kernels on real DLCs, against onnxruntime CPU.

Each ONNX model below is turned into a real v4 DLC by the QNN IR backend in
``onnxruntime-qnn`` (tests/dlc_oracle.py); ctxbin reads the DLC, the emulator
runs its QNN graph (NHWC convolutions with HWIO filters, ``Neuron`` codes, fused
MatMul+Add as FullyConnected, ...) and the outputs must match onnxruntime on the
source ONNX model. The converter keeps the ONNX layout at the graph boundary
(it inserts the NCHW<->NHWC Transposes itself); the comparison still maps an
NHWC input/output shape onto the ONNX one when it sees one.

Tolerances, relative to the largest reference magnitude: float32 1e-5 (seen:
<5e-7); float16 graphs 3e-3 (fp16 storage of every activation; seen: 7e-4);
QDQ graphs within one quantization step of the output (the emulator
fake-quantizes every quantized activation, so a rounding tie could differ from
onnxruntime's integer kernels; seen: bit-exact).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ctxbin.errors import InputError  # noqa: E402
from ctxbin.formats import dlc  # noqa: E402
from ctxbin.ir import Graph, Node  # noqa: E402
from ctxbin.runtime.emulator import Emulator, supported  # noqa: E402
from ctxbin.runtime.emulator import primitives as prim  # noqa: E402
from ctxbin.runtime.emulator.registry import lookup  # noqa: E402

from . import dlc_oracle as oracle  # noqa: E402
from .models import build_fcn, build_transformer  # noqa: E402

N = helper.make_node
F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # onnxruntime 1.31 refuses the IR 14 that onnx 1.23 writes
    return m


def _vi(name: str, shape, elem: int = F):
    return helper.make_value_info(name, helper.make_tensor_type_proto(elem, shape))


def _spatial_net() -> onnx.ModelProto:
    """Grouped (depthwise, multiplier 2) and plain depthwise convolutions, dilation,
    ConvTranspose with asymmetric padding, AveragePool with padding, MaxPool ceil mode."""
    rng = np.random.default_rng(10)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [
        N("Conv", ["x", "W", "B"], ["c"], group=4, pads=[1, 1, 1, 1], strides=[2, 2]),
        N("Conv", ["c", "DW"], ["d"], group=8, pads=[2, 2, 2, 2], dilations=[2, 2]),
        N("ConvTranspose", ["d", "WT", "BT"], ["t"], strides=[2, 2], pads=[0, 0, 1, 1]),
        N("AveragePool", ["t"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=0),
        N("MaxPool", ["t"], ["m"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    ]
    inits = {"W": f(8, 1, 3, 3), "B": f(8), "DW": f(8, 1, 3, 3), "WT": f(8, 3, 3, 3), "BT": f(3)}
    return _model(nodes, [_vi("x", [1, 4, 9, 8])], [_vi("a", None), _vi("m", None)], inits)


def _tensor_net() -> onnx.ModelProto:
    """Transpose, LayerNorm, Slice (StridedSlice), Gather, bilinear and nearest Resize."""
    rng = np.random.default_rng(11)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    nodes = [
        N("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        N("LayerNormalization", ["t", "g", "b"], ["l"], axis=-1, epsilon=1e-5),
        N("Slice", ["l", "st", "en", "ax", "sp"], ["s"]),
        N("Gather", ["s", "idx"], ["ga"], axis=1),
        N("Resize", ["img", "", "", "sz"], ["rs"], mode="linear", coordinate_transformation_mode="half_pixel"),
        N("Resize", ["img", "", "sc"], ["rn"], mode="nearest"),
    ]
    inits = {
        "g": f(6), "b": f(6), "st": i64(1, 0), "en": i64(10, 5), "ax": i64(1, 2), "sp": i64(2, 1),
        "idx": i64(0, 2, 2, 4), "sz": i64(1, 3, 7, 9), "sc": np.array([1, 1, 2, 2], np.float32),
    }
    return _model(nodes, [_vi("x", [1, 6, 10]), _vi("img", [1, 3, 4, 5])],
                  [_vi("ga", None), _vi("rs", None), _vi("rn", None)], inits)


_UNARY = ["Abs", "Neg", "Exp", "Sigmoid", "Tanh", "Floor", "Ceil", "Sin", "Cos", "Reciprocal", "Softplus", "Round",
          "Sign", "Relu"]
_BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]
_COMPARE = ["Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual"]


def _elementwise_net() -> onnx.ModelProto:
    """Every element-wise code family: unary, binary, comparisons (through Cast), logic,
    Where, activations with parameters, Pow on positive values, Log/Sqrt on positive values."""
    rng = np.random.default_rng(12)
    nodes = [N(u, ["x"], [u]) for u in _UNARY] + [N(b, ["x", "y"], [b]) for b in _BINARY]
    for c in _COMPARE:
        nodes += [N(c, ["x", "y"], [c + "_b"]), N("Cast", [c + "_b"], [c], to=F)]
    nodes += [
        N("And", ["Greater_b", "Less_b"], ["and_b"]), N("Cast", ["and_b"], ["and"], to=F),
        N("Or", ["Greater_b", "Less_b"], ["or_b"]), N("Not", ["or_b"], ["not_b"]), N("Cast", ["not_b"], ["not"], to=F),
        N("Where", ["cond", "x", "y"], ["where"]),
        N("Elu", ["x"], ["elu"], alpha=0.7), N("HardSigmoid", ["x"], ["hsig"], alpha=0.3, beta=0.4),
        N("HardSwish", ["x"], ["hswish"]), N("LeakyRelu", ["x"], ["leaky"], alpha=0.1),
        N("Clip", ["x", "lo", "hi"], ["clip"]), N("PRelu", ["x", "slope"], ["prelu"]),
        N("Abs", ["x"], ["ax"]), N("Add", ["ax", "one"], ["pos"]),
        N("Pow", ["pos", "y"], ["pow"]), N("Log", ["pos"], ["log"]), N("Sqrt", ["pos"], ["sqrt"]),
    ]
    outs = _UNARY + _BINARY + _COMPARE + ["and", "not", "where", "elu", "hsig", "hswish", "leaky", "clip", "prelu",
                                          "pow", "log", "sqrt"]
    inits = {
        "cond": rng.integers(0, 2, (3, 5)).astype(bool), "lo": np.array(-0.3, np.float32),
        "hi": np.array(0.6, np.float32), "slope": rng.uniform(0, 0.5, (1, 5)).astype(np.float32),
        "one": np.array(1.0, np.float32),
    }
    return _model(nodes, [_vi("x", [3, 5]), _vi("y", [3, 5])], [_vi(o, None) for o in outs], inits)


def _shape_net() -> onnx.ModelProto:
    """Reductions, Softmax, MatMul of two activations (batched) and with a weight,
    Gemm, Concat, Reshape, Split, Pad (constant, reflect, edge), ArgMax."""
    rng = np.random.default_rng(13)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [
        N("ReduceMax", ["x"], ["rmax"], axes=[1], keepdims=0), N("ReduceSum", ["x", "ax0"], ["rsum"], keepdims=1),
        N("ReduceMean", ["x"], ["rmean"], axes=[-1], keepdims=1), N("ReduceMin", ["x"], ["rmin"], axes=[0], keepdims=0),
        N("Softmax", ["x"], ["sm"], axis=0), N("MatMul", ["x", "Wm"], ["mm"]),
        N("MatMul", ["a3", "b3"], ["bmm"]), N("Gemm", ["x", "GW", "GB"], ["gemm"], transB=1),
        N("Concat", ["x", "y"], ["cat"], axis=0), N("Reshape", ["x", "shp"], ["rsh"]),
        N("Split", ["x", "spl"], ["s0", "s1"], axis=1),
        N("Pad", ["x", "pads", "pv"], ["padc"], mode="constant"), N("Pad", ["x", "pads"], ["padr"], mode="reflect"),
        N("Pad", ["x", "pads"], ["pade"], mode="edge"), N("ArgMax", ["x"], ["am"], axis=1, keepdims=0),
    ]
    outs = ["rmax", "rsum", "rmean", "rmin", "sm", "mm", "bmm", "gemm", "cat", "rsh", "s0", "s1", "padc", "padr",
            "pade"]
    inits = {
        "ax0": np.array([0], np.int64), "Wm": f(5, 4), "GW": f(6, 5), "GB": f(6), "shp": np.array([5, 3], np.int64),
        "spl": np.array([2, 3], np.int64), "pads": np.array([0, 1, 1, 2], np.int64), "pv": np.array(0.25, np.float32),
    }
    return _model(nodes, [_vi("x", [3, 5]), _vi("y", [3, 5]), _vi("a3", [2, 3, 4]), _vi("b3", [2, 4, 5])],
                  [_vi(o, None) for o in outs] + [_vi("am", None, TensorProto.INT64)], inits)


#: name -> (ONNX model builder, fp16 precision on HTP, tolerance kind)
CASES = {
    "conv_net": (oracle.float_conv_net, True, "f32"),
    "mixed_net": (oracle.float_mixed_net, True, "f32"),
    "spatial": (_spatial_net, True, "f32"),
    "tensor_ops": (_tensor_net, True, "f32"),
    "elementwise": (_elementwise_net, True, "f32"),
    "shape_ops": (_shape_net, True, "f32"),
    "fp16": (oracle.fp16_net, True, "f16"),
    "qdq_tensor": (lambda: oracle.qdq_conv_net(per_channel=False), False, "qdq"),
    "qdq_channel": (lambda: oracle.qdq_conv_net(per_channel=True), False, "qdq"),
    "fcn_tiny": (lambda: build_fcn(32, 48, tiny=True), True, "f32"),
    "transformer_tiny": (lambda: build_transformer(8, tiny=True), True, "f32"),
}
TOLERANCE = {"f32": 1e-5, "f16": 3e-3}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[onnx.ModelProto, Graph]]:
    oracle.require_qnn()
    models = {name: make() for name, (make, _, _) in CASES.items()}
    for m in models.values():
        m.ir_version = 8
    paths = oracle.make_dlcs({n: (m, CASES[n][1]) for n, m in models.items()}, tmp_path_factory.mktemp("qnn_dlc"))
    graphs = {}
    for name, path in paths.items():
        (graph,) = dlc.read(path).graphs
        graphs[name] = graph
    return {name: (models[name], graphs[name]) for name in CASES}


def _feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        shape = [d.dim_value for d in tt.shape.dim]
        if tt.elem_type == TensorProto.INT64:
            feeds[vi.name] = rng.integers(0, 64, shape).astype(np.int64)
        else:
            dtype = np.float16 if tt.elem_type == TensorProto.FLOAT16 else np.float32
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def _to_layout(a: np.ndarray, shape: tuple) -> np.ndarray:
    """``a`` in the layout ``shape`` asks for: as is, or NCHW->NHWC when that is what fits."""
    if tuple(a.shape) == tuple(shape):
        return a
    if a.ndim == 4 and tuple(shape) == (a.shape[0], a.shape[2], a.shape[3], a.shape[1]):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    raise AssertionError(f"cannot map shape {a.shape} onto {shape}")


def _emulate(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = supported(graph)
    assert not missing, f"no qnn kernel for {missing}"
    inputs = {}
    for t in graph.inputs:
        a = feeds[t.name]
        if t.dtype.numpy != a.dtype and t.dtype.is_quantized:
            a = a.astype(np.float32)  # real values; the emulator snaps them to the input's grid
        elif t.dtype.numpy != a.dtype:
            a = a.astype(t.dtype.numpy)  # e.g. int64 tokens into an int64/int32 input
        inputs[t.name] = _to_layout(a, t.shape)
    out = Emulator(graph).run(inputs)
    for t in graph.outputs:
        if t.dtype.is_quantized:
            # real values, and exactly ones the output's encoding can represent
            v = out[t.name]
            assert v.dtype == np.float32, (t.name, v.dtype)
            np.testing.assert_array_equal(t.encoding.dequantize(t.encoding.quantize(v, t.dtype)), v)
    return out


def _match(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, str]:
    """ONNX output name -> DLC output name (same names, or the single output of each)."""
    if set(want) <= set(got):
        return {n: n for n in want}
    assert len(want) == len(got) == 1, (sorted(want), sorted(got))
    return {next(iter(want)): next(iter(got))}


@pytest.mark.parametrize("name", list(CASES))
def test_dlc_graph_matches_onnxruntime(built, name: str) -> None:
    model, graph = built[name]
    assert all(n.namespace == "qnn" for n in graph.nodes)
    feeds = _feeds(model)
    want = _ort(model, feeds)
    got = _emulate(graph, feeds)
    kind = CASES[name][2]
    for onnx_name, dlc_name in _match(got, want).items():
        ref = want[onnx_name]
        out = got[dlc_name]
        if out.shape != ref.shape and out.ndim == 4 and out.transpose(0, 3, 1, 2).shape == ref.shape:
            out = out.transpose(0, 3, 1, 2)  # an NHWC graph output
        assert out.shape == ref.shape, (onnx_name, out.shape, ref.shape)
        if ref.dtype.kind in "iub":
            np.testing.assert_array_equal(out, ref, err_msg=onnx_name)
            continue
        err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        if kind == "qdq":
            step = graph.tensors[dlc_name].encoding.scales[0]
            assert err.max() <= 1.01 * step, f"{onnx_name}: max error {err.max():.4g} > one step {step:.4g}"
            continue
        scale = float(np.abs(ref).max()) or 1.0
        assert err.max() / scale <= TOLERANCE[kind], f"{name}/{onnx_name}: relative error {err.max() / scale:.3g}"


def test_converter_wrote_the_ops_under_test(built) -> None:
    """The cases really exercise the QNN op vocabulary (not a graph of Transposes)."""
    seen = {n.op_type for _, g in built.values() for n in g.nodes}
    for op in ("Conv2d", "DepthWiseConv2d", "TransposeConv2d", "Pool", "Neuron", "ElementWiseNeuron", "Prelu", "Eltwise_Binary",
               "Eltwise_Unary", "Eltwise_Ternary", "FullyConnected", "MatMul", "Reshape", "Transpose", "Concat",
               "Split", "Softmax", "LayerNorm", "Gather", "StridedSlice", "Pad", "Reduce", "Cast", "Arg",
               "ResizeBilinear", "ResizeNearestNeighbor"):
        assert op in seen, op
    quantized = [t for t in built["qdq_channel"][1].tensors.values() if t.dtype.is_quantized]
    assert any(t.encoding is not None and t.encoding.axis is not None for t in quantized)  # per-channel weights


def test_quantized_graph_takes_codes_or_reals_and_returns_reals(built) -> None:
    """A QDQ graph's output comes back as float32 real values on its encoding's grid
    (as the HTP backend returns them); integer codes and float feeds of the
    quantized input give the same result."""
    _, graph = built["qdq_tensor"]
    (inp,) = graph.inputs
    x = np.random.default_rng(5).standard_normal(inp.shape).astype(np.float32)
    q = inp.encoding.quantize(x, inp.dtype)
    emu = Emulator(graph)
    a, b = emu.run({inp.name: x}), emu.run({inp.name: q})
    (out,) = graph.outputs
    assert a[out.name].dtype == np.float32
    np.testing.assert_array_equal(a[out.name], b[out.name])
    grid = out.encoding.dequantize(out.encoding.quantize(a[out.name], out.dtype))
    np.testing.assert_array_equal(grid, a[out.name])


# ----------------------------------------------------------------------------- errors
def _node(op: str, **attrs) -> Node:
    return Node(name="n", op_type=op, namespace="qnn", inputs=("x",), outputs=("y",), attrs=attrs)


def test_bad_params_raise_input_errors() -> None:
    x = np.zeros((1, 4, 4, 2), np.float32)
    cases = [
        (_node("Reshape"), [x], ()),  # no declared output shape
        (_node("Neuron", operation=99), [x], ()),
        (_node("Eltwise_Unary", operation=-1), [x], ()),
        (_node("Pool", pool_type="PoolL2", filter_size=np.array([2, 2])), [x], ()),
        (_node("Transpose", perm=np.array([0, 0, 1, 2])), [x], ()),
        (_node("Gather", axis=1), [x, np.array([7])], ()),
        (_node("Conv2d", group=3, pad_amount=np.zeros((2, 2), np.uint32)), [x, np.zeros((1, 1, 2, 3), np.float32)], ()),
        (_node("Pool", pool_type="PoolMax2d", filter_size=np.array([9, 9])), [x], ()),
        (_node("StridedSlice", ranges=np.array([[0, 1, 0]] * 4)), [x], ()),
        (_node("Split", axis=3, split_index=np.array([5])), [x], ()),
    ]
    for node, args, outs in cases:
        with pytest.raises(InputError):
            fn = lookup(*node.key)
            fn(node, args, outputs=outs) if fn.wants_outputs else fn(node, args)  # type: ignore[attr-defined,call-arg]


# ----------------------------------------------------------------------------- primitives
def _ort_single(node: onnx.NodeProto, x: np.ndarray, inits: dict[str, np.ndarray]) -> np.ndarray:
    m = _model([node], [_vi("x", list(x.shape))], [_vi("y", None)], inits)
    return _ort(m, {"x": x})["y"]


@settings(max_examples=25, deadline=None)
@given(
    cin=st.integers(1, 3), mult=st.integers(1, 2), groups=st.sampled_from([1, "depthwise"]),
    k=st.integers(1, 3), stride=st.integers(1, 2), dil=st.integers(1, 2), pad=st.tuples(*[st.integers(0, 2)] * 4),
    hw=st.tuples(st.integers(5, 9), st.integers(5, 9)), seed=st.integers(0, 1000),
)
def test_conv2d_primitive_matches_onnxruntime(cin, mult, groups, k, stride, dil, pad, hw, seed) -> None:
    rng = np.random.default_rng(seed)
    g = cin if groups == "depthwise" else 1
    cout = cin * mult if g > 1 else mult + 1
    x = rng.standard_normal((1, cin) + hw).astype(np.float32)
    w = rng.standard_normal((cout, cin // g, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    top, left, bottom, right = pad
    want = _ort_single(N("Conv", ["x", "w", "b"], ["y"], group=g, strides=[stride] * 2, dilations=[dil] * 2,
                         pads=[top, left, bottom, right]), x, {"w": w, "b": b})
    got = prim.conv2d(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), b, stride=(stride, stride),
                      pads=((top, bottom), (left, right)), dilation=(dil, dil), groups=g)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 3), stride=st.integers(1, 3),
    pad=st.integers(0, 1), count_pad=st.booleans(), ceil=st.booleans(), seed=st.integers(0, 1000),
)
def test_pool2d_primitive_matches_onnxruntime(kind, k, stride, pad, count_pad, ceil, seed) -> None:
    assume(pad < k)  # ONNX requires padding smaller than the window
    x = np.random.default_rng(seed).standard_normal((1, 2, 7, 6)).astype(np.float32)
    attrs = dict(kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, ceil_mode=int(ceil))
    if kind == "avg":
        attrs["count_include_pad"] = int(count_pad)
    want = _ort_single(N("MaxPool" if kind == "max" else "AveragePool", ["x"], ["y"], **attrs), x, {})
    got = prim.pool2d(x.transpose(0, 2, 3, 1), kind, (k, k), stride=(stride, stride), pads=((pad, pad), (pad, pad)),
                      count_pad=count_pad, ceil=ceil)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("op", "attr", "bad"), [
    ("Neuron", "operation", 99), ("Eltwise_Unary", "operation", -1), ("Eltwise_Binary", "operation", 77),
    ("Pool", "pool_type", "PoolL2"), ("Reduce", "reduce_type", "ReduceMedian"), ("Pad", "scheme", 9),
])
def test_unknown_variants_are_named_with_the_known_ones(op: str, attr: str, bad: object) -> None:
    x = np.zeros((1, 4, 4, 2), np.float32)
    node = _node(op, **{attr: bad}, filter_size=np.array([2, 2]), pad_amount=np.zeros((4, 2), np.int64))
    fn = lookup(*node.key)
    args = [x, x] if op == "Eltwise_Binary" else [x]
    with pytest.raises(InputError, match=rf"\({op}\): {attr} {bad!r} is not one of \["):
        fn(node, args)  # type: ignore[call-arg]
