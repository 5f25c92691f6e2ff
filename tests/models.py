"""Deterministic example models: an FCN-ResNet-50-style segmentation net and a
small transformer block, each buildable at several input shapes that share every
weight by name and content (what ``ctxbin link`` shares).

Weights are float32 from ``numpy.random.default_rng`` with fixed seeds, scaled
so activations stay finite and unsaturated (He-style convolutions and
projections, batch-norm parameters near identity, small residual branches).
Shape-dependent constants (resize sizes, positional slice ends) are ``Constant``
nodes rather than initializers, so the initializer sets of two variants are
identical.

Run ``python -m tests.models --out DIR [--tiny]`` to write the example models
with external data.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

__all__ = [
    "OPSET",
    "IR_VERSION",
    "FCN_CLASSES",
    "build_fcn",
    "build_transformer",
    "save_with_external_data",
    "example_models",
    "main",
]

#: opset 17 is the first with LayerNormalization; Gelu (opset 20) is spelled with Erf.
OPSET = 17
#: onnxruntime 1.31 refuses IR versions above 13; 8 is the minimum for opset 17.
IR_VERSION = 8
FCN_CLASSES = 21
_ALIGN = 64
#: Small tensors stay inline: onnxruntime's shape inference cannot read external
#: shape constants (Slice starts, Reshape shapes).
_INLINE_BELOW = 1024


class _Builder:
    """Collects nodes and float32 initializers drawn from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []

    def weight(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def normal(self, name: str, shape: Sequence[int], std: float, mean: float = 0.0) -> str:
        arr = self.rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std)
        return self.weight(name, arr + np.float32(mean))

    def node(self, op: str, name: str, inputs: Sequence[str], *, out: str | None = None,
             **attrs: object) -> str:
        """Append a node with one output (``<name>.out`` unless given); returns it."""
        out = out or f"{name}.out"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out

    def constant(self, name: str, arr: np.ndarray) -> str:
        """A ``Constant`` node: for values that differ between shape variants."""
        return self.node("Constant", name, [], value=numpy_helper.from_array(arr, f"{name}.value"))

    def model(
        self,
        name: str,
        inputs: Sequence[onnx.ValueInfoProto],
        outputs: Sequence[onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, list(inputs), list(outputs), self.inits)
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="ctxbin-tests",
            producer_version="1",
        )
        m.ir_version = IR_VERSION
        return m


# ---------------------------------------------------------------- FCN-ResNet-50


