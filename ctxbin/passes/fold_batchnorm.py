"""Fold inference-mode BatchNormalization into the Conv before it.

``BN(conv(x, W) + B) = conv(x, W * s) + (B - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)`` per output channel, as vendor converters do
(their fused weights are named ``ConvBnFusion_W_<weight>`` and
``ConvBnFusion_BN_B_<bn bias>``; ctxbin uses the same names). Folds only when
the Conv's output feeds nothing but the BatchNormalization and every
parameter is static; everything else is left as it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import DType, Graph, Node, Tensor, TensorKind
from ..weights import Blob
from .rewrite import consumers, rebuild

__all__ = ["fold_batchnorm"]


def _static(tensors: dict[str, Tensor], name: str) -> np.ndarray | None:
    t = tensors.get(name) if name else None
    if t is None or t.data is None or t.dtype != DType.FLOAT32:
        return None
    return np.asarray(t.numpy(), np.float64)


def _fold(conv: Node, bn: Node, tensors: dict[str, Tensor]) -> Node | None:
    if len(conv.inputs) < 2 or len(bn.inputs) != 5 or bn.attrs.get("training_mode", 0):
        return None
    if len([x for x in bn.outputs if x]) != 1:
        return None
    w = _static(tensors, conv.inputs[1])
    params = [_static(tensors, x) for x in bn.inputs[1:]]
    if w is None or any(p is None for p in params):
        return None
    gamma, beta, mean, var = params  # type: ignore[misc]
    cout = w.shape[0]
    if any(p.shape != (cout,) for p in params):  # type: ignore[union-attr]
        return None
    bias = _static(tensors, conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(cout)
    if bias is None or bias.shape != (cout,):
        return None
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))  # type: ignore[operator]
    w_name = f"ConvBnFusion_W_{conv.inputs[1]}"
    b_name = f"ConvBnFusion_BN_B_{bn.inputs[2]}"
    for name, arr in (
        (w_name, w * scale.reshape((cout,) + (1,) * (w.ndim - 1))),
        (b_name, (bias - mean) * scale + beta),
    ):
        a = arr.astype(np.float32)
        tensors[name] = Tensor(name, DType.FLOAT32, a.shape, TensorKind.STATIC, data=Blob.from_array(a))
    return dataclasses.replace(conv, inputs=(conv.inputs[0], w_name, b_name), outputs=(bn.outputs[0],))


def fold_batchnorm(graph: Graph) -> Graph:
    """``graph`` with each foldable Conv → BatchNormalization pair as one Conv."""
    tensors = dict(graph.tensors)
    readers = consumers(graph.nodes)
    keep = {t.name for t in graph.outputs}
    producer = {x: n for n in graph.nodes for x in n.outputs if x}
    replaced: dict[int, Node] = {}  # id(conv) -> fused conv
    dropped: set[int] = set()  # id(bn)
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        conv = producer.get(bn.inputs[0])
        if (
            conv is None
            or conv.op_type != "Conv"
            or id(conv) in replaced
            or bn.inputs[0] in keep
            or len(readers.get(bn.inputs[0], [])) != 1
        ):
            continue
        fused = _fold(conv, bn, tensors)
        if fused is not None:
            replaced[id(conv)] = fused
            dropped.add(id(bn))
    nodes = [replaced.get(id(n), n) for n in graph.nodes if id(n) not in dropped]
    return rebuild(graph, nodes, tensors)
