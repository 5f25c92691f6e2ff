"""Record the element type and static shape of every tensor of an ``onnx``-namespace graph.

Lowering to QNN needs concrete shapes everywhere (NHWC shapes, weight layouts,
Reshape targets). They come from ONNX's own shape inference with data
propagation, run on a weightless copy of the graph: large weights are declared
as typed inputs, only small constants (shape operands, scales) travel as data.
Symbolic dimensions must be bound before (the bind pass); what stays unknown
is reported by name.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ShapeError
from ..ir import AttrValue, DType, Graph, Node, Tensor, TensorKind

__all__ = ["infer_shapes", "require_static_inputs"]

#: Constants up to this many bytes are given to inference as data (shape operands, Resize scales).
_DATA_LIMIT = 4096
_DEFAULT_OPSET = 17


def _elem(dtype: DType, what: str) -> int:
    try:
        return int(helper.np_dtype_to_tensor_dtype(dtype.numpy))
    except (TypeError, KeyError):
        raise ShapeError(f"{what}: element type {dtype.name} has no ONNX equivalent") from None


def _attr(node: Node, key: str, value: AttrValue, opset: int) -> onnx.AttributeProto:
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, tuple) and value and all(isinstance(v, np.ndarray) for v in value):
        return helper.make_attribute(key, [numpy_helper.from_array(v) for v in value])
    if isinstance(value, tuple) and not value:
        # An empty list carries no type of its own: the op's schema has it.
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        return helper.make_attribute(key, [], attr_type=schema.attributes[key].type)
    return helper.make_attribute(key, list(value) if isinstance(value, tuple) else value)


def _proto(graph: Graph) -> onnx.ModelProto:
    opsets = dict(graph.opsets) or {"": _DEFAULT_OPSET}
    inputs = [
        helper.make_tensor_value_info(t.name, _elem(t.dtype, f"input {t.name!r}"), list(t.shape))
        for t in graph.inputs
    ]
    inits = []
    for t in graph.weights:
        if t.nbytes <= _DATA_LIMIT:
            inits.append(numpy_helper.from_array(np.asarray(t.numpy()), t.name))
        else:
            inputs.append(helper.make_tensor_value_info(t.name, _elem(t.dtype, f"tensor {t.name!r}"), list(t.shape)))
    nodes = []
    for n in graph.nodes:
        p = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name, domain=n.domain or None)
        opset = opsets.get(n.domain, 1)
        p.attribute.extend(_attr(n, k, v, opset) for k, v in n.attrs.items())
        nodes.append(p)
    g = helper.make_graph(nodes, graph.name, inputs, [], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = 8
    return model


def require_static_inputs(graph: Graph) -> None:
    """Raise :class:`ShapeError` naming every input of ``graph`` whose shape is
    not all sizes (QNN graphs, whichever lowering makes them, have fixed shapes)."""
    symbolic = [t.name for t in graph.inputs if t.is_symbolic]
    if symbolic:
        raise ShapeError(
            f"graph {graph.name!r}: inputs {symbolic} have symbolic or unknown dimensions "
            f"({', '.join(f'{t.name}: {t.shape}' for t in graph.inputs if t.is_symbolic)}); "
            "bind them to sizes before lowering"
        )


def infer_shapes(graph: Graph) -> Graph:
    """``graph`` with a tensor table entry (dtype, int shape) for every tensor.

    Raises :class:`ShapeError` when ONNX inference fails or leaves a tensor
    unknown or symbolic (all such tensors are named).
    """
    require_static_inputs(graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(_proto(graph), strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, onnx.defs.SchemaError) as e:
        raise ShapeError(f"graph {graph.name!r}: ONNX shape inference failed: {e}") from None
    found: dict[str, tuple[DType, tuple[int, ...] | None]] = {}
    for vi in inferred.graph.value_info:
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        try:
            dtype = DType.from_numpy(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (TypeError, KeyError):
            dtype = DType.UNDEFINED
        found[vi.name] = (dtype, shape)
    tensors = dict(graph.tensors)
    outputs = {t.name for t in graph.outputs}
    unknown = []
    for n in graph.nodes:
        for x in n.outputs:
            if not x:
                continue
            dtype, shape = found.get(x, (DType.UNDEFINED, None))
            if shape is None or dtype == DType.UNDEFINED:
                unknown.append(x)
                continue
            kind = TensorKind.OUTPUT if x in outputs else TensorKind.NATIVE
            old = tensors.get(x)
            tensors[x] = Tensor(x, dtype, shape, kind, encoding=old.encoding if old is not None else None)
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise ShapeError(f"graph {graph.name!r}: no static shape for {len(unknown)} tensor(s): {shown}")
    return dataclasses.replace(
        graph,
        tensors=tensors,
        outputs=tuple(tensors.get(t.name, t) for t in graph.outputs),
    )