def _conv(b: _Builder, name: str, x: str, cin: int, cout: int, k: int,
          stride: int = 1, dilation: int = 1) -> str:
    pad = dilation * (k // 2)
    w = b.normal(f"{name}.weight", (cout, cin, k, k), math.sqrt(2.0 / (cin * k * k)))
    bias = b.normal(f"{name}.bias", (cout,), 0.01)
    return b.node("Conv", name, [x, w, bias], kernel_shape=[k, k], strides=[stride, stride],
                  pads=[pad] * 4, dilations=[dilation, dilation])


def _bn(b: _Builder, name: str, x: str, c: int, gain: float = 1.0) -> str:
    rng = b.rng
    gamma = b.weight(f"{name}.weight", (gain * (1.0 + 0.05 * rng.standard_normal(c))).astype(np.float32))
    beta = b.normal(f"{name}.bias", (c,), 0.02)
    mean = b.normal(f"{name}.running_mean", (c,), 0.02)
    var = b.weight(f"{name}.running_var", (1.0 + 0.1 * rng.random(c)).astype(np.float32))
    return b.node("BatchNormalization", name, [x, gamma, beta, mean, var], epsilon=1e-5)


def _bottleneck(b: _Builder, name: str, x: str, cin: int, width: int, stride: int,
                dilation: int, downsample: bool) -> str:
    cout = 4 * width
    y = b.node("Relu", f"{name}.relu1", [_bn(b, f"{name}.bn1", _conv(b, f"{name}.conv1", x, cin, width, 1), width)])
    y = _conv(b, f"{name}.conv2", y, width, width, 3, stride, dilation)
    y = b.node("Relu", f"{name}.relu2", [_bn(b, f"{name}.bn2", y, width)])
    # A small last-BN gain keeps the residual stream's scale bounded over 16 blocks.
    y = _bn(b, f"{name}.bn3", _conv(b, f"{name}.conv3", y, width, cout, 1), cout, gain=0.25)
    if downsample:
        x = _bn(b, f"{name}.downsample.1", _conv(b, f"{name}.downsample.0", x, cin, cout, 1, stride), cout)
    return b.node("Relu", f"{name}.relu3", [b.node("Add", f"{name}.add", [y, x])])


def build_fcn(height: int, width: int, *, tiny: bool = False) -> onnx.ModelProto:
    """FCN-ResNet-50-style segmentation net: ``image`` [1,3,H,W] → ``out`` [1,21,H,W].

    ResNet-50 backbone (bottleneck blocks 3/4/6/3, layers 3 and 4 dilated for
    output stride 8, as in FCN), head Conv3x3-BN-Relu-Dropout-Conv1x1, then a
    bilinear Resize to the input size. Every Conv has a bias; BatchNormalization
    follows each Conv as in the real network. Full size holds ~33M parameters
    (~132 MB); ``tiny`` keeps the structure kinds at a few hundred KB.
    Variants of any size share all initializers (same names, same values).
    """
    widths, blocks, head = ((4, 8, 16, 32), (1, 2, 1, 1), 16) if tiny else ((64, 128, 256, 512), (3, 4, 6, 3), 512)
    b = _Builder(seed=50 if not tiny else 51)
    stem = widths[0]
    x = _conv(b, "backbone.conv1", "image", 3, stem, 7, stride=2)
    x = b.node("Relu", "backbone.relu", [_bn(b, "backbone.bn1", x, stem)])
    x = b.node("MaxPool", "backbone.maxpool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin, dilation = stem, 1
    # (stride, dilate instead of stride) per layer: FCN replaces the strides of layers 3-4.
    plan = ((1, False), (2, False), (2, True), (2, True))
    for li, (w, n, (stride, dilate)) in enumerate(zip(widths, blocks, plan), start=1):
        first_dilation = dilation
        if dilate:
            dilation *= stride
            stride = 1
        for bi in range(n):
            x = _bottleneck(
                b, f"backbone.layer{li}.{bi}", x, cin, w,
                stride if bi == 0 else 1,
                first_dilation if bi == 0 else dilation,
                downsample=(bi == 0 and (stride != 1 or cin != 4 * w)),
            )
            cin = 4 * w
    x = _conv(b, "classifier.0", x, cin, head, 3)
    x = b.node("Relu", "classifier.2", [_bn(b, "classifier.1", x, head)])
    x = b.node("Dropout", "classifier.3", [x])
    x = _conv(b, "classifier.4", x, head, FCN_CLASSES, 1)
    sizes = b.constant("resize_sizes", np.array([1, FCN_CLASSES, height, width], np.int64))
    b.node("Resize", "upsample", [x, "", "", sizes], out="out", mode="linear",
           coordinate_transformation_mode="half_pixel")
    return b.model(
        f"fcn_resnet50_{height}x{width}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, FCN_CLASSES, height, width])],
    )


# ---------------------------------------------------------------- transformer


def _linear(b: _Builder, name: str, x: str, din: int, dout: int) -> str:
    """MatMul + Add bias (weights stored [in, out], as exporters write them)."""
    w = b.normal(f"{name}.weight", (din, dout), 1.0 / math.sqrt(din))
    bias = b.normal(f"{name}.bias", (dout,), 0.02)
    return b.node("Add", f"{name}.add", [b.node("MatMul", f"{name}.matmul", [x, w]), bias])


def _layernorm(b: _Builder, name: str, x: str, d: int) -> str:
    gamma = b.weight(f"{name}.weight", (1.0 + 0.05 * b.rng.standard_normal(d)).astype(np.float32))
    beta = b.normal(f"{name}.bias", (d,), 0.02)
    return b.node("LayerNormalization", name, [x, gamma, beta], axis=-1, epsilon=1e-5)


def build_transformer(
    seq_len: int,
    *,
    d_model: int | None = None,
    heads: int | None = None,
    d_ff: int | None = None,
    vocab: int | None = None,
    max_len: int = 128,
    tiny: bool = False,
) -> onnx.ModelProto:
    """One pre-norm transformer block: ``tokens`` int64 [1,S] → ``hidden`` float32 [1,S,d].

    Token embedding (Gather) plus a positional table sliced to ``seq_len``,
    LayerNorm, multi-head self-attention (MatMul+Add projections, Reshape and
    Transpose to heads, scaled Softmax), residual, LayerNorm, an Erf-GELU FFN,
    residual, then an RMS-style final norm (Mul, ReduceMean, Add, Sqrt, Div).
    Defaults: d_model 256, 4 heads, d_ff 1024, vocab 1000 (tiny: 32, 4, 64, 64).
    Variants with different ``seq_len`` (<= ``max_len``) share every initializer.
    """
    d = d_model if d_model is not None else (32 if tiny else 256)
    h = heads if heads is not None else 4
    ff = d_ff if d_ff is not None else (64 if tiny else 1024)
    v = vocab if vocab is not None else (64 if tiny else 1000)
    if d % h:
        raise ValueError(f"d_model {d} is not a multiple of heads {h}")
    if not 1 <= seq_len <= max_len:
        raise ValueError(f"seq_len {seq_len} outside 1..{max_len}")
    dh = d // h
    b = _Builder(seed=128 if not tiny else 129)
    f32 = np.float32
    emb = b.normal("embed.weight", (v, d), 1.0)
    pos = b.normal("pos_embed.weight", (max_len, d), 0.1)
    zero = b.weight("const.zero", np.array([0], np.int64))
    to_heads = b.weight("const.heads_shape", np.array([0, -1, h, dh], np.int64))
    merge = b.weight("const.merge_shape", np.array([0, -1, d], np.int64))
    scale = b.weight("const.sqrt_head_dim", np.array(math.sqrt(dh), f32))
    sqrt2 = b.weight("const.sqrt2", np.array(math.sqrt(2.0), f32))
    one = b.weight("const.one", np.array(1.0, f32))
    half = b.weight("const.half", np.array(0.5, f32))
    eps = b.weight("const.eps", np.array(1e-6, f32))

    x = b.node("Gather", "embed", [emb, "tokens"], axis=0)
    end = b.constant("pos_end", np.array([seq_len], np.int64))
    p = b.node("Slice", "pos_slice", [pos, zero, end, zero])
    x = b.node("Add", "pos_add", [x, p])

    pre = "layers.0"
    y = _layernorm(b, f"{pre}.ln1", x, d)
    q, k, val = (
        b.node("Transpose", f"{pre}.attn.{n}_heads", [
            b.node("Reshape", f"{pre}.attn.{n}_reshape", [_linear(b, f"{pre}.attn.{n}_proj", y, d, d), to_heads])
        ], perm=perm)
        for n, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3]))
    )
    s = b.node("Div", f"{pre}.attn.scale", [b.node("MatMul", f"{pre}.attn.qk", [q, k]), scale])
    a = b.node("MatMul", f"{pre}.attn.av", [b.node("Softmax", f"{pre}.attn.softmax", [s], axis=-1), val])
    a = b.node("Reshape", f"{pre}.attn.merge",
               [b.node("Transpose", f"{pre}.attn.unheads", [a], perm=[0, 2, 1, 3]), merge])
    x = b.node("Add", f"{pre}.attn.residual", [x, _linear(b, f"{pre}.attn.out_proj", a, d, d)])

    y = _linear(b, f"{pre}.ffn.fc1", _layernorm(b, f"{pre}.ln2", x, d), d, ff)
    erf = b.node("Erf", f"{pre}.ffn.erf", [b.node("Div", f"{pre}.ffn.div", [y, sqrt2])])
    g = b.node("Mul", f"{pre}.ffn.gelu_half",
               [b.node("Mul", f"{pre}.ffn.gelu_mul", [y, b.node("Add", f"{pre}.ffn.erf_plus1", [erf, one])]), half])
    x = b.node("Add", f"{pre}.ffn.residual", [x, _linear(b, f"{pre}.ffn.fc2", g, ff, d)])

    ms = b.node("ReduceMean", "norm.mean_sq", [b.node("Mul", "norm.square", [x, x])], axes=[-1], keepdims=1)
    rms = b.node("Sqrt", "norm.sqrt", [b.node("Add", "norm.add_eps", [ms, eps])])
    gamma = b.weight("norm.weight", (1.0 + 0.05 * b.rng.standard_normal(d)).astype(f32))
    b.node("Mul", "norm.scale", [b.node("Div", "norm.div", [x, rms]), gamma], out="hidden")
    return b.model(
        f"transformer_ar{seq_len}",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, seq_len])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, seq_len, d])],
    )


