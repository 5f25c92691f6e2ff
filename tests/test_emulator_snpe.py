"""The emulator's ``snpe`` kernels on the real v3 DeepLabV3 DLC (MLCommons v1.0,
MobileNetV2 backbone, uint8 weights and activations with encodings).

Nothing here runs a v3 DLC, so there is no reference output to compare with.
What these tests do establish:

- the whole graph runs end to end (every layer type has a kernel), every
  intermediate is finite, and every layer's computed size equals the size the
  file declares (``OutputDims``) — a wrong stride/padding/dilation reading fails;
- each non-clamping layer's float output stays inside the range the vendor's
  quantizer calibrated for it on real data (its encoding), i.e. almost nothing
  saturates — a gross error (wrong weight layout per channel, missing bias
  scale, wrong input scaling) would push activations far outside. This check is
  weak against subtle errors (it did not catch spatially flipped filters);
- the segmentation map has several classes, all valid indices.

The arithmetic of the kernels is checked elsewhere: convolution and pooling
primitives against onnxruntime (tests/test_emulator_qnn.py), the TensorFlow-style
resize used by ``Scaling`` against onnxruntime below.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ctxbin.errors import InputError
from ctxbin.formats import dlc
from ctxbin.ir import Node, TensorKind
from ctxbin.runtime.emulator import Emulator, supported
from ctxbin.runtime.emulator import primitives as prim
from ctxbin.runtime.emulator.registry import lookup
from tests.shared_data import DLC_DIR

DEEPLAB = DLC_DIR / "mlcommons_v1_0_deeplabv3_hta.dlc"


def _image() -> np.ndarray:
    """A deterministic 512x512 RGB pattern in [-1, 1] (the net's input range)."""
    yy, xx = np.mgrid[0:512, 0:512] / 511.0
    img = np.stack([np.sin(6 * xx) * np.cos(4 * yy), xx - yy, np.cos(9 * xx * yy)], -1)[None]
    noise = 0.1 * np.random.default_rng(0).standard_normal(img.shape)
    return np.clip(img + noise, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def deeplab_run():
    if not DEEPLAB.exists():
        pytest.skip(f"real v3 DLC {DEEPLAB} is not available here")
    graph = dlc.read(DEEPLAB).graphs[0]
    assert supported(graph) == []
    # expose every layer output (real values, on the grid of each output's encoding)
    tensors = dict(graph.tensors)
    names = [o for n in graph.nodes if n.op_type != "Input" for o in n.outputs]
    for name in names:
        tensors[name] = dataclasses.replace(tensors[name], kind=TensorKind.OUTPUT)
    probe = dataclasses.replace(graph, outputs=tuple(tensors[n] for n in names), tensors=tensors)
    (inp,) = graph.inputs
    return graph, Emulator(probe).run({inp.name: _image()})


def test_deeplab_runs_end_to_end(deeplab_run) -> None:
    graph, out = deeplab_run
    (result,) = graph.outputs
    real = out[result.name]
    assert real.shape == (1, 512, 512) and real.dtype == np.float32
    classes = np.rint(real).astype(int)
    found = np.unique(classes)
    assert found.min() >= 0 and found.max() < 32  # the logits have 32 channels
    assert len(found) >= 3, found
    assert np.bincount(classes.ravel()).max() < classes.size  # not a constant map


def test_deeplab_layers_have_declared_shapes_and_stay_in_calibrated_range(deeplab_run) -> None:
    graph, out = deeplab_run
    for node in graph.nodes:
        if node.op_type == "Input":
            continue
        t = graph.tensors[node.outputs[0]]
        codes = t.encoding.quantize(out[t.name], t.dtype)
        assert codes.shape == t.shape, (node.name, codes.shape, t.shape)
        if node.op_type in ("Neuron", "ArgMax"):
            continue  # ReLU6 saturates by design; indices are not activations
        top = np.mean(codes == 255)
        bottom = np.mean(codes == 0) if t.encoding.offsets[0] < 0 else 0.0  # 0 is the range floor, not a clamp
        assert top + bottom < 1e-3, f"{node.name}: {top + bottom:.2%} of values outside the calibrated range"


def test_quantized_input_takes_codes_or_reals() -> None:
    if not DEEPLAB.exists():
        pytest.skip(f"real v3 DLC {DEEPLAB} is not available here")
    graph = dlc.read(DEEPLAB).graphs[0]
    (inp,) = graph.inputs
    # just the first convolution, to keep this fast
    first = graph.nodes[:2]
    tensors = dict(graph.tensors)
    out = first[1].outputs[0]
    tensors[out] = dataclasses.replace(tensors[out], kind=TensorKind.OUTPUT)
    small = dataclasses.replace(graph, nodes=first, outputs=(tensors[out],), tensors=tensors)
    img = _image()
    emu = Emulator(small)
    a = emu.run({inp.name: img})[out]
    b = emu.run({inp.name: inp.encoding.quantize(img, inp.dtype)})[out]
    np.testing.assert_array_equal(a, b)


def _node(op_type: str, **attrs) -> Node:
    return Node(name="n", op_type=op_type, namespace="snpe", inputs=("x",), outputs=("y",), attrs=attrs)


def test_unknown_codes_raise_input_errors() -> None:
    x = np.zeros((1, 4, 4, 2), np.float32)
    for node, args in [
        (_node("Neuron", type=9), [x]),
        (_node("ElementwiseOp", op=3), [x, x]),
        (_node("Pooling", type=7), [x]),
        (_node("Scaling", resize_mode=5), [x]),
        (_node("Convolutional"), [x]),  # no weights
    ]:
        with pytest.raises(InputError):
            fn = lookup(*node.key)
            fn(node, args, outputs=()) if fn.wants_outputs else fn(node, args)  # type: ignore[attr-defined,call-arg]


# ------------------------------------------------------------------ resize vs onnxruntime
@pytest.mark.parametrize(
    "mode, align, half, ort_attrs",
    [
        ("bilinear", False, False, dict(mode="linear", coordinate_transformation_mode="asymmetric")),
        ("bilinear", True, False, dict(mode="linear", coordinate_transformation_mode="align_corners")),
        ("bilinear", False, True, dict(mode="linear", coordinate_transformation_mode="half_pixel")),
        ("nearest", False, False, dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
        ("nearest", False, True,
         dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")),
        ("nearest", True, False,
         dict(mode="nearest", coordinate_transformation_mode="align_corners", nearest_mode="round_prefer_ceil")),
    ],
)
@pytest.mark.parametrize("size", [(7, 11), (3, 2), (10, 10)])
def test_resize_primitive_matches_onnxruntime(mode, align, half, ort_attrs, size) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    x = np.random.default_rng(1).standard_normal((1, 2, 4, 5)).astype(np.float32)
    sizes = np.array([1, 2, *size], np.int64)
    g = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **ort_attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(sizes, "sizes")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = prim.resize2d(x.transpose(0, 2, 3, 1), size, mode, align_corners=align, half_pixel=half)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-6)
