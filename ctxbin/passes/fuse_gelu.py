"""Recognise GELU spelled with Erf and fuse it into one ``Gelu`` node.

Exporters write ``0.5 * x * (1 + erf(x / sqrt(2)))`` as five nodes (Div or
Mul by 1/sqrt(2), Erf, Add 1, and two Muls in any of the usual orders). QNN
has GELU as one activation (and no Erf on HTP), so the vendor's toolchain
fuses this pattern; so does ctxbin. Intermediate results must feed only the
next node of the pattern and must not be graph outputs.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node
from .rewrite import consumers, rebuild

__all__ = ["fuse_gelu"]


class _Matcher:
    def __init__(self, graph: Graph) -> None:
        self.tensors = graph.tensors
        self.readers = consumers(graph.nodes)
        self.producer = {x: n for n in graph.nodes for x in n.outputs if x}
        self.keep = {t.name for t in graph.outputs}

    def const(self, name: str, value: float) -> bool:
        t = self.tensors.get(name)
        if t is None or t.data is None or t.dtype.numpy.kind != "f":
            return False
        a = np.asarray(t.numpy(), np.float64)
        return a.size == 1 and bool(np.isclose(a.reshape(()), value, rtol=1e-4, atol=0.0))

    def only_reader(self, tensor: str, op: str) -> Node | None:
        """The single ``op`` node reading ``tensor`` (an intermediate of the pattern)."""
        rs = self.readers.get(tensor, [])
        if tensor in self.keep or len(rs) != 1 or rs[0].op_type != op or rs[0].domain not in ("", "ai.onnx"):
            return None
        return rs[0]

    def other(self, node: Node, known: str) -> str | None:
        """The input of a two-input node that is not ``known``."""
        if len(node.inputs) != 2 or known not in node.inputs:
            return None
        a, b = node.inputs
        return b if a == known else a

    def match(self, erf: Node) -> tuple[str, list[Node]] | None:
        """(x, the pattern's nodes, last one last) for the GELU around ``erf``."""
        pre = self.producer.get(erf.inputs[0])
        if pre is None or self.only_reader(erf.inputs[0], "Erf") is not erf or len(pre.inputs) != 2:
            return None
        if pre.op_type == "Div" and self.const(pre.inputs[1], math.sqrt(2.0)) or pre.op_type == "Mul" and self.const(pre.inputs[1], 1 / math.sqrt(2.0)):
            x = pre.inputs[0]
        elif pre.op_type == "Mul" and self.const(pre.inputs[0], 1 / math.sqrt(2.0)):
            x = pre.inputs[1]
        else:
            return None
        add = self.only_reader(erf.outputs[0], "Add")
        if add is None or not self.const(self.other(add, erf.outputs[0]) or "", 1.0):
            return None
        mul = self.only_reader(add.outputs[0], "Mul")
        if mul is None:
            return None
        factor = self.other(mul, add.outputs[0])
        if factor == x:  # (x * (1 + erf)) * 0.5
            last = self.only_reader(mul.outputs[0], "Mul")
            if last is None or not self.const(self.other(last, mul.outputs[0]) or "", 0.5):
                return None
            return x, [pre, erf, add, mul, last]
        if factor is not None and self.const(factor, 0.5):  # x * ((1 + erf) * 0.5)
            last = self.only_reader(mul.outputs[0], "Mul")
            if last is None or self.other(last, mul.outputs[0]) != x:
                return None
            return x, [pre, erf, add, mul, last]
        half = self.producer.get(factor or "")  # (x * 0.5) * (1 + erf)
        if (
            half is not None
            and half.op_type == "Mul"
            and self.only_reader(half.outputs[0], "Mul") is mul
            and self.other(half, x) is not None
            and self.const(self.other(half, x) or "", 0.5)
        ):
            return x, [half, pre, erf, add, mul]
        return None


def fuse_gelu(graph: Graph) -> Graph:
    """``graph`` with each Erf-spelled GELU as one ``onnx`` ``Gelu`` node (opset 20 semantics)."""
    m = _Matcher(graph)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    fused: dict[int, Node] = {}  # id(last node of a pattern) -> Gelu
    gone: set[int] = set()
    for n in graph.nodes:
        if n.op_type != "Erf" or n.domain not in ("", "ai.onnx"):
            continue
        found = m.match(n)
        if found is None or any(id(p) in gone for p in found[1]):
            continue
        x, parts = found
        last = max(parts, key=lambda p: order[id(p)])
        gone.update(id(p) for p in parts)
        fused[id(last)] = Node(last.name or n.name, "Gelu", "onnx", (x,), last.outputs, {}, last.domain)
    nodes = [fused.get(id(n), n) for n in graph.nodes if id(n) in fused or id(n) not in gone]
    return rebuild(graph, nodes, dict(graph.tensors))
