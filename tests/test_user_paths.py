"""What users run into: the library and the CLI used the way the README shows,
with the inputs people really pass (odd input lists, wrong types, names in
any script, a target path that is also an input)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import ctxbin
from ctxbin.cli import main
from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob


def _graph(name: str = "g", x: str = "x", y: str = "y", w: str = "w") -> Graph:
    """y = x + w over 4 floats."""
    xt = Tensor(x, DType.FLOAT32, (4,), TensorKind.INPUT)
    wt = Tensor(w, DType.FLOAT32, (4,), TensorKind.STATIC, data=Blob.from_array(np.arange(4, dtype=np.float32)))
    yt = Tensor(y, DType.FLOAT32, (4,), TensorKind.OUTPUT)
    return Graph(name, (xt,), (yt,), (Node("add", "Add", "onnx", (x, w), (y,)),),
                 {t.name: t for t in (xt, wt, yt)}, opsets={"": 17})


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.ctxbin"
    ctxbin.save(Container((_graph(),)), path)
    return path


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_takes_a_mapping_and_says_so(model):
    g = ctxbin.load(model).graph("g")
    with pytest.raises(ctxbin.InputError, match=r"mapping \{input name: array\}.*\['x'\].*ndarray"):
        g.run(np.zeros(4, np.float32), backend="emulator")


def test_input_list_with_crlf_comments_and_blank_lines(model, tmp_path, capsys):
    np.full(4, 1, np.float32).tofile(tmp_path / "a.raw")
    np.save(tmp_path / "b.npy", np.full(4, 2, np.float32))
    (tmp_path / "list.txt").write_bytes(b"# comment\r\n\r\n  a.raw  \r\n \t\r\nx:=b.npy\r\n")
    rc, out, err = run_cli(capsys, "run", model, "--graph", "g", "--input-list", tmp_path / "list.txt",
                           "--output-dir", tmp_path / "out", "--backend", "auto")
    assert rc == 0 and "2 time(s) on emulator" in out
    for i, v in enumerate((1, 2)):
        np.testing.assert_array_equal(np.fromfile(tmp_path / "out" / f"Result_{i}" / "y.raw", np.float32),
                                      np.arange(4) + v)
    assert err.count("note: HTP not used") == 1  # said once, not per inference


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a b.raw\n", "separated by whitespace"),  # a path with a space: documented as unsupported
        (b"missing.raw\n", "list.txt:1: no file 'missing.raw' for input 'x'"),
        (b"# only a comment\n\n", "names no inference"),
        (b"\xff\xfe a.raw\n", "not a UTF-8 text input list"),
        (b"obj.npy\n", "cannot be read as a numeric .npy"),
        (b"notnpy.npy\n", "cannot be read as a numeric .npy"),
    ],
)
def test_bad_input_lists_are_clear_errors_and_leave_no_output(model, tmp_path, capsys, content, message):
    np.zeros(4, np.float32).tofile(tmp_path / "a.raw")
    np.zeros(4, np.float32).tofile(tmp_path / "a b.raw")
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    (tmp_path / "notnpy.npy").write_bytes(b"\0" * 16)
    (tmp_path / "list.txt").write_bytes(content)
    rc, out, err = run_cli(capsys, "run", model, "--graph", "g", "--input-list", tmp_path / "list.txt",
                           "--output-dir", tmp_path / "out")
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_link_include_typo_is_an_error(model, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "link", model, model, "--names", "a,b", "--include", "wx",
                           "-o", tmp_path / "o.ctxbin")
    assert rc == 2 and "'wx'" in err and not (tmp_path / "o.ctxbin").exists()


def test_link_json_does_not_report_equal_tensors_kept_apart(model, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "link", model, model, "--names", "a,b", "--share", "content",
                         "--exclude", "w", "-o", tmp_path / "o.ctxbin", "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["excluded"] == ["w"] and rep["same_name_different_content"] == []
    assert rep["bytes_after"] == rep["bytes_before"] == 32


def test_input_given_twice_in_a_line_is_an_error(tmp_path, capsys):
    x = Tensor("x", DType.FLOAT32, (4,), TensorKind.INPUT)
    z = Tensor("z", DType.FLOAT32, (4,), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (4,), TensorKind.OUTPUT)
    g = Graph("two", (x, z), (y,), (Node("add", "Add", "onnx", ("x", "z"), ("y",)),),
              {t.name: t for t in (x, z, y)}, opsets={"": 17})
    ctxbin.save(Container((g,)), tmp_path / "two.ctxbin")
    np.zeros(4, np.float32).tofile(tmp_path / "a.raw")
    (tmp_path / "list.txt").write_text("x:=a.raw x:=a.raw\n")
    rc, _, err = run_cli(capsys, "run", tmp_path / "two.ctxbin", "--graph", "two", "--input-list",
                         tmp_path / "list.txt", "--output-dir", tmp_path / "out")
    assert rc == 2 and "list.txt:1: input 'x' is given twice" in err


def test_inspect_of_a_linked_dlc_sees_the_weights_stored_once(tmp_path):
    g = _graph()
    qnn = dataclasses.replace(g, nodes=(Node("add", "ElementWiseAdd", "qnn", ("x", "w"), ("y",), {}, "qti.aisw"),))
    c, report = ctxbin.link([qnn, qnn], names=["a", "b"])
    ctxbin.save(c, tmp_path / "ab.dlc")
    back = ctxbin.load(tmp_path / "ab.dlc")
    assert back.graph("a").tensors["w"].data is back.graph("b").tensors["w"].data
    w = ctxbin.inspect(tmp_path / "ab.dlc")["weights"]
    assert (w["total_bytes"], w["unique_bytes"], w["shared_bytes"]) == (32, 16, 16) == (
        report.bytes_before, report.bytes_after, report.bytes_saved)


def test_save_to_each_extension_works_or_says_why(tmp_path):
    one = Container((_graph(),))
    two, _ = ctxbin.link([_graph(), _graph()], names=["a", "b"])
    ctxbin.save(one, tmp_path / "one.onnx")
    assert ctxbin.load(tmp_path / "one.onnx").graphs[0].run({"x": np.ones(4, np.float32)})["y"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ctxbin.CtxbinError, match=r"has 2: save one with graph=NAME .*'a', 'b'.*\.ctxbin or \.dlc"):
        ctxbin.save(two, tmp_path / "two.onnx")
    with pytest.raises(ctxbin.CtxbinError, match=r"\.bin.*compile_htp.*--soc-model"):
        ctxbin.save(one, tmp_path / "one.bin")
    with pytest.raises(ctxbin.FormatError, match="convert the graph first"):
        ctxbin.save(one, tmp_path / "one.dlc")
    with pytest.raises(ctxbin.CtxbinError, match="cannot tell the format"):
        ctxbin.save(one, tmp_path / "one.txt")
    empty = Container(())
    ctxbin.save(empty, tmp_path / "empty.ctxbin")
    assert ctxbin.load(tmp_path / "empty.ctxbin").graph_names == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.ctxbin", "one.onnx"]  # nothing half-written


def _symbolic_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    s = numpy_helper.from_array(np.array(2.0, np.float32), "s")  # a rank-0 weight
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Mul", ["h", "s"], ["y"])], "sym",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w, s],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_symbolic_batch_runs_round_trips_and_is_refused_by_convert(tmp_path):
    src = _symbolic_onnx(tmp_path / "sym.onnx")
    ctxbin.save(ctxbin.load(src), tmp_path / "sym.ctxbin")
    g = ctxbin.load(tmp_path / "sym.ctxbin").graph("sym")
    assert g.inputs[0].shape == ("batch", 4) and g.tensors["s"].numpy().shape == ()
    for batch in (1, 5):
        y = g.run({"x": np.ones((batch, 4), np.float32)}, backend="emulator")["y"]
        np.testing.assert_array_equal(y, np.full((batch, 3), 8, np.float32))
    from ctxbin.convert import convert

    # whichever route "auto" picks, the same clear error, before any work
    with pytest.raises(ctxbin.ShapeError, match=r"\['x'\] have symbolic.*x: \('batch', 4\)"):
        convert(src, tmp_path / "sym.dlc")
    assert not (tmp_path / "sym.dlc").exists()


def test_run_refuses_outputs_that_would_share_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x = Tensor("x", DType.FLOAT32, (2,), TensorKind.INPUT)
    a = Tensor("a/b", DType.FLOAT32, (2,), TensorKind.OUTPUT)
    b = Tensor("a_b", DType.FLOAT32, (2,), TensorKind.OUTPUT)
    nodes = (Node("n1", "Relu", "onnx", ("x",), ("a/b",)), Node("n2", "Relu", "onnx", ("x",), ("a_b",)))
    g = Graph("g", (x,), (a, b), nodes, {t.name: t for t in (x, a, b)}, opsets={"": 17})
    ctxbin.save(Container((g,)), tmp_path / "g.ctxbin")
    np.ones(2, np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    rc = main(["run", str(tmp_path / "g.ctxbin"), "--graph", "g", "--input-list", str(tmp_path / "list.txt"),
               "--output-dir", str(tmp_path / "out")])
    assert rc == 2 and "'a/b' and 'a_b'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
