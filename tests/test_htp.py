"""The HTP backend against real QNN context binaries, run in the vendor's x86 simulation.

Binaries are made by ONNX Runtime's QNN execution provider (tests/qnn_oracle.py);
the reference for every output is onnxruntime CPU on the source ONNX model.
Every HTP run happens in a child process, so the crash tests also check that
this test process survives.
"""

from __future__ import annotations

import importlib.util
import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ctxbin
from ctxbin.errors import BackendError, BackendUnavailableError, GraphNotFoundError, InputError
from ctxbin.runtime import htp, worker, qnn_api
from tests.qnn_oracle import IO, ModelSpec, compile_models, require_qnn

U8 = 2  # onnx.TensorProto.UINT8
F16 = 10  # onnx.TensorProto.FLOAT16

FP = ModelSpec((IO("x", (2, 8)), IO("y", (2, 8))), (IO("out", (2, 8)), IO("out2", (2, 8))), name="fp")
QDQ = ModelSpec(
    (IO("x", (2, 8), U8, 0.05, 128),), (IO("out", (2, 8), U8, 0.01, 0),), name="qdq", weight=False
)
HALF = ModelSpec((IO("x", (2, 8), F16),), (IO("out", (2, 8), F16),), name="half")
# two graphs in one binary; without constants there is nothing for them to share
PLAIN = [
    ModelSpec((IO("x", (2, 8)), IO("y", (2, 8))), (IO("out", (2, 8)),), name="pa", weight=False),
    ModelSpec((IO("x", (4, 8)),), (IO("out", (4, 8)),), op="Sigmoid", name="pb", weight=False),
]
# two graphs whose weights land in one shared WEIGHTS record
SHARED = [
    ModelSpec((IO("x", (2, 8)),), (IO("out", (2, 8)),), name="sa"),
    ModelSpec((IO("x", (4, 8)),), (IO("out", (4, 8)),), op="Sigmoid", name="sb"),
]

FP16_TOL = dict(rtol=1e-2, atol=1e-2)  # HTP runs float graphs in fp16


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_qnn()
    root = tmp_path_factory.mktemp("htp")
    return {
        "fp": compile_models([FP], root / "fp"),
        "fp_embedded": compile_models([FP], root / "fp_embedded", embed=True),
        "qdq": compile_models([QDQ], root / "qdq", fp16=False),
        "half": compile_models([HALF], root / "half"),
        "plain": compile_models(PLAIN, root / "plain", share=True),
        "shared": compile_models(SHARED, root / "shared", share=True),
    }


@pytest.fixture(scope="module")
def usable() -> None:
    why = htp.unavailable_reason()
    if why:
        pytest.skip(f"HTP backend unusable here: {why}")


def _feeds(graph: ctxbin.ir.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.uniform(-2, 2, t.shape).astype(np.float32) for t in graph.inputs}


