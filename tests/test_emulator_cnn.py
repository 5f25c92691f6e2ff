"""The emulator's CNN kernels (ONNX namespace) against ONNX's own node test cases,
plus checks of the fast paths (im2col bands, depthwise) against onnxruntime."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from tests.node_cases import case_ids, cases, check_case

OPS = [
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
    "HardSwish", "Flatten", "Dropout", "LRN", "Resize", "Upsample", "Pad", "Sum", "Mean",
    "Max", "Min", "Identity", "PRelu",
]

SKIP = [
    # training-mode Dropout with ratio > 0 draws random masks: the expected
    # outputs come from another random generator and cannot be reproduced
    "test_training_dropout",
    "test_training_dropout_mask",
    "test_training_dropout_default",
    "test_training_dropout_default_mask",
    # sequence- and optional-typed graph inputs: graphs carry tensors only
    "test_identity_sequence",
    "test_identity_opt",
]

CASES = cases(OPS, skip=SKIP)


def test_every_op_has_cases() -> None:
    covered = {n.op_type for c in CASES for n in c.model.graph.node}
    assert covered == set(OPS), sorted(set(OPS) - covered)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_node_case(case) -> None:
    check_case(case)


# ------------------------------------------------- fast paths vs onnxruntime

ort = pytest.importorskip("onnxruntime")


def _run_both(tmp_path, op: str, x: np.ndarray, consts: dict[str, np.ndarray | None], **attrs) -> tuple:
    """One ``op`` node on input ``x`` and constant inputs (None: an omitted optional
    input): (emulator output, onnxruntime output)."""
    from onnx import helper, numpy_helper

    from ctxbin.formats import onnx as onnx_format
    from ctxbin.runtime.emulator import Emulator

    node = helper.make_node(op, ["x", *(k if v is not None else "" for k, v in consts.items())], ["y"], **attrs)
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", elem, x.shape)],
        [helper.make_tensor_value_info("y", elem, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items() if v is not None],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    got = Emulator(onnx_format.read(path).graphs[0]).run({"x": x})["y"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return got, want


def _assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    err = float(np.abs(got.astype(np.float64) - want).max())
    scale = max(float(np.abs(want).max()), 1.0)
    assert err <= rtol * scale, f"max abs error {err:.3g} (max |ref| {scale:.3g})"


def _rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded by the test's id: the same data whatever runs before."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

CONVS = {
    # name: (input shape, weight shape, attrs)
    "depthwise_s1": ((1, 8, 20, 30), (8, 1, 3, 3), dict(group=8, pads=[1, 1, 1, 1])),
    "depthwise_mult2_s2": ((2, 4, 21, 17), (8, 1, 3, 3), dict(group=4, strides=[2, 2], pads=[1, 0, 1, 2])),
    "grouped": ((1, 8, 16, 16), (6, 4, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    "pointwise_s2": ((2, 16, 15, 22), (12, 16, 1, 1), dict(strides=[2, 2])),
    # (onnxruntime refuses dilations with SAME_*: those are covered by the node cases)
    "dilated": ((1, 5, 19, 23), (7, 5, 3, 3), dict(dilations=[2, 3], pads=[2, 3, 2, 3])),
    "same_upper_s2": ((1, 5, 19, 23), (7, 5, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower_s2": ((1, 3, 18, 25), (4, 3, 4, 4), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    "valid_5x5": ((1, 3, 12, 12), (4, 3, 5, 5), dict(auto_pad="VALID")),
    # 32 ch x 9 taps x 160 columns per output row: several im2col bands
    "banded": ((1, 32, 160, 160), (16, 32, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv1d": ((2, 6, 50), (5, 6, 5), dict(strides=[3], pads=[2, 1])),
    "conv3d": ((1, 3, 7, 8, 9), (4, 3, 3, 3, 3), dict(pads=[1] * 6, strides=[1, 2, 1])),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_vs_onnxruntime(name: str, tmp_path, request) -> None:
    rng = _rng(request)
    xs, ws, attrs = CONVS[name]
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32)
    _assert_close(*_run_both(tmp_path, "Conv", x, {"w": w, "b": b}, **attrs))


def test_conv_transpose_vs_onnxruntime(tmp_path, request) -> None:
    rng = _rng(request)
    x = rng.standard_normal((2, 4, 9, 11), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    b = rng.standard_normal(6, dtype=np.float32)
    got, want = _run_both(tmp_path, "ConvTranspose", x, {"w": w, "b": b}, group=2, strides=[2, 2],
                          pads=[1, 0, 1, 1], output_padding=[1, 1], dilations=[1, 2])
    _assert_close(got, want)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1, dilations=[2, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 1, 0, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
])
def test_pool_vs_onnxruntime(op: str, attrs: dict, tmp_path, request) -> None:
    rng = _rng(request)
    x = rng.standard_normal((2, 3, 17, 22), dtype=np.float32)
    _assert_close(*_run_both(tmp_path, op, x, {}, **attrs))


@pytest.mark.parametrize("attrs,sizes", [
    (dict(mode="linear", coordinate_transformation_mode="half_pixel"), [1, 5, 64, 96]),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 5, 31, 13]),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), [1, 5, 7, 1]),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), [1, 5, 40, 36]),
    (dict(mode="nearest", nearest_mode="round_prefer_ceil"), [1, 5, 9, 20]),
    (dict(mode="cubic", coordinate_transformation_mode="half_pixel"), [1, 5, 30, 50]),
])
def test_resize_vs_onnxruntime(attrs: dict, sizes: list[int], tmp_path, request) -> None:
    rng = _rng(request)
    x = rng.standard_normal((1, 5, 16, 24), dtype=np.float32)
    consts = {"roi": None, "scales": None, "sizes": np.array(sizes, np.int64)}
    _assert_close(*_run_both(tmp_path, "Resize", x, consts, **attrs))


# ------------------------------------------------------------- bad inputs


def _kernel_call(op: str, inputs: list, **attrs):
    from ctxbin.ir import Node
    from ctxbin.runtime.emulator.registry import lookup

    node = Node("n", op, "onnx", tuple(f"i{k}" for k in range(len(inputs))), ("y",), attrs)
    fn = lookup("onnx", op)
    assert fn is not None
    return fn(node, inputs)


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Conv", [np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32)], {}),
    ("Conv", [np.zeros((1, 4, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32)], {"group": 3}),
    ("Conv", [np.zeros((1, 3, 2, 2), np.float32), np.zeros((4, 3, 3, 3), np.float32)], {}),
    ("Conv", [np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32)], {"strides": (0, 1)}),
    ("Conv", [np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32)], {"auto_pad": "BOGUS"}),
    ("ConvTranspose", [np.zeros((1, 3, 4, 4), np.float32), np.zeros((2, 2, 3, 3), np.float32)], {}),
    ("ConvTranspose", [np.zeros((1, 2, 2, 2), np.float32), np.zeros((2, 2, 3, 3), np.float32)],
     {"pads": (9, 9, 9, 9)}),
    ("MaxPool", [np.zeros((1, 3, 8, 8), np.float32)], {}),
    ("AveragePool", [np.zeros((1, 3, 8, 8), np.float32)], {"kernel_shape": (3, 3), "pads": (1, 1)}),
    ("GlobalAveragePool", [np.zeros((3, 8), np.float32)], {}),
    ("BatchNormalization", [np.zeros((1, 3, 4), np.float32)] + [np.ones(2, np.float32)] * 4, {}),
    ("Resize", [np.zeros((1, 3, 4, 4), np.float32), None, np.ones(3, np.float32)], {}),
    ("Resize", [np.zeros((1, 3, 4, 4), np.float32), None, np.ones(4, np.float32)], {"mode": "area"}),
    ("Resize", [np.zeros((1, 3, 4, 4), np.float32), None, None, None], {}),
    ("Resize", [np.zeros((1, 3, 4, 4), np.float32), None, np.array([1, 1, 0, 2], np.float32)], {}),
    ("Pad", [np.zeros((2, 3), np.float32), np.array([1, 1, 1], np.int64)], {}),
    ("Pad", [np.zeros((2, 3), np.float32), np.array([0, -2, 0, -2], np.int64)], {}),
    ("Pad", [np.zeros((0, 3), np.float32), np.array([1, 0, 1, 0], np.int64)], {"mode": "reflect"}),
    ("LRN", [np.zeros((1, 3, 4, 4), np.float32)], {}),
    ("Flatten", [np.zeros((2, 3), np.float32)], {"axis": 3}),
    ("PRelu", [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)], {}),
    ("Sum", [np.zeros((2, 3), np.float32), np.zeros((4,), np.float32)], {}),
])
def test_bad_input_raises_input_error(op: str, inputs: list, attrs: dict) -> None:
    from ctxbin.errors import InputError

    with pytest.raises(InputError, match=r"node 'n'"):
        _kernel_call(op, inputs, **attrs)


def test_float16_conv_keeps_dtype(request) -> None:
    rng = _rng(request)
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float16)
    w = rng.standard_normal((2, 4, 3, 3)).astype(np.float16)
    (y,) = _kernel_call("Conv", [x, w], pads=(1, 1, 1, 1))
    (y32,) = _kernel_call("Conv", [x.astype(np.float32), w.astype(np.float32)], pads=(1, 1, 1, 1))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), y32, rtol=1e-2, atol=1e-2)


def test_dropout_inference_is_identity_with_true_mask(request) -> None:
    rng = _rng(request)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y, mask = _kernel_call("Dropout", [x, np.array(0.5, np.float32)])
    assert y is x and mask.dtype == bool and mask.all()


def test_dropout_training_is_seeded() -> None:
    x = np.ones((64, 64), np.float32)
    a = _kernel_call("Dropout", [x, np.array(0.25, np.float32), np.array(True)], seed=3)
    b = _kernel_call("Dropout", [x, np.array(0.25, np.float32), np.array(True)], seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert 0.2 < 1 - a[1].mean() < 0.3
    np.testing.assert_allclose(a[0][a[1]], 1 / 0.75)


# ------------------------------------------------------ property: any Conv

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    mg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    if depthwise:
        groups, cg = draw(st.integers(2, 5)), 1
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = [draw(st.integers(0, kk - 1)) for kk in k] * 2
    pads[2] = draw(st.integers(0, k[0] - 1))
    hw = tuple((kk - 1) * dd + 1 + draw(st.integers(0, 12)) for kk, dd in zip(k, d))
    n = draw(st.integers(1, 2))
    return (n, groups * cg) + hw, (groups * mg, cg) + k, dict(group=groups, kernel_shape=list(k),
                                                            dilations=list(d), strides=list(s), pads=pads)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(_conv_configs())
def test_conv_property_vs_onnxruntime(cfg) -> None:
    import tempfile
    from pathlib import Path

    xs, ws, attrs = cfg
    rng = np.random.default_rng(abs(hash((xs, ws))) % 2**32)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        _assert_close(*_run_both(Path(d), "Conv", x, {"w": w}, **attrs))
