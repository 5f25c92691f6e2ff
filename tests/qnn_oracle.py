"""Make real QNN context binaries with onnxruntime-qnn, for tests.

Tiny ONNX models (elementwise ops over a few inputs, optionally QDQ-quantized
per tensor or per channel) are compiled by ONNX Runtime's QNN execution
provider into ``*_ctx.onnx`` EPContext wrappers and ``*_qnn.bin`` context
binaries, in a directory the caller owns (a pytest tmp dir). Several models
compiled with ``ep.share_ep_contexts`` land in one multi-graph binary.

Everything here is optional: :func:`require_qnn` skips the calling test with a
clear reason when onnxruntime / onnxruntime-qnn are not installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

__all__ = [
    "IO",
    "ModelSpec",
    "Compiled",
    "require_qnn",
    "build_model",
    "compile_models",
]

_F = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class IO:
    """One graph input or output.

    ``elem`` is an ONNX element type (``onnx.TensorProto.*``). When ``scale``
    is set the tensor is quantized in the model (uint8/uint16/int8/int16 with a
    DequantizeLinear after an input or a QuantizeLinear before an output);
    a tuple of scales with ``axis`` makes it per-channel.
    """

    name: str
    shape: tuple[int, ...]
    elem: int = _F
    scale: float | tuple[float, ...] | None = None
    zero_point: int | tuple[int, ...] = 0
    axis: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A tiny model: every output = op(sum of inputs) (same shape for all I/O)."""

    inputs: tuple[IO, ...]
    outputs: tuple[IO, ...]
    op: str = "Relu"
    weight: bool = True  # add a constant weight (fp32, or QDQ per-channel when quantized)
    name: str = "m"


@dataclass
class Compiled:
    """What one compile produced: one ``_ctx.onnx`` per model and the binaries."""

    ctx_onnx: list[Path]
    bins: list[Path]
    specs: list[ModelSpec] = field(default_factory=list)


def require_qnn() -> tuple[Any, Any]:
    """(onnxruntime, onnxruntime_qnn), or skip the test saying what is missing."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ctxbin[test]')")
    oq = pytest.importorskip(
        "onnxruntime_qnn", reason="onnxruntime-qnn is not installed (pip install 'ctxbin[htp]'): no real QNN binaries"
    )
    return ort, oq


def _np_of(elem: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem)


def _qparams(io: IO, prefix: str, nodes: list, inits: list) -> tuple[str, str]:
    """Initializers for ``io``'s scale and zero point; returns their names."""
    from onnx import numpy_helper

    scale = np.asarray(io.scale, np.float32)
    zp = np.asarray(io.zero_point, _np_of(io.elem))
    if scale.ndim and zp.ndim == 0:
        zp = np.full(scale.shape, zp, zp.dtype)
    inits.append(numpy_helper.from_array(scale, f"{prefix}_scale"))
    inits.append(numpy_helper.from_array(zp, f"{prefix}_zp"))
    return f"{prefix}_scale", f"{prefix}_zp"