# ---------------------------------------------------------------- saving


def _nbytes(t: TensorProto) -> int:
    return math.prod(t.dims) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def save_with_external_data(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``path`` and its weights to ``path + '.data'``, each tensor 64-byte aligned.

    Tensors under 1 KiB (shape constants, scalars) stay inline. The model is
    copied, so ``model`` keeps its inline weights. Sets the IR version
    onnxruntime 1.31 accepts. Returns the data file's path.
    """
    path = Path(path)
    data_path = path.with_name(path.name + ".data")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.ir_version = IR_VERSION
    with open(data_path, "wb") as f:
        for t in m.graph.initializer:
            if _nbytes(t) < _INLINE_BELOW:
                continue
            if not t.HasField("raw_data"):  # typed fields (float_data, ...) become raw bytes
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
            f.write(b"\0" * (-f.tell() % _ALIGN))
            offset = f.tell()
            f.write(t.raw_data)
            set_external_data(t, data_path.name, offset, len(t.raw_data))
            t.ClearField("raw_data")
    onnx.save_model(m, str(path))
    return data_path


def example_models(*, tiny: bool = False) -> dict[str, onnx.ModelProto]:
    """The example pairs users link: FCN landscape 1x3x256x384 / portrait 1x3x384x256,
    transformer prompt AR-128 / token AR-1."""
    return {
        "fcn_landscape": build_fcn(256, 384, tiny=tiny),
        "fcn_portrait": build_fcn(384, 256, tiny=tiny),
        "transformer_ar128": build_transformer(128, tiny=tiny),
        "transformer_ar1": build_transformer(1, tiny=tiny),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the example models (FCN landscape/portrait, transformer AR-128/AR-1)."""
    ap = argparse.ArgumentParser(prog="python -m tests.models", description=main.__doc__)
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--tiny", action="store_true", help="few-hundred-KB variants")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in example_models(tiny=args.tiny).items():
        path = args.out / f"{name}.onnx"
        data = save_with_external_data(model, path)
        print(f"{path}  ({data.stat().st_size} bytes of external data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
