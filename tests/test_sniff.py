"""Format detection from a file's first bytes (``ctxbin.load`` on any file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ctxbin
from ctxbin import formats
from ctxbin.ir import Container, DType, Graph, Tensor, TensorKind
from ctxbin.weights import Blob
from tests.shared_data import DLC_DIR

DLC_V3 = DLC_DIR / "mlcommons_v1_0_deeplabv3_hta.dlc"


def test_each_format_is_recognised(tiny_models, tmp_path: Path) -> None:
    w = Tensor("w", DType.FLOAT32, (2,), TensorKind.STATIC, data=Blob.from_array(np.ones(2, np.float32)))
    ctxbin.save(Container((Graph("g", (), (), (), {"w": w}),)), tmp_path / "a.ctxbin")
    assert formats.detect(tmp_path / "a.ctxbin") == "ctxbin"
    assert formats.detect(tiny_models["fcn_portrait"]) == "onnx"
    if DLC_V3.exists():
        assert formats.detect(DLC_V3) == "dlc"
    # the format comes from the bytes, not the name
    (tmp_path / "misnamed.onnx").write_bytes((tmp_path / "a.ctxbin").read_bytes())
    assert ctxbin.load(tmp_path / "misnamed.onnx").graph_names == ["g"]


@pytest.mark.parametrize("data", [b"", b"\0" * 64, b"PK\x03\x04" + b"\0" * 60, b"\x00\x00\x00\x02" * 4, b"hello"])
def test_unknown_bytes_are_a_format_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(data)
    with pytest.raises(ctxbin.FormatError, match="x.bin"):
        ctxbin.load(p)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.ctxbin"):
        ctxbin.load(tmp_path / "nope.ctxbin")