def build_model(spec: ModelSpec) -> Any:
    """The ONNX model of ``spec`` (IR version 8, opset 21: onnxruntime accepts it)."""
    from onnx import helper, numpy_helper

    nodes: list = []
    inits: list = []
    quantized = any(io.scale is not None for io in spec.inputs + spec.outputs)
    floats = []
    for io in spec.inputs:
        if io.scale is None:
            floats.append(io.name)
            continue
        s, z = _qparams(io, io.name, nodes, inits)
        attrs = {} if io.axis is None else {"axis": io.axis}
        nodes.append(helper.make_node("DequantizeLinear", [io.name, s, z], [f"{io.name}_f"], **attrs))
        floats.append(f"{io.name}_f")
    acc = floats[0]
    for i, other in enumerate(floats[1:]):
        nodes.append(helper.make_node("Add", [acc, other], [f"sum{i}"]))
        acc = f"sum{i}"
    shape = spec.inputs[0].shape
    if spec.weight and floats and all(io.elem == _F or io.scale is not None for io in spec.inputs):
        w = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
        if quantized:
            # per-channel int8 weight on axis 0 (a QDQ weight, stored quantized)
            ch = shape[0] if len(shape) > 1 else 1
            axis_scales = (np.abs(w.reshape(ch, -1)).max(axis=1) / 127 + 1e-3).astype(np.float32)
            q = np.clip(np.rint(w / axis_scales.reshape((ch,) + (1,) * (len(shape) - 1))), -127, 127).astype(np.int8)
            inits += [
                numpy_helper.from_array(q, "_w_q"),
                numpy_helper.from_array(axis_scales, "_w_scale"),
                numpy_helper.from_array(np.zeros(ch, np.int8), "_w_zp"),
            ]
            nodes.append(helper.make_node("DequantizeLinear", ["_w_q", "_w_scale", "_w_zp"], ["_w"], axis=0))
        else:
            inits.append(numpy_helper.from_array(w, "_w"))
        nodes.append(helper.make_node("Add", [acc, "_w"], ["_with_w"]))
        acc = "_with_w"
    outs = []
    for k, io in enumerate(spec.outputs):
        y = f"{io.name}_f" if io.scale is not None else io.name
        floatish = io.elem == _F or io.scale is not None
        ops = (spec.op, "Sigmoid", "Abs", "Neg") if floatish else ("Abs", "Neg")
        op = ops[k % len(ops)]
        nodes.append(helper.make_node(op, [acc], [y]))
        if io.scale is not None:
            s, z = _qparams(io, io.name, nodes, inits)
            attrs = {} if io.axis is None else {"axis": io.axis}
            nodes.append(helper.make_node("QuantizeLinear", [y, s, z], [io.name], **attrs))
        outs.append(helper.make_tensor_value_info(io.name, io.elem, list(io.shape)))
    ins = [helper.make_tensor_value_info(io.name, io.elem, list(io.shape)) for io in spec.inputs]
    graph = helper.make_graph(nodes, spec.name, ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 8
    return model


def _ep_devices(ort: Any, oq: Any) -> list:
    try:
        ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
    except Exception as exc:  # already registered in this process is fine
        if "already" not in str(exc).lower():
            raise
    devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    if not devs:
        pytest.skip("onnxruntime-qnn registered no QNNExecutionProvider device here")
    return devs


def compile_models(
    specs: Sequence[ModelSpec],
    out_dir: str | os.PathLike[str],
    *,
    share: bool = False,
    embed: bool = False,
    soc_model: str = "60",
    htp_arch: str = "73",
    fp16: bool = True,
) -> Compiled:
    """Compile each spec to ``out_dir/<name>_ctx.onnx`` (+ ``_qnn.bin`` unless embedded).

    With ``share`` all models go into one multi-graph binary (named after the
    first model); otherwise each gets its own.
    """
    ort, oq = require_qnn()
    import onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    devs = _ep_devices(ort, oq)
    ctx_paths = []
    for i, spec in enumerate(specs):
        src = out / f"{spec.name}.onnx"
        onnx.save(build_model(spec), str(src))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_embed_mode", "1" if embed else "0")
        ctx = out / f"{spec.name}_ctx.onnx"
        so.add_session_config_entry("ep.context_file_path", str(ctx))
        if share:
            so.add_session_config_entry("ep.share_ep_contexts", "1")
            if i == len(specs) - 1:
                so.add_session_config_entry("ep.stop_share_ep_contexts", "1")
        opts = {"backend_type": "htp", "soc_model": soc_model, "htp_arch": htp_arch}
        if fp16:
            opts["enable_htp_fp16_precision"] = "1"
        so.add_provider_for_devices(devs, opts)
        ort.InferenceSession(str(src), so)
        ctx_paths.append(ctx)
    bins = sorted(out.glob("*_qnn.bin"))
    return Compiled(ctx_paths, bins, list(specs))
