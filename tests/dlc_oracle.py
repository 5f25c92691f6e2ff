"""Real QNN DLC files for tests, written by the QNN IR backend (libQnnIr.so).

The ``onnxruntime-qnn`` wheel ships Qualcomm's QNN libraries; its execution
provider dumps each graph it builds as a DLC (v4) when asked
(``dump_qnn_ir_dlc``). The DLCs are made in a child process (the QNN
libraries are noisy on stderr and a crash there must not take pytest down),
in a temporary directory; nothing vendor-made is ever stored in the repo.

The ONNX models below are the sources the tests compare the DLCs against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "qnn_missing_reason",
    "require_qnn",
    "make_dlcs",
    "float_conv_net",
    "float_mixed_net",
    "fp16_net",
    "qdq_conv_net",
    "MODELS",
]

_OPSET = 17


def qnn_missing_reason() -> str | None:
    """Why real DLCs cannot be made here, or None when they can."""
    try:
        import onnxruntime  # noqa: F401
        import onnxruntime_qnn  # noqa: F401
    except ImportError as e:
        return f"onnxruntime-qnn is not installed ({e}); it writes the real DLCs"
    import platform

    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        return "the QNN IR backend in onnxruntime-qnn runs on Linux x86_64 only"
    return None


def require_qnn() -> None:
    reason = qnn_missing_reason()
    if reason:
        pytest.skip(reason)


# The child: one ONNX Runtime session per model with the QNN EP dumping DLCs.
_CHILD = r"""
import json, os, sys
import onnxruntime as ort, onnxruntime_qnn as oq
jobs = json.loads(sys.argv[1])
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
for model, out_dir, fp16, more in jobs:
    opts = {"backend_type": "htp", "soc_model": "60", "htp_arch": "75",
            "dump_qnn_ir_dlc": "1", "dump_qnn_ir_dlc_dir": out_dir, **more}
    if fp16:
        opts["enable_htp_fp16_precision"] = "1"
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_provider_for_devices(devs, opts)
    ort.InferenceSession(model, so)
