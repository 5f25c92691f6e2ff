"""Linking graphs into real weight-shared multi-graph QNN HTP context binaries.

Everything here runs the real QNN libraries of ``onnxruntime-qnn`` (in child
processes) and skips with the reason when they are missing.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import ctxbin
from ctxbin.compile import compile_htp
from ctxbin.errors import BackendError, InputError, LinkError
from ctxbin.formats import dlc, epcontext, qnn
from ctxbin.ir import Target
from ctxbin.runtime.qnn_compose import ComposeOptions, compose_dlc

from .dlc_oracle import qnn_missing_reason
from .models import build_fcn

pytestmark = pytest.mark.skipif(qnn_missing_reason() is not None, reason=str(qnn_missing_reason()))

NAMES = ["landscape", "portrait"]
SHAPES = {"landscape": (64, 96), "portrait": (96, 64)}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny FCN at two shapes (same weights, same names) as ONNX files."""
    d = tmp_path_factory.mktemp("fcn")
    out = {}
    for name, (h, w) in SHAPES.items():
        m = build_fcn(h, w, tiny=True)
        m.ir_version = 8  # onnxruntime 1.31 refuses the IR 14 onnx 1.23 writes
        onnx.save(m, d / f"{name}.onnx")
        out[name] = d / f"{name}.onnx"
    return out


