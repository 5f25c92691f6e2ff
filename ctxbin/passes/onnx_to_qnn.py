"""Lower an ``onnx``-namespace graph to a ``qnn``-namespace graph, spelled as
QNN DLC v4 files spell it (op types and params of the QNN IR backend).

Steps: static shapes for every tensor (:mod:`.shapes`), constant folding
(:mod:`.fold_constants`), BatchNorm folded into Conv (:mod:`.fold_batchnorm`),
Erf-GELU fused (:mod:`.fuse_gelu`), then one QNN op (or a short fixed
sequence) per ONNX op.

Layout (:mod:`.layout`): QNN's spatial ops (Conv2d, DepthWiseConv2d,
TransposeConv2d, Pool, Batchnorm, Resize*) take NHWC activations; Conv
weights become HWIO, TransposeConv2d weights ``[kh, kw, cin, cout]``. Each
4-D tensor is kept in the layout of the op that made it; a ``Transpose`` is
inserted only where an op needs the other layout (graph inputs stay NCHW as
declared, so the first spatial op gets a Transpose after the input; graph
outputs are transposed back). Layout-free ops (activations, elementwise,
Concat, Softmax, ReduceMean with keepdims, Slice, Transpose) work on whatever
layout their input has, with axes and constants remapped; shape ops
(Reshape, Flatten, Gather, MatMul, LayerNorm) get NCHW.

Compared with the vendor's converter (onnxruntime-qnn's QNN IR backend) on the
same models, the differences are: ctxbin keeps ``Relu`` → ``Clip`` as two
``Neuron`` nodes (the vendor merges them); it keeps a model's ``Reshape`` in
front of a ``FullyConnected`` (the vendor drops it when it made the
FullyConnected from MatMul + Add, since FullyConnected flattens its input
anyway); node order may differ where the ONNX graph allows several
topological orders. Standalone ``Erf`` is not lowered (the vendor runs it on
the CPU instead).

Unsupported ops, and supported ops with settings QNN cannot express, raise
:class:`~ctxbin.errors.UnsupportedOpError` listing all of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Callable

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import DType, Graph, Node, Tensor, TensorKind
from ..runtime.emulator.ops.resize import COORD_MODES, NEAREST_MODES, source_coords
from ..runtime.emulator.primitives import nearest_indices, same_pads
from ..weights import Blob
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .fuse_gelu import fuse_gelu
from .layout import (
    TO_NCHW,
    TO_NHWC,
    nhwc_axis,
    nhwc_shape,
    static_to_nhwc,
    through_nhwc,
)
from .rewrite import consumers, rebuild
from .shapes import infer_shapes

__all__ = ["ELTWISE_BINARY", "ELTWISE_UNARY", "NEURON", "PACKAGE", "lower", "supported_ops"]

#: The op package of every node.
PACKAGE = "qti.aisw"
#: ``Neuron`` ``operation`` codes (as the QNN IR backend writes them).
NEURON = {"Gelu": 1, "Relu": 4, "Clip": 5, "Sigmoid": 6, "Tanh": 8}
#: ``Eltwise_Binary`` ``operation`` codes.
ELTWISE_BINARY = {"Add": 0, "Div": 2, "Mul": 13, "Pow": 16, "Sub": 18}
#: ``Eltwise_Unary`` ``operation`` codes.
ELTWISE_UNARY = {"Sqrt": 15}
_FLT_MAX = float(np.finfo(np.float32).max)
_BACKEND = "ONNX→QNN lowering"


class _Unsupported(Exception):
    """One node cannot be lowered; the message names the op and the setting."""


def _u32(values: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def _norm_axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise _Unsupported(f"{what}(axis={axis} out of range for rank {rank})")
    return axis % rank


class _Lowering:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.src: Mapping[str, Tensor] = graph.tensors
        self.graph_outputs = {t.name for t in graph.outputs}
        self.readers = consumers(graph.nodes)
        self.tensors: dict[str, Tensor] = {t.name: t for t in graph.inputs}
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        #: onnx tensor -> (lowered name, kept in NHWC)
        self.where: dict[str, tuple[str, bool]] = {t.name: (t.name, False) for t in graph.inputs}
        #: (onnx tensor, want NHWC) -> lowered name of that layout's copy
        self.views: dict[tuple[str, bool], str] = {}
        #: (onnx static tensor, transform tag) -> lowered static name
        self.derived: dict[tuple[str, str], str] = {}
        self.absorbed: set[int] = set()  # nodes folded into an earlier one (MatMul + Add)

    # ------------------------------------------------------------ naming
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors or name in self.src:
            name, i = f"{base}_{i}", i + 1
        return name

    def node_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.node_names:
            name, i = f"{base}_{i}", i + 1
        self.node_names.add(name)
        return name

    # ------------------------------------------------------------ tensors
    def shape(self, x: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.src[x].shape)  # type: ignore[arg-type]

    def is_static(self, x: str) -> bool:
        t = self.src.get(x)
        return t is not None and t.data is not None

    def array(self, x: str, what: str) -> np.ndarray:
        if not self.is_static(x):
            raise _Unsupported(f"{what}(dynamic {x!r})")
        return self.src[x].numpy()

    def add_static(self, name: str, arr: np.ndarray) -> str:
        a = np.ascontiguousarray(arr)
        if a.ndim == 0:  # QNN tensors have rank >= 1
            a = a.reshape(1)
        self.tensors[name] = Tensor(name, DType.from_numpy(a.dtype), a.shape, TensorKind.STATIC, data=Blob.from_array(a))
        return name

    def weight(self, x: str, tag: str = "", fn: Callable[[np.ndarray], np.ndarray] | None = None,
               keep_name: bool = False) -> str:
        """A static tensor as lowered: as it is (same blob), or transformed by ``fn``
        (cached per ``tag``; named ``<x>_<tag>`` unless ``keep_name``)."""
        key = (x, tag)
        if key in self.derived:
            return self.derived[key]
        t = self.src[x]
        if fn is None:
            shape = t.shape if t.shape else (1,)
            self.tensors[x] = Tensor(x, t.dtype, shape, TensorKind.STATIC, t.encoding, t.data)
            name = x
        else:
            taken = keep_name and x not in self.tensors
            name = self.add_static(x if taken else self.fresh(f"{x}_{tag}"), fn(t.numpy()))
        self.derived[key] = name
        return name

    def value(self, x: str, nhwc: bool = False) -> str:
        """The lowered name of ``x`` in the wanted layout (plain = as ONNX has it)."""
        if self.is_static(x):
            return self.weight(x, "nhwc", static_to_nhwc) if nhwc else self.weight(x)
        name, is_nhwc = self.where[x]
        if is_nhwc == nhwc:
            return name
        key = (x, nhwc)
        if key not in self.views:
            src = self.tensors[name]
            if nhwc:
                out = self.fresh(f"{x}_nhwc")
                perm, shape = TO_NHWC, nhwc_shape(src.shape)  # type: ignore[arg-type]
            else:
                out = x if x in self.graph_outputs else self.fresh(f"{x}_nchw")
                perm, shape = TO_NCHW, self.shape(x)
            self.declare_raw(out, src.dtype, shape)
            self.emit("Transpose", f"{x}_to_{'nhwc' if nhwc else 'nchw'}", [name], [out], perm=_u32(perm))
            self.views[key] = out
        return self.views[key]

    def layout(self, x: str) -> bool:
        """Whether ``x`` is (currently) kept in NHWC; statics count as plain."""
        return not self.is_static(x) and self.where[x][1]

    def declare_raw(self, name: str, dtype: DType, shape: Sequence[int]) -> str:
        kind = TensorKind.OUTPUT if name in self.graph_outputs else TensorKind.NATIVE
        self.tensors[name] = Tensor(name, dtype, tuple(int(d) for d in shape), kind)
        return name

    def declare(self, x: str, nhwc: bool = False, shape: Sequence[int] | None = None) -> str:
        """Declare the lowered form of ONNX output ``x``; its physical shape is
        ``shape`` or derived from the ONNX shape and the layout."""
        t = self.src[x]
        logical = self.shape(x)
        if shape is None:
            shape = nhwc_shape(logical) if nhwc else logical
        name = self.fresh(f"{x}_nhwc") if nhwc and x in self.graph_outputs else x
        self.declare_raw(name, t.dtype, shape)
        self.where[x] = (name, nhwc)
        return name

    def temp(self, base: str, dtype: DType, shape: Sequence[int]) -> str:
        return self.declare_raw(self.fresh(base), dtype, shape)

    def emit(self, op: str, name: str, inputs: Sequence[str], outputs: Sequence[str], **params: object) -> None:
        self.nodes.append(Node(self.node_name(name), op, "qnn", tuple(inputs), tuple(outputs), dict(params), PACKAGE))

    def alias(self, out: str, x: str) -> None:
        """``out`` is ``x`` (Identity, Dropout)."""
        if out in self.graph_outputs:  # a graph output must be produced under its own name
            self.emit("Reshape", out, [self.value(x)], [self.declare(out)])
        elif self.is_static(x):
            self.where[out] = (self.weight(x), False)
        else:
            self.where[out] = self.where[x]
            for nhwc in (False, True):
                if (x, nhwc) in self.views:
                    self.views[(out, nhwc)] = self.views[(x, nhwc)]

    # ------------------------------------------------------------ driver
    def run(self) -> Graph:
        missing = sorted({n.op_type for n in self.g.nodes if n.op_type not in _HANDLERS or n.domain not in ("", "ai.onnx")})
        if missing:
            raise UnsupportedOpError(self.g.name, missing, backend=_BACKEND)
        problems: list[str] = []
        poisoned: set[str] = set()
        for n in self.g.nodes:
            if id(n) in self.absorbed:
                continue
            if poisoned.intersection(n.inputs):
                poisoned.update(n.outputs)
                continue
            try:
                _HANDLERS[n.op_type](self, n)
            except _Unsupported as e:
                problems.append(str(e))
                poisoned.update(n.outputs)
        if problems:
            raise UnsupportedOpError(self.g.name, sorted(set(problems)), backend=_BACKEND)
        outputs = []
        for t in self.g.outputs:
            name = self.value(t.name)
            if name != t.name:  # a graph input given back as an output
                self.emit("Reshape", t.name, [name], [self.declare(t.name)])
            outputs.append(self.tensors[t.name])
        nodes = _drop_redundant_reshapes(self.nodes, {t.name for t in outputs})
        return rebuild(Graph(
            name=self.g.name,
            inputs=tuple(self.tensors[t.name] for t in self.g.inputs),
            outputs=tuple(outputs),
            nodes=tuple(nodes),
            tensors=self.tensors,
            metadata={k: v for k, v in self.g.metadata.items() if not k.startswith("onnx.")},
        ), nodes, self.tensors)

    # ------------------------------------------------------------ ops
    def base(self, n: Node) -> str:
        return n.name or n.outputs[0]

    def spatial(self, n: Node, kernel: Sequence[int]) -> tuple[list[int], list[int], np.ndarray]:
        """(strides, dilations, pad_amount [[top, bottom], [left, right]]) of a 2-D window op."""
        x = self.shape(n.inputs[0])
        strides = [int(s) for s in n.attrs.get("strides", (1, 1))]
        dilations = [int(d) for d in n.attrs.get("dilations", (1, 1))]
        auto = n.attrs.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            p = [int(v) for v in n.attrs.get("pads", (0, 0, 0, 0))]
            pads = [[p[0], p[2]], [p[1], p[3]]]
        elif auto == "VALID":
            pads = [[0, 0], [0, 0]]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [list(same_pads(size, (k - 1) * d + 1, s, auto == "SAME_UPPER"))
                    for size, k, s, d in zip(x[2:], kernel, strides, dilations)]
        else:
            raise _Unsupported(f"{n.op_type}(auto_pad={auto!r})")
        return strides, dilations, _u32(pads)

    def need_4d(self, n: Node) -> None:
        rank = len(self.shape(n.inputs[0]))
        if rank != 4:
            raise _Unsupported(f"{n.op_type}(rank-{rank} input; only 2-D spatial is lowered)")

    def conv(self, n: Node) -> None:
        self.need_4d(n)
        w = self.array(n.inputs[1], "Conv")
        group = int(n.attrs.get("group", 1))
        strides, dilations, pads = self.spatial(n, w.shape[2:])
        cin = self.shape(n.inputs[0])[1]
        inputs = [self.value(n.inputs[0], nhwc=True), self.weight(n.inputs[1], "hwio", lambda a: a.transpose(2, 3, 1, 0), keep_name=True)]
        if len(n.inputs) > 2 and n.inputs[2]:
            inputs.append(self.value(n.inputs[2]))
        out = self.declare(n.outputs[0], nhwc=True)
        if group > 1 and group == cin and w.shape[1] == 1:
            self.emit("DepthWiseConv2d", self.base(n), inputs, [out], dilation=_u32(dilations), pad_amount=pads,
                      stride=_u32(strides))
        else:
            self.emit("Conv2d", self.base(n), inputs, [out], dilation=_u32(dilations), group=group, pad_amount=pads,
                      reuse_sparse_indices=False, stride=_u32(strides))

    def conv_transpose(self, n: Node) -> None:
        self.need_4d(n)
        w = self.array(n.inputs[1], "ConvTranspose")
        group = int(n.attrs.get("group", 1))
        for key, ok in (("group", group == 1), ("output_shape", "output_shape" not in n.attrs),
                        ("dilations", all(int(d) == 1 for d in n.attrs.get("dilations", (1, 1)))),
                        ("auto_pad", n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID"))):
            if not ok:
                raise _Unsupported(f"ConvTranspose({key}={n.attrs[key]!r})")
        strides, _, pads = self.spatial(n, w.shape[2:])
        inputs = [self.value(n.inputs[0], nhwc=True), self.weight(n.inputs[1], "hwio", lambda a: a.transpose(2, 3, 0, 1), keep_name=True)]
        if len(n.inputs) > 2 and n.inputs[2]:
            inputs.append(self.value(n.inputs[2]))
        self.emit("TransposeConv2d", self.base(n), inputs, [self.declare(n.outputs[0], nhwc=True)], group=group,
                  output_padding=_u32(n.attrs.get("output_padding", (0, 0))), pad_amount=pads, stride=_u32(strides))

    def batchnorm(self, n: Node) -> None:
        rank = len(self.shape(n.inputs[0]))
        if rank not in (2, 4) or n.attrs.get("training_mode", 0) or len([x for x in n.outputs if x]) != 1:
            raise _Unsupported(f"BatchNormalization(rank {rank}, training outputs)")
        gamma, beta, mean, var = (np.asarray(self.array(x, "BatchNormalization"), np.float64) for x in n.inputs[1:5])
        scale = gamma / np.sqrt(var + float(n.attrs.get("epsilon", 1e-5)))
        base = self.base(n)
        s = self.add_static(self.fresh(f"{base}_bn_fused_scale"), scale.astype(np.float32))
        b = self.add_static(self.fresh(f"{base}_bn_fused_bias"), (beta - mean * scale).astype(np.float32))
        nhwc = rank == 4
        self.emit("Batchnorm", base, [self.value(n.inputs[0], nhwc), s, b], [self.declare(n.outputs[0], nhwc)])

    def same_layout(self, n: Node, op: str, **params: object) -> None:
        """A one-input op that works on either layout (activations, unary math)."""
        x = n.inputs[0]
        nhwc = self.layout(x)
        self.emit(op, self.base(n), [self.value(x, nhwc)], [self.declare(n.outputs[0], nhwc)], **params)

    def neuron(self, n: Node) -> None:
        self.same_layout(n, "Neuron", operation=NEURON[n.op_type])

    def clip(self, n: Node) -> None:
        bounds = [float(n.attrs.get("min", -_FLT_MAX)), float(n.attrs.get("max", _FLT_MAX))]
        for i, x in enumerate(n.inputs[1:3]):
            if x:
                bounds[i] = float(np.asarray(self.array(x, "Clip")).reshape(()))
        self.same_layout(n, "Neuron", operation=NEURON["Clip"], min_value=bounds[0], max_value=bounds[1])

    def leaky_relu(self, n: Node) -> None:
        x = n.inputs[0]
        nhwc = self.layout(x)
        alpha = self.add_static(self.fresh(f"{self.base(n)}_alpha"),
                                np.array([n.attrs.get("alpha", 0.01)], self.src[x].dtype.numpy))
        self.emit("Prelu", self.base(n), [self.value(x, nhwc), alpha], [self.declare(n.outputs[0], nhwc)])

    def unary(self, n: Node) -> None:
        self.same_layout(n, "Eltwise_Unary", operation=ELTWISE_UNARY[n.op_type])

    def gelu(self, n: Node) -> None:
        # The vendor lowers both the exact and the tanh-approximated GELU to
        # QNN's one GELU activation; so does ctxbin.
        self.same_layout(n, "Neuron", operation=NEURON["Gelu"])

    def broadcast_layout(self, n: Node, inputs: Sequence[str]) -> bool:
        """NHWC when the output is 4-D, an input already is NHWC and every
        non-constant input is 4-D (constants get transposed, activations don't)."""
        dynamic = [x for x in inputs if x and not self.is_static(x)]
        return (
            len(self.shape(n.outputs[0])) == 4
            and any(self.layout(x) for x in dynamic)
            and all(len(self.shape(x)) == 4 for x in dynamic)
        )

    def binary(self, n: Node) -> None:
        nhwc = self.broadcast_layout(n, n.inputs)
        inputs = [self.value(x, nhwc) for x in n.inputs]
        self.emit("Eltwise_Binary", self.base(n), inputs, [self.declare(n.outputs[0], nhwc)],
                  operation=ELTWISE_BINARY[n.op_type])

    def concat(self, n: Node) -> None:
        nhwc = self.broadcast_layout(n, n.inputs)
        axis = _norm_axis(int(n.attrs["axis"]), len(self.shape(n.outputs[0])), "Concat")
        self.emit("Concat", self.base(n), [self.value(x, nhwc) for x in n.inputs if x],
                  [self.declare(n.outputs[0], nhwc)], axis=nhwc_axis(axis) if nhwc else axis)

    def pool(self, n: Node) -> None:
        self.need_4d(n)
        if n.op_type.startswith("Global"):
            hw = self.shape(n.inputs[0])[2:]
            kernel, strides, pads = list(hw), list(hw), _u32([[0, 0], [0, 0]])
        else:
            kernel = [int(k) for k in n.attrs["kernel_shape"]]
            for key, default in (("ceil_mode", 0), ("storage_order", 0)):
                if int(n.attrs.get(key, default)) != default:
                    raise _Unsupported(f"{n.op_type}({key}={n.attrs[key]})")
            if len([x for x in n.outputs if x]) != 1:
                raise _Unsupported(f"{n.op_type}(indices output)")
            strides, dilations, pads = self.spatial(n, kernel)
            if any(d != 1 for d in dilations):
                raise _Unsupported(f"{n.op_type}(dilations={tuple(dilations)})")
        params: dict[str, object] = {"filter_size": _u32(kernel), "pad_amount": pads, "stride": _u32(strides)}
        if "Max" in n.op_type:
            params["pool_type"] = "PoolMax2d"
        else:
            params["pool_type"] = "PoolAvg2d"
            params["count_pad_for_edges"] = bool(n.attrs.get("count_include_pad", 0))
        self.emit("Pool", self.base(n), [self.value(n.inputs[0], nhwc=True)], [self.declare(n.outputs[0], nhwc=True)],
                  **params)

    def matmul(self, n: Node) -> None:
        a, b = n.inputs
        ra, rb = len(self.shape(a)), len(self.shape(b))
        if ra < 2 or rb < 2:
            raise _Unsupported("MatMul(rank-1 operand)")
        if rb == 2 and self.is_static(b) and not self.is_static(a):
            bias, out = self.bias_add(n.outputs[0], self.shape(b)[1])
            w = self.weight(b, "transpose", lambda v: v.T)
            self.fully_connected(self.base(n), a, w, bias, out)
            return
        self.emit("MatMul", self.base(n), [self.value(a), self.value(b)], [self.declare(n.outputs[0])],
                  transpose_in0=False, transpose_in1=False)

    def bias_add(self, y: str, width: int) -> tuple[str | None, str]:
        """(bias, output) when ``y``'s only reader adds a constant vector of ``width``
        to it (that Add is absorbed into FullyConnected, as the vendor does), else (None, y)."""
        readers = self.readers.get(y, [])
        if len(readers) != 1 or readers[0].op_type != "Add" or y in self.graph_outputs:
            return None, y
        add = readers[0]
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        if not self.is_static(other) or self.shape(other)[-1:] != (width,) or math.prod(self.shape(other)) != width:
            return None, y
        if self.shape(add.outputs[0]) != self.shape(y):
            return None, y
        self.absorbed.add(id(add))
        bias = self.weight(other) if len(self.shape(other)) == 1 else self.weight(other, "bias", lambda v: v.reshape(-1))
        return bias, add.outputs[0]

    def fully_connected(self, name: str, a: str, w: str, bias: str | None, out: str) -> None:
        """FullyConnected over ``a`` flattened to 2-D; a Reshape restores the ONNX output shape."""
        inputs = [self.value(a), w] + ([bias] if bias else [])
        shape = self.shape(out)
        if len(shape) == 2:
            self.emit("FullyConnected", name, inputs, [self.declare(out)])
            return
        flat = self.temp(f"{out}_fc_out", self.src[out].dtype, (math.prod(shape[:-1]), shape[-1]))
        self.emit("FullyConnected", name, inputs, [flat])
        self.emit("Reshape", f"{name}_reshape", [flat], [self.declare(out)])

    def gemm(self, n: Node) -> None:
        a, b = n.inputs[0], n.inputs[1]
        c = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else ""
        alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
        trans_b = bool(n.attrs.get("transB", 0))
        self.array(b, "Gemm")
        if trans_b and alpha == 1.0:
            w = self.weight(b)
        else:
            tag = "transpose" if alpha == 1.0 else f"scaled_{alpha:g}"
            w = self.weight(b, tag, lambda v: (v if trans_b else v.T) * np.asarray(alpha, v.dtype))
        x = self.value(a)
        if n.attrs.get("transA", 0):
            xt = self.temp(f"{a}_transposed", self.src[a].dtype, self.shape(a)[::-1])
            self.emit("Transpose", f"{self.base(n)}_transpose_a", [x], [xt], perm=_u32((1, 0)))
            x = xt
        out = n.outputs[0]
        m, nn = self.shape(out)
        bias = None
        if c and self.is_static(c) and math.prod(self.shape(c)) == nn and (len(self.shape(c)) < 2 or self.shape(c)[0] == 1):
            bias = self.weight(c) if beta == 1.0 and len(self.shape(c)) == 1 else \
                self.weight(c, f"bias_{beta:g}", lambda v: (v * np.asarray(beta, v.dtype)).reshape(-1))
            c = ""
        if not c:
            inputs = [x, w] + ([bias] if bias else [])
            self.emit("FullyConnected", self.base(n), inputs, [self.declare(out)])
            return
        if beta != 1.0 and not self.is_static(c):
            raise _Unsupported(f"Gemm(beta={beta:g} with a dynamic C)")
        fc = self.temp(f"{out}_fc_out", self.src[out].dtype, (m, nn))
        self.emit("FullyConnected", self.base(n), [x, w], [fc])
        cc = self.weight(c, f"beta_{beta:g}", lambda v: v * np.asarray(beta, v.dtype)) if self.is_static(c) and beta != 1.0 \
            else self.value(c)
        self.emit("Eltwise_Binary", f"{self.base(n)}_add_c", [fc, cc], [self.declare(out)], operation=ELTWISE_BINARY["Add"])

    def softmax(self, n: Node) -> None:
        x = n.inputs[0]
        rank = len(self.shape(x))
        opset = self.g.opsets.get("", 13)
        axis = _norm_axis(int(n.attrs.get("axis", -1 if opset >= 13 else 1)), rank, "Softmax")
        if opset < 13 and axis != rank - 1:
            raise _Unsupported(f"Softmax(opset {opset} with axis {axis} != last: flattening semantics)")
        nhwc = self.layout(x)
        phys = nhwc_axis(axis) if nhwc else axis
        xin = self.value(x, nhwc)
        if phys == rank - 1:
            self.emit("Softmax", self.base(n), [xin], [self.declare(n.outputs[0], nhwc)], axis=phys)
            return
        # QNN's HTP takes Softmax over the last axis: swap the axis there and back (as the vendor does).
        perm = list(range(rank))
        perm[phys], perm[-1] = perm[-1], perm[phys]
        shape = [self.tensors[xin].shape[p] for p in perm]
        dtype = self.src[x].dtype
        t_in = self.temp(f"{n.outputs[0]}_in_transposed", dtype, shape)
        t_out = self.temp(f"{n.outputs[0]}_transposed", dtype, shape)
        self.emit("Transpose", f"{self.base(n)}_pre", [xin], [t_in], perm=_u32(perm))
        self.emit("Softmax", self.base(n), [t_in], [t_out], axis=rank - 1)
        self.emit("Transpose", f"{self.base(n)}_post", [t_out], [self.declare(n.outputs[0], nhwc)], perm=_u32(perm))

    def layernorm(self, n: Node) -> None:
        x = n.inputs[0]
        rank = len(self.shape(x))
        if len([y for y in n.outputs if y]) != 1 or len(n.outputs) > 1 and any(n.outputs[1:]):
            raise _Unsupported("LayerNormalization(mean / inv_std_dev outputs)")
        axis = _norm_axis(int(n.attrs.get("axis", -1)), rank, "LayerNormalization")
        inputs = [self.value(x)] + [self.value(y) for y in n.inputs[1:3] if y]
        self.emit("LayerNorm", self.base(n), inputs, [self.declare(n.outputs[0])],
                  axes=_u32(range(axis, rank)), epsilon=float(n.attrs.get("epsilon", 1e-5)))

    def reduce_mean(self, n: Node) -> None:
        x = n.inputs[0]
        rank = len(self.shape(x))
        if len(n.inputs) > 1 and n.inputs[1]:
            axes = [int(v) for v in np.asarray(self.array(n.inputs[1], "ReduceMean")).reshape(-1)]
        else:
            axes = [int(v) for v in n.attrs.get("axes", ())]
        if not axes:
            if n.attrs.get("noop_with_empty_axes", 0):
                self.alias(n.outputs[0], x)
                return
            axes = list(range(rank))
        axes = sorted({_norm_axis(a, rank, "ReduceMean") for a in axes})
        keep = bool(n.attrs.get("keepdims", 1))
        nhwc = self.layout(x) and keep
        if nhwc:
            axes = sorted(nhwc_axis(a) for a in axes)
        self.emit("Reduce", self.base(n), [self.value(x, nhwc)], [self.declare(n.outputs[0], nhwc)],
                  axes=_u32(axes), keep_dims=keep, reduce_type="ReduceMean")

    def gather(self, n: Node) -> None:
        data, idx = n.inputs
        rank = len(self.shape(data))
        axis = _norm_axis(int(n.attrs.get("axis", 0)), rank, "Gather")
        dim = self.shape(data)[axis]
        if self.is_static(idx):
            i32 = self.weight(idx, "int32", lambda v: np.where(v < 0, v + dim, v).astype(np.int32))
        elif self.src[idx].dtype == DType.INT32:
            i32 = self.value(idx)
        else:  # HTP has no 64-bit integers: the vendor casts the indices first, so does ctxbin
            key = (idx, "int32")
            if key not in self.derived:
                out = self.temp(f"{idx}_int32", DType.INT32, self.shape(idx))
                self.emit("Cast", f"{idx}_cast", [self.value(idx)], [out])
                self.derived[key] = out
            i32 = self.derived[key]
        self.emit("Gather", self.base(n), [self.value(data), i32], [self.declare(n.outputs[0])],
                  axis=np.array(axis, np.int32))  # HTP validates Gather axis as INT32

    def reshape(self, n: Node) -> None:
        self.emit("Reshape", self.base(n), [self.value(n.inputs[0])], [self.declare(n.outputs[0])])

    def transpose(self, n: Node) -> None:
        x = n.inputs[0]
        rank = len(self.shape(x))
        perm = tuple(int(p) for p in n.attrs.get("perm", range(rank - 1, -1, -1)))
        nhwc = self.layout(x)
        phys = through_nhwc(perm) if nhwc else perm
        if phys == tuple(range(rank)):  # undoes the NHWC layout: the physical tensor is the result
            if n.outputs[0] in self.graph_outputs:
                self.emit("Reshape", self.base(n), [self.value(x, nhwc)], [self.declare(n.outputs[0])])
            else:
                self.where[n.outputs[0]] = (self.value(x, nhwc), False)
            return
        self.emit("Transpose", self.base(n), [self.value(x, nhwc)], [self.declare(n.outputs[0])], perm=_u32(phys))

    def slice(self, n: Node) -> None:
        x = n.inputs[0]
        shape = self.shape(x)
        rank = len(shape)
        if len(n.inputs) > 1:
            operands = [np.asarray(self.array(v, "Slice")).reshape(-1).tolist() if v else None for v in n.inputs[1:5]]
            operands += [None] * (4 - len(operands))
            starts, ends, axes, steps = operands
        else:  # opset < 10: attributes
            starts, ends, axes, steps = (list(n.attrs.get(k, ())) or None for k in ("starts", "ends", "axes", "steps"))
        axes = axes or list(range(len(starts)))  # type: ignore[arg-type]
        steps = steps or [1] * len(axes)
        ranges = [[0, d, 1] for d in shape]
        for start, end, axis, step in zip(starts, ends, axes, steps):  # type: ignore[arg-type]
            if step <= 0:
                raise _Unsupported(f"Slice(step={step})")
            a = _norm_axis(int(axis), rank, "Slice")
            b, e, s = slice(int(start), int(end), int(step)).indices(shape[a])
            ranges[a] = [b, max(b, e), s]
        nhwc = self.layout(x)
        if nhwc:
            ranges = [ranges[i] for i in TO_NHWC]
        self.emit("StridedSlice", self.base(n), [self.value(x, nhwc)], [self.declare(n.outputs[0], nhwc)],
                  ranges=np.asarray(ranges, np.int32))

    def resize(self, n: Node) -> None:
        x = n.inputs[0]
        self.need_4d(n)
        src, dst = self.shape(x), self.shape(n.outputs[0])
        if src[:2] != dst[:2]:
            raise _Unsupported("Resize(of the batch or channel axis)")
        mode = n.attrs.get("mode", "nearest")
        opset = self.g.opsets.get("", 13)
        ctm = n.attrs.get("coordinate_transformation_mode", "half_pixel" if opset >= 11 else "asymmetric")
        scales = None
        if len(n.inputs) > 2 and n.inputs[2] and math.prod(self.shape(n.inputs[2])) == 4:
            scales = [float(s) for s in np.asarray(self.array(n.inputs[2], "Resize")).reshape(-1)[2:]]
        if n.attrs.get("antialias", 0) and any(o < i for i, o in zip(src[2:], dst[2:])):
            raise _Unsupported("Resize(antialias downscaling)")
        if mode == "nearest":
            choice = _nearest_choice(src[2:], dst[2:], scales, ctm, n.attrs.get("nearest_mode", "round_prefer_floor"))
            op = "ResizeNearestNeighbor"
        elif mode == "linear":
            choice = _linear_choice(src[2:], dst[2:], scales, ctm)
            op = "ResizeBilinear"
        else:
            choice = None
        if choice is None:
            raise _Unsupported(f"Resize(mode={mode!r}, coordinate_transformation_mode={ctm!r})")
        align_corners, half_pixel = choice
        self.emit(op, self.base(n), [self.value(x, nhwc=True)], [self.declare(n.outputs[0], nhwc=True)],
                  align_corners=align_corners, half_pixel_centers=half_pixel)

    def identity(self, n: Node) -> None:
        if any(n.outputs[1:]) and any(self.readers.get(y) or y in self.graph_outputs for y in n.outputs[1:] if y):
            raise _Unsupported(f"{n.op_type}(mask output)")
        self.alias(n.outputs[0], n.inputs[0])

    def cast(self, n: Node) -> None:
        self.same_layout(n, "Cast")


def _drop_redundant_reshapes(nodes: list[Node], keep: set[str]) -> list[Node]:
    """A Reshape feeding only another Reshape is dropped (the vendor's converter
    merges them too: FullyConnected's Reshape back to N-D, then the model's own)."""
    readers = consumers(nodes)
    out: list[Node] = []
    rewired: dict[str, str] = {}  # dropped Reshape output -> its input
    for n in nodes:
        n = dataclasses.replace(n, inputs=tuple(rewired.get(x, x) for x in n.inputs)) if rewired.keys() & set(n.inputs) else n
        rs = readers.get(n.outputs[0], []) if n.op_type == "Reshape" else []
        if len(rs) == 1 and n.outputs[0] not in keep and rs[0].op_type == "Reshape":
            rewired[n.outputs[0]] = n.inputs[0]
            continue
        out.append(n)
    return out


def _nearest_choice(src: Sequence[int], dst: Sequence[int], scales: list[float] | None, ctm: str,
                    rounding: str) -> tuple[bool, bool] | None:
    """(align_corners, half_pixel_centers) whose source pixels equal ONNX's on both axes, if any."""
    rnd = NEAREST_MODES.get(rounding)
    if rnd is None or ctm not in COORD_MODES or ctm == "tf_crop_and_resize":
        return None
    wanted = [np.clip(rnd(source_coords(ctm, a, b, scales[i] if scales else b / a)), 0, a - 1)
              for i, (a, b) in enumerate(zip(src, dst))]
    preferred = {"align_corners": (True, False), "asymmetric": (False, False)}.get(ctm, (False, True))
    for choice in (preferred, (False, True), (False, False), (True, False)):
        if all(np.array_equal(nearest_indices(b, a, *choice), w) for a, b, w in zip(src, dst, wanted)):
            return choice
    return None


def _linear_choice(src: Sequence[int], dst: Sequence[int], scales: list[float] | None,
                   ctm: str) -> tuple[bool, bool] | None:
    """(align_corners, half_pixel_centers) of QNN's ResizeBilinear for ONNX's linear mode."""
    # QNN derives its scale from the sizes; ONNX uses given scales as they are.
    if scales and any(s != b / a for s, a, b in zip(scales, src, dst)) and ctm != "align_corners":
        return None
    if ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and all(b > 1 for b in dst)):
        return (False, True)
    if ctm == "align_corners":
        return (True, False)
    if ctm == "asymmetric":
        return (False, False)
    return None


