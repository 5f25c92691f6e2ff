"""The ``ctxbin`` command line, run as users run it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ctxbin
from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "ctxbin", *map(str, args)], capture_output=True, text=True, env=env
    )
    if check and r.returncode != 0:
        raise AssertionError(f"ctxbin {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def linked(tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "fcn.ctxbin"
    cli("link", tiny_models["fcn_landscape"], tiny_models["fcn_portrait"], "--names", "landscape,portrait", "-o", out)
    return out


def test_link_json_report(tiny_models, tmp_path):
    out = tmp_path / "t.ctxbin"
    r = cli("link", tiny_models["transformer_ar128"], tiny_models["transformer_ar1"],
            "--names", "prompt,token", "-o", out, "--json")
    rep = json.loads(r.stdout)
    assert rep["bytes_after"] * 2 == rep["bytes_before"] and rep["bytes_saved"] == rep["bytes_after"]
    assert [g["name"] for g in rep["graphs"]] == ["prompt", "token"]
    assert all(g["shared_fraction"] == 1.0 for g in rep["graphs"])
    assert rep["output_bytes"] == out.stat().st_size
    assert "\r" not in r.stderr  # no progress bar when not on a terminal


def test_link_text_report_and_share_none(tiny_models, tmp_path):
    r = cli("link", tiny_models["fcn_landscape"], tiny_models["fcn_portrait"], "--names", "a,b",
            "-o", tmp_path / "x.ctxbin", "--share", "none")
    assert "sharing: none" in r.stdout and "0.0% of" in r.stdout


def test_inspect_text_and_json(linked):
    r = cli("inspect", linked)
    assert "landscape" in r.stdout and "portrait" in r.stdout and "image: float32 [1x3x384x256]" in r.stdout
    assert "Conv x" in r.stdout
    s = json.loads(cli("inspect", linked, "--json").stdout)
    g = s["graphs"][0]
    assert g["weight_types"] == {"float32": g["weight_count"]} and f"weight types: float32 x{g['weight_count']}" in r.stdout
    assert s["format"] == "ctxbin" and [g["name"] for g in s["graphs"]] == ["landscape", "portrait"]
    w = s["weights"]
    assert w["total_bytes"] == 2 * w["unique_bytes"] == 2 * w["shared_bytes"]
    assert s["graphs"][0]["inputs"] == [{"name": "image", "dtype": "float32", "shape": [1, 3, 256, 384]}]


def test_inspect_sanitizes_names_from_files(tmp_path):
    evil = "g\x1b[31mred\x07"
    arr = np.ones(2, np.float32)
    x = Tensor("in\x1b]0;title\x07", DType.FLOAT32, (2,), TensorKind.INPUT)
    w = Tensor("w", DType.FLOAT32, (2,), TensorKind.STATIC, data=Blob.from_array(arr))
    y = Tensor("y", DType.FLOAT32, (2,), TensorKind.OUTPUT)
    g = Graph(evil, (x,), (y,), (Node("n", "Add", "onnx", (x.name, "w"), ("y",)),), {t.name: t for t in (x, w, y)})
    ctxbin.save(Container((g,)), tmp_path / "evil.ctxbin")
    r = cli("inspect", tmp_path / "evil.ctxbin")
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "g\\x1b[31mred\\x07" in r.stdout


def test_run_with_raw_and_named_inputs(linked, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 384, 256), dtype=np.float32)
    x.tofile(tmp_path / "a.raw")
    np.save(tmp_path / "b.npy", x)
    (tmp_path / "list.txt").write_text("# two inferences\na.raw\nimage:=b.npy\n")
    out = tmp_path / "out"
    cli("run", linked, "--graph", "portrait", "--input-list", tmp_path / "list.txt", "--output-dir", out,
        "--backend", "emulator")
    r0 = np.fromfile(out / "Result_0" / "out.raw", np.float32).reshape(1, 21, 384, 256)
    r1 = np.fromfile(out / "Result_1" / "out.raw", np.float32).reshape(1, 21, 384, 256)
    want = ctxbin.load(linked).graph("portrait").run({"image": x}, backend="emulator")["out"]
    np.testing.assert_array_equal(r0, want)
    np.testing.assert_array_equal(r1, want)
    cli("run", linked, "--graph", "portrait", "--input-list", tmp_path / "list.txt", "--output-dir", out, "--npy")
    np.testing.assert_array_equal(np.load(out / "Result_0" / "out.npy"), want)


def test_run_errors_are_clear(linked, tmp_path):
    (tmp_path / "x.raw").write_bytes(b"\0" * 12)
    (tmp_path / "list.txt").write_text("x.raw\n")
    r = cli("run", linked, "--graph", "nope", "--input-list", tmp_path / "list.txt", "--output-dir", tmp_path, check=False)
    assert r.returncode == 2 and "'landscape', 'portrait'" in r.stderr
    r = cli("run", linked, "--graph", "portrait", "--input-list", tmp_path / "list.txt", "--output-dir", tmp_path, check=False)
    assert r.returncode == 2 and "12 bytes" in r.stderr and "1179648" in r.stderr


def test_check_exit_codes(linked, tmp_path):
    assert "ok" in cli("check", linked).stdout
    data = bytearray(linked.read_bytes())
    data[-100] ^= 0x55  # inside the last weight blob
    bad = tmp_path / "bad.ctxbin"
    bad.write_bytes(bytes(data))
    r = cli("check", bad, check=False)
    assert r.returncode == 1 and "bad.ctxbin" in r.stdout
    (tmp_path / "junk.ctxbin").write_bytes(b"not a model at all")
    r = cli("check", tmp_path / "junk.ctxbin", check=False)
    assert r.returncode == 1 and "junk.ctxbin" in r.stdout


def test_version_and_help():
    assert ctxbin.__version__ in cli("--version").stdout
    assert "link" in cli("--help").stdout


def test_link_shows_progress_on_a_terminal_only(tiny_models, tmp_path):
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "ctxbin", "link", str(tiny_models["fcn_landscape"]), str(tiny_models["fcn_portrait"]),
         "--names", "a,b", "-o", str(tmp_path / "p.ctxbin")],
        stdout=subprocess.PIPE, stderr=slave, env=env, timeout=120,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other end is closed and drained
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert r.returncode == 0
    assert b"hashing weights [" in seen and b"100.0%" in seen
    assert b"\r" not in r.stdout  # the report itself stays clean


def test_link_to_a_real_htp_binary(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime_qnn", reason="compiling for HTP needs the QNN libraries from onnxruntime-qnn")
    out = tmp_path / "fcn.bin"
    r = cli("link", tiny_models["fcn_landscape"], tiny_models["fcn_portrait"], "--names", "landscape,portrait",
            "--soc-model", "60", "--htp-arch", "75", "-o", out)
    assert "compiled 2 graphs (landscape, portrait)" in r.stdout and "100.0% of" in r.stdout
    s = json.loads(cli("inspect", out, "--json").stdout)
    assert s["format"] == "qnn" and [g["name"] for g in s["graphs"]] == ["landscape", "portrait"]
    assert int(s["metadata"]["shared_weights_size"]) > 0
    r = cli("link", tiny_models["fcn_landscape"], "-o", tmp_path / "x.bin", check=False)
    assert r.returncode == 2 and "--soc-model and --htp-arch" in r.stderr