@pytest.fixture(scope="module")
def linked(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("linked") / "fcn.bin"
    report = compile_htp([models[n] for n in NAMES], NAMES, out, soc_model=60, htp_arch=75)
    return out, report


def test_graphs_found_by_the_given_names(linked: tuple[Path, object]) -> None:
    path, report = linked
    info = qnn.read_info(path)
    assert info.graph_names == NAMES
    assert (info.soc_model, info.backend_id) == (60, 6)
    for g in info.graphs:
        h, w = SHAPES[g.name]
        assert g.inputs[0].shape == (1, 3, h, w) and g.outputs[0].shape == (1, 21, h, w)
    from ctxbin.runtime.qnn_system import binary_info_isolated

    vendor = binary_info_isolated(path)
    assert vendor.graph_names == NAMES
    assert vendor.soc_model == 60
    # every weight of the two variants has the same name and bytes: all shared
    assert report.bytes_after * 2 == report.bytes_before
    assert [g.shared_fraction for g in report.graphs] == [1.0, 1.0]


def test_weights_stored_once_smaller_than_separate(
    linked: tuple[Path, object], models: dict[str, Path], tmp_path: Path
) -> None:
    path, _ = linked
    info = qnn.read_info(path)
    weights = [r for r in info.records if r.name.startswith("WEIGHTS/")]
    assert len(weights) == 1
    assert all(g.htp.shared_weights_size == weights[0].size for g in info.graphs)
    separate = 0
    for name in NAMES:
        out = tmp_path / f"{name}.bin"
        compile_htp([models[name]], [name], out, soc_model=60, htp_arch=75, share="none")
        assert [r.name for r in qnn.read_info(out).records if r.name.startswith("WEIGHTS/")] == []
        separate += out.stat().st_size
    linked_size = path.stat().st_size
    # measured with QNN 2.51: 409,600 bytes linked vs 352,256 + 356,352 separate
    assert linked_size < separate
    assert linked_size < 0.7 * separate


def test_single_graph_epcontext_runs_in_onnxruntime(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "solo.bin"
    compile_htp([models["landscape"]], ["solo"], out, soc_model=60, htp_arch=75, share="none", fmt="epcontext")
    wrapper = tmp_path / "solo_ctx.onnx"
    node = epcontext.read_nodes(wrapper)[0]
    assert (node.partition_name, node.main_context, node.embed_mode, node.cache_path) == ("solo", True, False, "solo.bin")
    code = textwrap.dedent(
        f"""
        import numpy as np, onnxruntime as ort, onnxruntime_qnn as oq
        ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
        devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
        so = ort.SessionOptions(); so.log_severity_level = 3
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        so.add_provider_for_devices(devs, {{"backend_type": "htp", "enable_htp_fp16_precision": "1",
                                           "soc_model": "60", "htp_arch": "75"}})
        x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
        y = ort.InferenceSession({str(wrapper)!r}, so).run(None, {{"image": x}})[0]
        ref = ort.InferenceSession({str(models["landscape"])!r}).run(None, {{"image": x}})[0]
        np.save({str(tmp_path / "err.npy")!r}, np.array([np.abs(y - ref).max(), np.abs(ref).max()]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err, scale = np.load(tmp_path / "err.npy")
    assert err <= 1e-2 * scale  # fp16 on HTP vs float32 on CPU


def test_multigraph_epcontext_wrappers_resolve_by_name(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fcn.bin"
    compile_htp([models[n] for n in NAMES], NAMES, out, soc_model=60, htp_arch=75, fmt="epcontext")
    wrappers = [tmp_path / f"{n}_ctx.onnx" for n in NAMES]
    nodes = [epcontext.read_nodes(w)[0] for w in wrappers]
    assert [(n.partition_name, n.main_context, n.cache_path) for n in nodes] == [
        ("landscape", True, "fcn.bin"), ("portrait", False, "fcn.bin"),
    ]
    c = epcontext.read_many(wrappers)
    assert c.graph_names == NAMES
    # the x86 HTP simulation cannot load shared weights: a clear error from a child process
    g = ctxbin.load(out).graph("portrait")
    with pytest.raises(BackendError, match="shared weights|crashed"):
        g.run({"image": np.zeros((1, 3, 96, 64), np.float32)}, backend="htp")


def test_ctxbin_output_carries_ir_and_binary(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fcn.ctxbin"
    compile_htp([models[n] for n in NAMES], NAMES, out, soc_model=60, htp_arch=75, fmt="ctxbin")
    c = ctxbin.load(out)
    assert c.graph_names == NAMES
    assert [g.binary.graph_name for g in c.graphs] == NAMES  # type: ignore[union-attr]
    assert all(g.nodes for g in c.graphs)  # the emulatable IR is there too
    info = qnn.read_info(bytes(c.graphs[0].binary.blob.raw()))  # type: ignore[union-attr]
    assert info.graph_names == NAMES
    # the target is what the compiler built for (SoC 60 is a v73 part, whatever arch was asked)
    assert c.target == qnn.target_of(info) and c.target.soc_model == 60
    # auto: HTP first; the x86 simulation refuses shared weights, so the emulator runs, and says why
    x = np.random.default_rng(0).standard_normal(c.graph("portrait").inputs[0].shape).astype(np.float32)  # type: ignore[arg-type]
    y = c.graph("portrait").run({"image": x})
    assert y.backend == "emulator" and "HTP failed" in y.note and "shared weights" in y.note.lower()


def test_colliding_names_and_other_targets_refused(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(LinkError, match="landscape"):
        compile_htp([models["landscape"], models["portrait"]], ["landscape", "landscape"], tmp_path / "x.bin",
                    soc_model=60, htp_arch=75)
    made = dlc.read(_one_dlc(models["portrait"], tmp_path))
    other = dataclasses.replace(made, target=Target(soc_model=57, htp_arch=73), source="portrait.dlc")
    with pytest.raises(LinkError, match=r"portrait\.dlc.*soc_model=57"):
        compile_htp([other], ["p"], tmp_path / "y.bin", soc_model=60, htp_arch=75)
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "y.bin").exists()


def test_bad_options_refused(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="format"):
        compile_htp([models["landscape"]], ["a"], tmp_path / "a.bin", soc_model=60, htp_arch=75, fmt="zip")
    with pytest.raises(InputError, match="soc_model"):
        compile_htp([models["landscape"]], ["a"], tmp_path / "a.bin", soc_model=0, htp_arch=75)
    with pytest.raises(LinkError, match="names"):
        compile_htp([models["landscape"]], ["a", "b"], tmp_path / "a.bin", soc_model=60, htp_arch=75)


def test_compose_rejects_a_garbage_dlc_without_crashing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dlc"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    with pytest.raises(BackendError):
        compose_dlc(bad, tmp_path / "bad.bin", graphs=["g"], options=ComposeOptions(60, 75))
    assert not (tmp_path / "bad.bin").exists()


def _one_dlc(onnx_path: Path, tmp: Path) -> Path:
    from ctxbin.convert import convert

    out = tmp / f"{onnx_path.stem}.dlc"
    convert(onnx_path, out, name=onnx_path.stem)
    return out


def test_routes_and_mixed_inputs_compile_alike(models: dict[str, Path], tmp_path: Path) -> None:
    """From the ONNX files through the vendor's lowering, or from DLCs made by
    it, the binary is byte for byte the same; ctxbin's own lowering (the
    default) gives the same graphs; DLC and ONNX inputs mix, names in order."""
    dlcs = [_one_dlc(models[n], tmp_path) for n in NAMES]
    made = {}
    for label, inputs, route in (("qnn-ir", [models[n] for n in NAMES], "qnn-ir"), ("dlc", dlcs, "auto"),
                                 ("mixed", [dlcs[0], models["portrait"]], "qnn-ir"),
                                 ("auto", [models[n] for n in NAMES], "auto")):
        out = tmp_path / f"{label}.bin"
        compile_htp(inputs, NAMES, out, soc_model=60, htp_arch=75, route=route)
        made[label] = out.read_bytes()
    assert made["qnn-ir"] == made["dlc"] == made["mixed"]
    vendor, own = qnn.read_info(made["qnn-ir"]), qnn.read_info(made["auto"])
    assert own.graph_names == vendor.graph_names == NAMES
    for a, b in zip(own.graphs, vendor.graphs):
        assert [(t.name, t.shape) for t in a.inputs + a.outputs] == [(t.name, t.shape) for t in b.inputs + b.outputs]
    # measured with QNN 2.51: 409,600 bytes either way; the nets differ only in node names/order
    assert abs(len(made["auto"]) - len(made["qnn-ir"])) <= 0.02 * len(made["qnn-ir"])
    with pytest.raises(InputError, match="route"):
        compile_htp(dlcs, NAMES, tmp_path / "x.bin", soc_model=60, htp_arch=75, route="magic")


def test_compose_reports_where_the_time_went(models: dict[str, Path], tmp_path: Path) -> None:
    linked, _ = ctxbin.link([dlc.read(_one_dlc(models[n], tmp_path)) for n in NAMES], names=NAMES)
    dlc.write(linked, tmp_path / "linked.dlc")
    r = compose_dlc(tmp_path / "linked.dlc", tmp_path / "fcn.bin", graphs=NAMES, options=ComposeOptions(60, 75))
    assert [k for k, _ in r.phases] == ["load", "compose", "finalize landscape", "finalize portrait", "binary", "write"]
    assert all(s >= 0 for _, s in r.phases)
    assert r.seconds <= sum(s for _, s in r.phases)  # compose .. binary, within the phases
    assert r.size == (tmp_path / "fcn.bin").stat().st_size
