"""Small helpers shared by graph passes: who reads a tensor, and rebuilding a
graph from edited nodes without tensors nobody refers to any more."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from ..ir import Graph, Node, Tensor

__all__ = ["consumers", "rebuild"]


def consumers(nodes: Iterable[Node]) -> dict[str, list[Node]]:
    """``{tensor name: nodes reading it}`` (a node reading a tensor twice is listed twice)."""
    readers: dict[str, list[Node]] = {}
    for n in nodes:
        for x in n.inputs:
            if x:
                readers.setdefault(x, []).append(n)
    return readers


def rebuild(graph: Graph, nodes: Iterable[Node], tensors: Mapping[str, Tensor]) -> Graph:
    """``graph`` with ``nodes`` and the entries of ``tensors`` that graph I/O or a node names."""
    nodes = tuple(nodes)
    used = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for n in nodes:
        used.update(x for x in n.inputs if x)
        used.update(x for x in n.outputs if x)
    return dataclasses.replace(
        graph, nodes=nodes, tensors={k: t for k, t in tensors.items() if k in used}
    )