_HANDLERS: dict[str, Callable[[_Lowering, Node], None]] = {
    "Conv": _Lowering.conv,
    "ConvTranspose": _Lowering.conv_transpose,
    "BatchNormalization": _Lowering.batchnorm,
    "Relu": _Lowering.neuron,
    "Sigmoid": _Lowering.neuron,
    "Tanh": _Lowering.neuron,
    "Gelu": _Lowering.gelu,
    "Clip": _Lowering.clip,
    "LeakyRelu": _Lowering.leaky_relu,
    "Sqrt": _Lowering.unary,
    "MaxPool": _Lowering.pool,
    "AveragePool": _Lowering.pool,
    "GlobalAveragePool": _Lowering.pool,
    "GlobalMaxPool": _Lowering.pool,
    "Add": _Lowering.binary,
    "Sub": _Lowering.binary,
    "Mul": _Lowering.binary,
    "Div": _Lowering.binary,
    "Pow": _Lowering.binary,
    "MatMul": _Lowering.matmul,
    "Gemm": _Lowering.gemm,
    "Softmax": _Lowering.softmax,
    "LayerNormalization": _Lowering.layernorm,
    "ReduceMean": _Lowering.reduce_mean,
    "Gather": _Lowering.gather,
    "Reshape": _Lowering.reshape,
    "Flatten": _Lowering.reshape,
    "Transpose": _Lowering.transpose,
    "Slice": _Lowering.slice,
    "Concat": _Lowering.concat,
    "Resize": _Lowering.resize,
    "Dropout": _Lowering.identity,
    "Identity": _Lowering.identity,
    "Cast": _Lowering.cast,
}


def supported_ops() -> list[str]:
    """ONNX op types :func:`lower` handles (``Constant`` and constant subgraphs fold away)."""
    return sorted(set(_HANDLERS) | {"Constant"})


def lower(graph: Graph) -> Graph:
    """The ``qnn``-namespace form of an ``onnx``-namespace ``graph`` (see module doc).

    Graph inputs and outputs keep their ONNX names, shapes and element types;
    every tensor of the result has a dtype and a static shape; weights that
    change layout are new blobs, the others share the source's blobs.

    Raises :class:`~ctxbin.errors.UnsupportedOpError` listing every op (or op
    setting) that cannot be lowered, and :class:`~ctxbin.errors.ShapeError`
    when shapes are not static.
    """
    foreign = sorted({f"{n.namespace}:{n.op_type}" for n in graph.nodes if n.namespace != "onnx"})
    if foreign:
        raise UnsupportedOpError(graph.name, foreign, backend=f"{_BACKEND} (onnx-namespace graphs only)")
    g = fuse_gelu(fold_batchnorm(fold_constants(infer_shapes(graph))))
    return _Lowering(g).run()
