"""What ``ctxbin inspect`` reports about a container, as plain JSON-able data."""

from __future__ import annotations

from typing import Any

from .ir import Container, QuantEncoding, QuantKind, Tensor

__all__ = ["summarize", "tensor_info"]


def _encoding(enc: QuantEncoding | None) -> dict[str, Any] | None:
    if enc is None or enc.kind == QuantKind.NONE:
        return None
    out: dict[str, Any] = {"kind": enc.kind.name, "bitwidth": enc.bitwidth}
    if enc.axis is not None:
        out["axis"] = enc.axis
        out["channels"] = len(enc.scales)
    if len(enc.scales) == 1:
        out["scale"] = enc.scales[0]
        out["offset"] = enc.offsets[0] if enc.offsets else 0
    if enc.block_size:
        out["block_size"] = list(enc.block_size)
    if enc.value_bits != enc.bitwidth:  # LPBQ: narrower values, widened by their block scales
        out["value_bits"] = enc.value_bits
    return out


def _weight_type(t: Tensor) -> str:
    """A weight's data type and, when quantized, its encoding and value bits
    ("sfixed8 BLOCKWISE_EXPANSION 4-bit"): what a deployment needs to know
    about how its weights are stored."""
    enc = t.encoding
    if enc is None or enc.kind == QuantKind.NONE:
        return t.dtype.name.lower()
    return f"{t.dtype.name.lower()} {enc.kind.name} {enc.value_bits}-bit"


def tensor_info(t: Tensor) -> dict[str, Any]:
    info: dict[str, Any] = {"name": t.name, "dtype": t.dtype.name.lower(), "shape": list(t.shape)}
    enc = _encoding(t.encoding)
    if enc is not None:
        info["encoding"] = enc
    return info


def summarize(c: Container) -> dict[str, Any]:
    """Graphs, I/O, op histograms and weight byte counts of ``c`` (no weight is read)."""
    graphs = []
    total = 0
    unique: dict[int, int] = {}
    for g in c.graphs:
        weights = [t for t in g.tensors.values() if t.data is not None]
        own = {id(t.data): t.data.nbytes for t in weights}
        types: dict[str, int] = {}
        for t in weights:
            key = _weight_type(t)
            types[key] = types.get(key, 0) + 1
        total += sum(own.values())
        unique.update(own)
        entry: dict[str, Any] = {
            "name": g.name,
            "inputs": [tensor_info(t) for t in g.inputs],
            "outputs": [tensor_info(t) for t in g.outputs],
            "node_count": len(g.nodes),
            "op_histogram": g.op_histogram(),
            "weight_count": len(own),
            "weight_bytes": sum(own.values()),
            "weight_types": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        if g.binary is not None:
            entry["compiled"] = {"backend": g.binary.backend, "graph": g.binary.graph_name}
        if g.metadata:
            entry["metadata"] = dict(g.metadata)
        graphs.append(entry)
    t = c.target
    return {
        "path": c.source,
        "format": c.format,
        "format_version": c.format_version,
        "target": {
            "backend": t.backend or None,
            "soc_model": t.soc_model,
            "htp_arch": t.htp_arch,
            "sdk_version": t.sdk_version or None,
        },
        "metadata": dict(c.metadata),
        "graphs": graphs,
        "weights": {
            "total_bytes": total,
            "unique_bytes": sum(unique.values()),
            "shared_bytes": total - sum(unique.values()),
        },
    }
