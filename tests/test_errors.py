"""Error messages stay bounded when names from a hostile file are huge."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import ctxbin
from ctxbin.errors import MESSAGE_PART_LIMIT, FormatError


def test_format_error_clips_long_parts_but_keeps_both_ends() -> None:
    name = "head-" + "x" * 1_000_000 + "-tail"
    err = FormatError(f"duplicate tensor name {name!r}", path="m.ctxbin", obj=f"tensor {name!r}", offset=77)
    text = str(err)
    assert len(text) < 3 * MESSAGE_PART_LIMIT
    assert text.startswith("m.ctxbin: tensor 'head-")
    assert "-tail'" in text and "characters elided" in text and text.count("offset 77") == 1
    assert FormatError("short", obj="tensor 'w'").obj == "tensor 'w'"


def test_a_file_with_huge_duplicate_names_gives_a_short_error(tmp_path) -> None:
    big = "w" * 300_000
    init = [onnx.numpy_helper.from_array(np.ones(4, np.float32), big) for _ in range(2)]
    node = onnx.helper.make_node("Add", [big, "x"], ["y"])
    io = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4]) for n in ("x", "y")]
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", io[:1], io[1:], init))
    path = tmp_path / "dup.onnx"
    onnx.save(model, path)
    with pytest.raises(FormatError) as info:
        ctxbin.from_onnx(path)
    assert "characters elided" in str(info.value)
    assert len(str(info.value)) < 3 * MESSAGE_PART_LIMIT
