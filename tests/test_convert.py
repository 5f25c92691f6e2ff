"""ONNX → DLC conversion: the QNN IR route (onnxruntime-qnn) names the graph as
asked and writes a DLC whose graph is the vendor's own lowering; the ctxbin
route uses ctxbin's lowering pass when it is part of the build."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from ctxbin import convert as cv
from ctxbin.errors import BackendError, BackendUnavailableError, FormatError, InputError, UnsupportedOpError
from ctxbin.formats import dlc

from . import dlc_oracle as oracle


@pytest.fixture()
def conv_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "conv_net.onnx"
    onnx.save(oracle.float_conv_net(), path)
    return path


def test_qnn_ir_route_names_the_graph(conv_onnx: Path, tmp_path: Path) -> None:
    oracle.require_qnn()
    out = tmp_path / "model.dlc"
    c = cv.convert(conv_onnx, out, name="landscape", route="qnn-ir")
    assert c.graph_names == ["landscape"] and c.source == str(out)
    assert c.metadata["converter-version"].startswith("2.")  # the QNN SDK that lowered it
    # the same graph the QNN IR backend dumps by itself, under the user's name
    (tmp_path / "ref").mkdir()
    vendor = oracle.make_dlcs({"conv": (oracle.float_conv_net(), True)}, tmp_path / "ref")["conv"]
    ref = dlc.read(vendor).graphs[0]
    assert c.graphs[0] == dataclasses.replace(ref, name="landscape")
    g = c.graphs[0]
    assert {t.name for t in g.inputs} == {"x"} and {t.name for t in g.outputs} == {"y"}


def test_default_name_is_the_onnx_graph_name(conv_onnx: Path, tmp_path: Path) -> None:
    oracle.require_qnn()
    c = cv.convert(conv_onnx, tmp_path / "m.dlc", route="auto")
    assert c.graph_names == ["g"]  # dlc_oracle names its ONNX graphs "g"


def test_models_qnn_cannot_take_whole_are_refused(tmp_path: Path) -> None:
    oracle.require_qnn()
    m = oracle._model(
        [helper.make_node("NonZero", ["x"], ["y"])],
        [oracle._vi("x", [2, 3])], [oracle._vi("y", [2, None], TensorProto.INT64)], {},
    )
    src = tmp_path / "nz.onnx"
    onnx.save(m, src)
    with pytest.raises(BackendError, match="could not convert"):
        cv.convert(src, tmp_path / "nz.dlc", route="qnn-ir")
    assert not (tmp_path / "nz.dlc").exists()


def test_bad_inputs(tmp_path: Path, conv_onnx: Path) -> None:
    with pytest.raises(ValueError, match="route"):
        cv.convert(conv_onnx, tmp_path / "x.dlc", route="magic")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x01\x02 not onnx")
    with pytest.raises(FormatError):
        cv.convert(bad, tmp_path / "x.dlc")


def test_ctxbin_route(conv_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "own.dlc"
    if importlib.util.find_spec("ctxbin.passes.onnx_to_qnn") is None:
        with pytest.raises(BackendUnavailableError, match="onnx_to_qnn"):
            cv.convert(conv_onnx, out, route="ctxbin")
        assert not out.exists()
        return
    c = cv.convert(conv_onnx, out, name="own", route="ctxbin")
    assert c.graph_names == ["own"]
    assert all(n.namespace == "qnn" for n in c.graphs[0].nodes)
    assert c.graphs[0] == dlc.read(out).graphs[0]


def _conv1d_onnx(path: Path) -> Path:
    """A 1-D Conv: the vendor's lowering takes it, ctxbin's refuses (2-D spatial only)."""
    import numpy as np

    w = np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32)
    m = oracle._model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1])],
                      [oracle._vi("x", [1, 3, 16])], [oracle._vi("y", [1, 4, 16])], {"w": w})
    onnx.save(m, path)
    return path


def test_convert_many_qnn_ir_is_one_child_and_matches_convert(conv_onnx: Path, tmp_path: Path) -> None:
    oracle.require_qnn()
    other = tmp_path / "other.onnx"
    onnx.save(oracle.float_conv_net(seed=5), other)
    (tmp_path / "work").mkdir()
    made = cv.convert_many([conv_onnx, other], ["a", None], tmp_path / "work", route="qnn-ir")
    assert [c.graph_names for c in made] == [["a"], ["g"]]
    # one dump folder per model, nothing else written
    assert len([p for p in (tmp_path / "work").iterdir() if p.is_dir()]) == 2
    single = cv.convert(conv_onnx, tmp_path / "a.dlc", name="a", route="qnn-ir")
    assert made[0].graphs[0] == single.graphs[0]


def test_convert_many_ctxbin_route_lowers_in_memory(conv_onnx: Path, tmp_path: Path) -> None:
    conv1d = _conv1d_onnx(tmp_path / "conv1d.onnx")
    (tmp_path / "work").mkdir()
    (made,) = cv.convert_many([conv_onnx], ["own"], tmp_path / "work", route="ctxbin")
    own = cv.convert(conv_onnx, tmp_path / "own.dlc", name="own", route="ctxbin")
    assert made.graphs[0] == own.graphs[0]  # ctxbin's lowering, never written to a DLC
    assert made.source == str(conv_onnx)
    assert not any((tmp_path / "work").iterdir())
    with pytest.raises(UnsupportedOpError, match="rank-3"):
        cv.convert_many([conv1d], [None], tmp_path / "work", route="ctxbin")


def test_convert_many_auto_is_the_vendor_route_where_it_runs(conv_onnx: Path, tmp_path: Path) -> None:
    oracle.require_qnn()
    conv1d = _conv1d_onnx(tmp_path / "conv1d.onnx")
    (tmp_path / "work").mkdir()
    made = cv.convert_many([conv_onnx, conv1d], ["a", "b"], tmp_path / "work")
    assert [c.graph_names for c in made] == [["a"], ["b"]]
    assert "Conv2d" in {n.op_type for n in made[1].graphs[0].nodes}  # the vendor made 1-D a 2-D conv


def test_convert_many_names_the_model_that_failed(conv_onnx: Path, tmp_path: Path) -> None:
    oracle.require_qnn()
    m = oracle._model(
        [helper.make_node("NonZero", ["x"], ["y"])],
        [oracle._vi("x", [2, 3])], [oracle._vi("y", [2, None], TensorProto.INT64)], {},
    )
    onnx.save(m, tmp_path / "nz.onnx")
    with pytest.raises(BackendError, match=r"could not convert .*nz\.onnx"):
        cv.convert_many([conv_onnx, tmp_path / "nz.onnx"], [None, None], tmp_path, route="qnn-ir")
    with pytest.raises(InputError, match="2 models but 1 names"):
        cv.convert_many([conv_onnx, tmp_path / "nz.onnx"], [None], tmp_path)
    with pytest.raises(InputError, match="route"):
        cv.convert_many([conv_onnx], [None], tmp_path, route="magic")