def _cpu(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def _only_graph(path: Path) -> ctxbin.ir.Graph:
    (graph,) = ctxbin.load(path).graphs
    return graph


@pytest.mark.qnn
def test_fp16_binary_matches_onnxruntime_cpu(built: dict, usable: None) -> None:
    c = built["fp"]
    graph = _only_graph(c.bins[0])
    feeds = _feeds(graph)
    t0 = time.perf_counter()
    result = graph.run(feeds, backend="htp")
    elapsed = time.perf_counter() - t0
    assert result.backend == "htp" and list(result) == ["out", "out2"]
    ref = _cpu(c.bins[0].parent / "fp.onnx", feeds)
    for name, want in ref.items():
        assert result[name].dtype == np.float32 and result[name].shape == want.shape
        np.testing.assert_allclose(result[name], want, **FP16_TOL)
    assert elapsed < 60, f"one HTP run took {elapsed:.1f} s"


@pytest.mark.qnn
def test_auto_picks_htp_for_a_compiled_graph(built: dict, usable: None) -> None:
    graph = _only_graph(built["fp"].bins[0])
    result = graph.run(_feeds(graph), backend="auto")
    assert result.backend == "htp" and result.note == ""


@pytest.mark.qnn
def test_quantized_binary_float_and_raw(built: dict, usable: None) -> None:
    c = built["qdq"]
    graph = _only_graph(c.bins[0])
    (x,) = graph.inputs
    assert x.dtype == ctxbin.ir.DType.UFIXED8 and x.encoding.offsets == (-128,)
    q = np.random.default_rng(1).integers(0, 256, x.shape, dtype=np.uint8)
    want_q = _cpu(c.bins[0].parent / "qdq.onnx", {"x": q})["out"]
    raw = graph.run({"x": q}, backend="htp", raw=True)
    assert raw["out"].dtype == np.uint8
    # HTP requantizes in fixed point: at most one step from onnxruntime's float math
    assert np.abs(raw["out"].astype(int) - want_q.astype(int)).max() <= 1
    real = x.encoding.dequantize(q)  # callers pass real values; ctxbin quantizes them back to q
    out = graph.run({"x": real}, backend="htp")
    assert out["out"].dtype == np.float32
    np.testing.assert_allclose(out["out"], (want_q.astype(np.float32)) * 0.01, atol=0.01 + 1e-6)
    np.testing.assert_array_equal(out["out"], graph.outputs[0].encoding.dequantize(raw["out"]))


@pytest.mark.qnn
def test_float16_io_is_converted_at_the_boundary(built: dict, usable: None) -> None:
    c = built["half"]
    graph = _only_graph(c.bins[0])
    assert graph.inputs[0].dtype == ctxbin.ir.DType.FLOAT16
    x = _feeds(graph, seed=6)["x"]
    want = _cpu(c.bins[0].parent / "half.onnx", {"x": x.astype(np.float16)})["out"]
    result = graph.run({"x": x}, backend="htp")
    assert result["out"].dtype == np.float32
    np.testing.assert_allclose(result["out"], want.astype(np.float32), **FP16_TOL)
    raw = graph.run({"x": x.astype(np.float16)}, backend="htp", raw=True)
    assert raw["out"].dtype == np.float16
    np.testing.assert_array_equal(raw["out"].astype(np.float32), result["out"])


@pytest.mark.qnn
def test_epcontext_wrappers_run_the_same_binary(built: dict, usable: None) -> None:
    graph = _only_graph(built["fp"].bins[0])
    feeds = _feeds(graph, seed=2)
    direct = graph.run(feeds, backend="htp")
    wrapped = ctxbin.load(built["fp"].ctx_onnx[0]).graph(graph.name)
    result = wrapped.run(feeds, backend="htp")
    for name in direct:
        np.testing.assert_array_equal(result[name], direct[name])
    # embedded: the bytes live inside the .onnx (the worker gets a copy)
    assert not built["fp_embedded"].bins
    (embedded,) = ctxbin.load(built["fp_embedded"].ctx_onnx[0]).graphs
    result = embedded.run(feeds, backend="htp")
    ref = _cpu(built["fp"].bins[0].parent / "fp.onnx", feeds)
    for name, want in ref.items():
        np.testing.assert_allclose(result[name], want, **FP16_TOL)


@pytest.mark.qnn
def test_multi_graph_binary_each_graph_by_name(built: dict, usable: None) -> None:
    c = built["plain"]
    (binary,) = c.bins
    container = ctxbin.load(binary)
    assert len(container.graphs) == 2
    for ctx_onnx, spec in zip(c.ctx_onnx, c.specs):
        name = ctxbin.load(ctx_onnx).graphs[0].name
        graph = container.graph(name)  # picked by name from the multi-graph binary
        feeds = _feeds(graph, seed=3)
        result = graph.run(feeds, backend="htp")
        ref = _cpu(binary.parent / f"{spec.name}.onnx", feeds)
        np.testing.assert_allclose(result["out"], ref["out"], **FP16_TOL)


@pytest.mark.qnn
def test_shared_weights_binary_gives_a_clear_error_or_runs(built: dict, usable: None) -> None:
    c = built["shared"]
    (binary,) = c.bins
    container = ctxbin.load(binary)
    for ctx_onnx, spec in zip(c.ctx_onnx, c.specs):
        graph = container.graph(ctxbin.load(ctx_onnx).graphs[0].name)
        feeds = _feeds(graph, seed=4)
        try:
            result = graph.run(feeds, backend="htp")
        except BackendError as exc:
            # QNN 2.51's x86 simulation: "Shared weights buffer isn't supported", then SIGSEGV
            msg = str(exc)
            assert graph.name in msg and "shared weights" in msg.lower(), msg
        else:
            ref = _cpu(binary.parent / f"{spec.name}.onnx", feeds)
            np.testing.assert_allclose(result["out"], ref["out"], **FP16_TOL)


@pytest.mark.qnn
def test_unknown_graph_names_list_the_graphs(built: dict, usable: None) -> None:
    (binary,) = built["plain"].bins
    container = ctxbin.load(binary)
    with pytest.raises(GraphNotFoundError) as info:
        container.graph("nope")
    assert set(info.value.available) == set(container.graph_names)
    # a graph whose binary lacks the name it claims: the worker says so, with the names
    graph = container.graphs[0]
    stray = dataclasses.replace(graph, binary=dataclasses.replace(graph.binary, graph_name="missing"))
    with pytest.raises(GraphNotFoundError) as info:
        stray.run(_feeds(graph), backend="htp")
    assert info.value.name == "missing" and set(info.value.available) == set(container.graph_names)


@pytest.mark.qnn
def test_corrupted_graph_blob_is_a_backend_error(built: dict, usable: None, tmp_path: Path) -> None:
    from ctxbin.formats import qnn

    src = built["fp"].bins[0]
    info = qnn.read_info(src)
    (pickle,) = [r for r in info.records if r.name.startswith("PICKLE/")]
    data = bytearray(src.read_bytes())
    data[pickle.offset : pickle.offset + 256] = bytes(256)  # the metadata stays valid
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    graph = _only_graph(bad)
    with pytest.raises(BackendError) as exc:
        graph.run(_feeds(graph), backend="htp")
    assert graph.name in str(exc.value)


def _crashing_library(folder: Path) -> Path:
    """A stand-in ``libQnnHtp.so`` whose entry point dereferences NULL."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a crashing stand-in library")
    src = folder / "crash.c"
    src.write_text("int QnnInterface_getProviders(void* a, void* b) { return *(volatile int*)0; }\n")
    lib = folder / "libQnnHtp.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    return lib


@pytest.mark.qnn
def test_crashing_library_is_a_backend_error_naming_signal_and_graph(
    built: dict, usable: None, tmp_path: Path
) -> None:
    graph = _only_graph(built["fp"].bins[0])
    lib = _crashing_library(tmp_path)
    with pytest.raises(BackendError) as exc:
        graph.run(_feeds(graph), backend="htp", library=lib)
    msg = str(exc.value)
    assert "SIGSEGV" in msg and graph.name in msg
    # ... and this process is fine: the real library still runs the graph
    assert graph.run(_feeds(graph), backend="htp").backend == "htp"


@pytest.mark.qnn
def test_timeout_kills_the_worker(built: dict, usable: None) -> None:
    graph = _only_graph(built["fp"].bins[0])
    with pytest.raises(BackendError, match="did not finish"):
        htp.run(graph, _feeds(graph), timeout=0.01)


@pytest.mark.qnn
def test_input_errors_are_caught_before_the_worker(built: dict, usable: None) -> None:
    graph = _only_graph(built["fp"].bins[0])
    feeds = _feeds(graph)
    with pytest.raises(InputError, match="missing"):
        graph.run({"x": feeds["x"]}, backend="htp")
    with pytest.raises(InputError, match="shape"):
        graph.run({"x": feeds["x"][:1], "y": feeds["y"]}, backend="htp")
    with pytest.raises(InputError, match="no input"):
        graph.run({**feeds, "z": feeds["x"]}, backend="htp")
    quantized = _only_graph(built["qdq"].bins[0])
    with pytest.raises(InputError, match="raw=True"):
        quantized.run({"x": np.zeros((2, 8), np.float32)}, backend="htp", raw=True)


@pytest.mark.qnn
def test_cli_run_on_htp(built: dict, usable: None, tmp_path: Path) -> None:
    from ctxbin.cli import main

    binary = built["fp"].bins[0]
    graph = _only_graph(binary)
    feeds = _feeds(graph, seed=5)
    lines = []
    for name, arr in feeds.items():
        np.save(tmp_path / f"{name}.npy", arr)
        lines.append(f"{name}:={tmp_path / (name + '.npy')}")
    (tmp_path / "inputs.txt").write_text(" ".join(lines) + "\n")
    out_dir = tmp_path / "out"
    rc = main(["run", str(binary), "--graph", graph.name, "--backend", "htp", "--npy",
               "--input-list", str(tmp_path / "inputs.txt"), "--output-dir", str(out_dir)])
    assert rc == 0
    ref = _cpu(binary.parent / "fp.onnx", feeds)
    for name, want in ref.items():
        np.testing.assert_allclose(np.load(out_dir / "Result_0" / f"{name}.npy"), want, **FP16_TOL)


@pytest.mark.qnn
def test_library_function_table_agrees_with_the_binary(built: dict, usable: None) -> None:
    """Slot check of the cffi function table: backendGetBuildId (slot 4) must
    return the build id the binary records. Run in a child: the QNN libraries
    must not share this process with ONNX Runtime's QNN provider."""
    code = (
        "from ctxbin.runtime.qnn_api import QnnBackendLib\n"
        "lib = QnnBackendLib()\n"
        "print('RESULT', lib.provider_name, lib.build_id(), *lib.core_api_version)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=worker.child_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    _, provider, build, major, *_ = line.split()
    container = ctxbin.load(built["fp"].bins[0])
    assert provider.startswith("HTP") and major == "2"
    assert build == container.metadata["build_id"]


def test_auto_falls_back_to_the_emulator_and_says_why(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from tests.qnn_oracle import build_model

    path = tmp_path / "fp.onnx"
    onnx.save(build_model(FP), str(path))
    graph = ctxbin.load(path).graphs[0]
    assert graph.binary is None
    result = graph.run(_feeds(graph), backend="auto")
    assert result.backend == "emulator" and "no compiled HTP binary" in result.note
    with pytest.raises(BackendUnavailableError, match="no compiled HTP binary"):
        graph.run(_feeds(graph), backend="htp")


def test_unavailable_reason_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    why = htp.unavailable_reason(library=tmp_path / "nowhere" / "libQnnHtp.so")
    assert "libQnnHtp.so not found" in why and "nowhere" in why
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    why = htp.unavailable_reason()
    assert "QNN_SDK_ROOT (not set)" in why and "onnxruntime_qnn package (not installed" in why
    monkeypatch.setattr(qnn_api.platform, "machine", lambda: "aarch64")
    assert "x86_64 Linux only" in htp.unavailable_reason()


def test_qnn_sdk_root_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib" / "x86_64-linux-clang" / "libQnnHtp.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    assert qnn_api.find_library() == lib
