"""Whole networks on the emulator against onnxruntime CPU (single thread).

The real architectures shipped in the onnx wheel (``backend/test/data/light``)
carry no weights: every weight is a ConstantOfShape of its shape. They are
given deterministic random weights (He-scaled by the role of each tensor in
its consumer, so activations stay in a sane range) before both runtimes see
them. Pre-softmax logits are compared as well as the softmax, since a
saturated softmax hides errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ctxbin.formats import onnx as onnx_format  # noqa: E402
from ctxbin.runtime.emulator import Emulator, supported  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def _compare(path: Path, feeds: dict[str, np.ndarray], rtol: float = 1e-4) -> None:
    """Run ``path`` on both runtimes; every output must agree to ``rtol`` of its range."""
    graph = onnx_format.read(path).graphs[0]
    missing = supported(graph)
    if missing:
        pytest.skip(f"emulator kernels not available yet: {', '.join(missing)}")
    got = Emulator(graph).run(feeds)
    want = _ort_run(path, feeds)
    assert set(got) == set(want)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape and out.dtype == ref.dtype, (name, out.shape, ref.shape)
        assert np.isfinite(ref).all(), f"{name}: reference not finite (bad random weights)"
        err = float(np.abs(out.astype(np.float64) - ref).max())
        scale = float(np.abs(ref).max())
        rel = err / scale if scale else err
        assert rel <= rtol, f"{path.name} {name}: max abs error {err:.3g}, relative to max |ref| {rel:.3g}"


# ------------------------------------------------------------ light models


def _materialize(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """Replace each ConstantOfShape weight by a random initializer scaled for its role."""
    rng = np.random.default_rng(seed)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, tuple[onnx.NodeProto, int]] = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, (n, i))
    nodes, new = [], {}
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            nodes.append(n)
            continue
        shape = tuple(int(d) for d in inits[n.input[0]])
        user, slot = consumers[n.output[0]]
        new[n.output[0]] = _weight(rng, shape, user, slot)
    used = {name for n in nodes for name in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep + [numpy_helper.from_array(a, k) for k, a in new.items()])
    # old IR versions list initializers as graph inputs; only real, used inputs remain
    real = [i for i in g.input if i.name not in inits and i.name not in new and i.name in used]
    del g.input[:]
    g.input.extend(real)
    model.ir_version = 8
    return model


def _weight(rng: np.random.Generator, shape: tuple[int, ...], user: onnx.NodeProto, slot: int) -> np.ndarray:
    def normal(std: float, mean: float = 0.0) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean))

    if user.op_type == "Conv" and slot == 1:
        return normal(math.sqrt(2.0 / math.prod(shape[1:])))
    if user.op_type == "Gemm" and slot == 1:
        trans_b = any(a.name == "transB" and a.i for a in user.attribute)
        return normal(math.sqrt(2.0 / shape[1 if trans_b else 0]))
    if user.op_type == "BatchNormalization":
        if slot == 1:  # scale < 1 keeps residual sums bounded over many blocks
            return rng.uniform(0.4, 0.7, shape).astype(np.float32)
        if slot == 4:  # variance
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return normal(0.05)
    return normal(0.01)  # biases and anything else


def _with_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """Expose each Softmax's input as an extra graph output."""
    for n in model.graph.node:
        if n.op_type == "Softmax":
            model.graph.output.append(helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None))
    return model


LIGHT_NETS = [
    "light_resnet50",
    # its Softmax is opset 9 on [1,1000,1,1]: coerced to 2-D it normalises over classes
    "light_squeezenet",
    "light_inception_v1",
    "light_bvlc_alexnet",
    pytest.param("light_vgg19", marks=pytest.mark.slow),  # 144M weights
]


@pytest.mark.parametrize("name", LIGHT_NETS)
def test_light_model(name: str, tmp_path: Path) -> None:
    src = LIGHT / f"{name}.onnx"
    if not src.exists():
        pytest.skip(f"{src} is not in this onnx wheel")
    model = _with_logits(_materialize(onnx.load(str(src)), seed=sum(map(ord, name))))
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    (inp,) = model.graph.input
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    _compare(path, {inp.name: x})


# ------------------------------------------------------------ example models


def _image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((1, 3, h, w), dtype=np.float32)


@pytest.mark.parametrize("name", ["fcn_landscape", "fcn_portrait"])
def test_fcn_tiny(name: str, tiny_models: dict[str, Path]) -> None:
    h, w = (256, 384) if name == "fcn_landscape" else (384, 256)
    _compare(tiny_models[name], {"image": _image(h, w)})


@pytest.mark.slow
def test_fcn_full_256x384(tmp_path: Path) -> None:
    from tests.models import build_fcn

    path = tmp_path / "fcn.onnx"
    onnx.save(build_fcn(256, 384), str(path))
    _compare(path, {"image": _image(256, 384)})


@pytest.mark.parametrize("name,seq", [("transformer_ar128", 128), ("transformer_ar1", 1)])
def test_transformer_tiny(name: str, seq: int, tiny_models: dict[str, Path]) -> None:
    tokens = np.random.default_rng(3).integers(0, 64, (1, seq), dtype=np.int64)
    _compare(tiny_models[name], {"tokens": tokens})


def test_transformer_full(tmp_path: Path) -> None:
    from tests.models import build_transformer

    path = tmp_path / "transformer.onnx"
    onnx.save(build_transformer(128), str(path))
    tokens = np.random.default_rng(4).integers(0, 1000, (1, 128), dtype=np.int64)
    _compare(path, {"tokens": tokens})