"""


def make_dlcs(models: dict[str, tuple[onnx.ModelProto, bool]], tmp: Path,
              options: dict[str, str] | None = None) -> dict[str, Path]:
    """Write each ``name: (model, fp16)`` as ``tmp/name.onnx`` and let the QNN IR
    backend dump it (``options``: more QNN EP provider options for every model);
    returns ``name: path of the (single) DLC it wrote``."""
    require_qnn()
    jobs = []
    for name, (model, fp16) in models.items():
        src = tmp / f"{name}.onnx"
        onnx.save(model, src)
        out = tmp / f"{name}_dlc"
        out.mkdir()
        jobs.append((str(src), str(out), fp16, options or {}))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs)],
        capture_output=True, text=True, timeout=300, cwd=tmp,
        env={**os.environ, "ORT_LOGGING_LEVEL": "3"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"making DLCs failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found = {}
    for name, (_, out, _, _) in zip(models, jobs):
        dlcs = sorted(Path(out).glob("*.dlc"))
        if len(dlcs) != 1:
            raise RuntimeError(f"{name}: expected one DLC in {out}, found {dlcs}")
        found[name] = dlcs[0]
    return found


def _model(nodes, inputs, outputs, inits, name="g") -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", _OPSET)])
    m.ir_version = 8  # onnxruntime 1.31 refuses the IR 14 that onnx 1.23 writes
    onnx.checker.check_model(m)
    return m


def _vi(name: str, shape: list[int], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def float_conv_net(seed: int = 0) -> onnx.ModelProto:
    """Conv(+bias) → Relu → MaxPool → Flatten → MatMul → Softmax, float32."""
    rng = np.random.default_rng(seed)
    inits = {
        "W": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "B": rng.standard_normal(8).astype(np.float32),
        "W2": rng.standard_normal((128, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "W2"], ["m"]),
        helper.make_node("Softmax", ["m"], ["y"], axis=-1),
    ]
    return _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 16])], inits)


def float_mixed_net(seed: int = 1) -> onnx.ModelProto:
    """Two inputs, Add with a constant, LeakyRelu (a float param), Concat, Clip,
    Conv without bias, AveragePool, Gemm with bias: several outputs."""
    rng = np.random.default_rng(seed)
    inits = {
        "K": rng.standard_normal((1, 4, 6, 6)).astype(np.float32),
        "W": rng.standard_normal((5, 8, 1, 1)).astype(np.float32),
        "G": rng.standard_normal((45, 7)).astype(np.float32),
        "GB": rng.standard_normal(7).astype(np.float32),
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(0.75, np.float32),
    }
    nodes = [
        helper.make_node("Add", ["a", "K"], ["s"]),
        helper.make_node("LeakyRelu", ["s"], ["l"], alpha=0.125),
        helper.make_node("Concat", ["l", "b"], ["cat"], axis=1),
        helper.make_node("Clip", ["cat", "lo", "hi"], ["clip"]),
        helper.make_node("Conv", ["clip", "W"], ["conv"], strides=[2, 2]),
        helper.make_node("AveragePool", ["conv"], ["ap"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Flatten", ["conv"], ["fl"]),
        helper.make_node("Gemm", ["fl", "G", "GB"], ["out"]),
    ]
    return _model(
        nodes,
        [_vi("a", [1, 4, 6, 6]), _vi("b", [1, 4, 6, 6])],
        [_vi("ap", [1, 5, 1, 1]), _vi("out", [1, 7])],
        inits,
    )


def fp16_net(seed: int = 2) -> onnx.ModelProto:
    """A float16 model: Conv(+bias) → Sigmoid → Mul, all fp16."""
    rng = np.random.default_rng(seed)
    inits = {
        "W": rng.standard_normal((4, 2, 3, 3)).astype(np.float16),
        "B": rng.standard_normal(4).astype(np.float16),
    }
    h = TensorProto.FLOAT16
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [1, 2, 6, 6], h)], [_vi("y", [1, 4, 4, 4], h)], inits)


def qdq_conv_net(per_channel: bool, seed: int = 3) -> onnx.ModelProto:
    """QDQ model: uint8 activations, int8 weights (per-tensor or per-output-channel),
    int32 bias: Q/DQ → Conv → Q/DQ → Relu → Q/DQ → Add(const) → Q/DQ."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    x_scale, x_zp = np.float32(0.02), np.uint8(128)
    if per_channel:
        w_scale = (np.abs(w).reshape(6, -1).max(axis=1) / 127).astype(np.float32)
        wq = np.clip(np.rint(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        w_zp = np.zeros(6, np.int8)
    else:
        w_scale = np.float32(np.abs(w).max() / 127)
        wq = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
        w_zp = np.int8(0)
    b_scale = (x_scale * np.asarray(w_scale, np.float32)).astype(np.float32)
    bq = rng.integers(-500, 500, 6).astype(np.int32)
    c_scale, c_zp = np.float32(0.05), np.uint8(100)
    k = rng.uniform(0, 1, (1, 6, 4, 4)).astype(np.float32)
    k_scale, k_zp = np.float32(1 / 255), np.uint8(0)
    kq = np.rint(k / k_scale).astype(np.uint8)
    y_scale, y_zp = np.float32(0.06), np.uint8(10)
    inits = {
        "x_scale": np.array(x_scale), "x_zp": np.array(x_zp),
        "wq": wq, "w_scale": np.asarray(w_scale), "w_zp": np.asarray(w_zp),
        "bq": bq, "b_scale": np.asarray(b_scale), "b_zp": np.zeros(b_scale.shape, np.int32),
        "c_scale": np.array(c_scale), "c_zp": np.array(c_zp),
        "kq": kq, "k_scale": np.array(k_scale), "k_zp": np.array(k_zp),
        "y_scale": np.array(y_scale), "y_zp": np.array(y_zp),
    }
    axis = {"axis": 0} if per_channel else {}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zp"], ["wd"], **axis),
        helper.make_node("DequantizeLinear", ["bq", "b_scale", "b_zp"], ["bd"], **axis),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", "c_scale", "c_zp"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "c_scale", "c_zp"], ["cd"]),
        helper.make_node("Relu", ["cd"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "c_scale", "c_zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "c_scale", "c_zp"], ["rd"]),
        helper.make_node("DequantizeLinear", ["kq", "k_scale", "k_zp"], ["kd"]),
        helper.make_node("Add", ["rd", "kd"], ["s"]),
        helper.make_node("QuantizeLinear", ["s", "y_scale", "y_zp"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "y_scale", "y_zp"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [1, 3, 6, 6])], [_vi("y", [1, 6, 4, 4])], inits)


#: The oracle's test models: name -> () -> (ONNX model, whether it is float).
MODELS = {
    "conv": lambda: (float_conv_net(), True),
    "mixed": lambda: (float_mixed_net(), True),
    "fp16": lambda: (fp16_net(), True),
    "qdq_tensor": lambda: (qdq_conv_net(per_channel=False), False),
    "qdq_channel": lambda: (qdq_conv_net(per_channel=True), False),
}
