"""The ONNX reader's UTF-8 check: a second parse of the model as a message
whose strings protobuf verifies (ONNX's schema restated in edition 2023),
with the field walk naming any culprit, and for large models instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ctxbin.errors import FormatError
from ctxbin.formats import onnx as onnx_format
from tests.models import IR_VERSION, build_transformer

ONNX_TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _verifying():
    cls = onnx_format._verifying_model()
    if cls is None:
        pytest.skip("this protobuf cannot build the verifying schema (editions): the walk does the check")
    return cls


def test_verifying_schema_reads_real_models_like_onnx():
    # the onnx wheel's own test models: same fields, same bytes back
    cls = _verifying()
    paths = sorted(ONNX_TEST_DATA.rglob("*.onnx"))
    if not paths:
        pytest.skip(f"no test models under {ONNX_TEST_DATA}")
    models = [p.read_bytes() for p in paths] + [build_transformer(8, tiny=True).SerializeToString()]
    for data in models:
        ours = cls.FromString(data)
        assert ours.SerializeToString(deterministic=True) == onnx.ModelProto.FromString(data).SerializeToString(
            deterministic=True)


def _bad_model(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    node = helper.make_node("Add", ["x", "w"], ["y"], name="add", doc_string="ZZZZ")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]))
    model.ir_version = IR_VERSION
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString().replace(b"ZZZZ", b"\xc3\x28ab"))
    return path


@pytest.mark.parametrize("reparse_max", [onnx_format._REPARSE_MAX, 0])
def test_bad_utf8_is_named_by_either_check(tmp_path, monkeypatch, reparse_max):
    # a second parse (small models) and the walk alone (large ones) both refuse
    # it; the walk names the field
    monkeypatch.setattr(onnx_format, "_REPARSE_MAX", reparse_max)
    with pytest.raises(FormatError, match="not valid UTF-8") as e:
        onnx_format.read(_bad_model(tmp_path))
    assert e.value.obj == "ModelProto.graph.node[0].doc_string"


def test_clean_model_is_not_walked(tmp_path, monkeypatch):
    _verifying()
    path = tmp_path / "t.onnx"
    onnx.save(build_transformer(8, tiny=True), path)

    class NoWalk:
        def __getattr__(self, name):
            raise AssertionError("the field walk ran on a clean model")

    monkeypatch.setattr(onnx_format, "FieldDescriptor", NoWalk())
    assert onnx_format.read(path).graphs
    monkeypatch.setattr(onnx_format, "_REPARSE_MAX", 0)
    with pytest.raises(AssertionError, match="walk ran"):  # the walk's stand-in is live
        onnx_format.read(path)
