"""DLCs written by ctxbin open in the open-source Netron viewer (issue 3).

Netron's own DLC reader (the JavaScript shipped in the ``netron`` PyPI package)
is run under Node.js by ``netron_harness.mjs``, which prints what Netron decoded
and what it would draw. Each file must show the graph names, nodes (name, op
type, inputs, outputs, scalar params) and tensors (name, role, dtype, shape)
that ``ctxbin.load`` reads from it; a file ctxbin rewrites from a vendor DLC
must look to Netron exactly like the vendor's file.

Two things Netron 9.3 does that are not about ctxbin's files, and which these
tests allow for:
- its model keeps only the *last* graph of a multi-graph DLC as the one it draws
  (its reader decodes them all); every graph it draws must match;
- it takes weight bytes from the params table's inline ``bytes`` field only, so
  for DLC 4.1 files, whose bytes live in ``model.params.bin`` (the vendor's files
  too), it attaches empty weights; any bytes it does attach must be ctxbin's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ctxbin
from ctxbin.convert import convert
from ctxbin.ir import DType, Graph, TensorKind

from . import dlc_oracle as oracle
from .models import build_fcn, save_with_external_data
from .shared_data import DLC_DIR

HARNESS = Path(__file__).with_name("netron_harness.mjs")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def netron_dir() -> Path:
    """The installed ``netron`` package's directory (it holds Netron's JavaScript)."""
    if shutil.which("node") is None:
        pytest.skip("Node.js (`node`) is not on PATH; it runs Netron's DLC reader")
    # Netron's .js files are ES modules without a package.json saying so; Node
    # loads them as such only where it detects module syntax by default.
    found = subprocess.run(["node", "--version"], check=False, capture_output=True, text=True).stdout.strip()
    version = tuple(int(x) for x in found.lstrip("v").split(".")[:2])
    if not (version >= (22, 7) or (20, 19) <= version < (21, 0)):
        pytest.skip(f"Node.js {found} does not load Netron's ES modules; needs 20.19+ or 22.7+")
    spec = importlib.util.find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the `netron` package is not installed (pip install netron); it ships Netron's DLC reader")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "dlc.js").is_file():
        pytest.skip(f"the installed `netron` package has no dlc.js in {folder}")
    return folder


def netron(netron_dir: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(HARNESS), str(netron_dir), str(path)], check=False, capture_output=True, text=True, timeout=60
    )


def netron_view(netron_dir: Path, path: Path) -> dict[str, Any]:
    """What Netron makes of ``path``; fails the test with Netron's message if it refuses it."""
    proc = netron(netron_dir, path)
    assert proc.returncode == 0, f"Netron could not open {path.name}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def netron_dtype(dtype: DType) -> str:
    """The name Netron's DLC reader gives a QNN data type code."""
    special = {DType.BOOL8: "boolean", DType.STRING: "string", DType.UNDEFINED: "undefined"}
    if dtype in special:
        return special[dtype]
    kind = {0: "int", 1: "uint", 2: "float", 3: "qint", 4: "quint"}[dtype.value >> 8]
    return f"{kind}{dtype.value & 0xFF:x}"


def expected_nodes(g: Graph) -> list[dict[str, Any]]:
    return [{"name": n.name, "type": n.op_type, "inputs": list(n.inputs), "outputs": list(n.outputs)} for n in g.nodes]


def assert_graph_agrees(g: Graph, shown: dict[str, Any]) -> None:
    """Netron's decoded v4 graph ``shown`` carries what ctxbin reads as ``g``."""
    assert shown["name"] == g.name
    nodes = [{k: n[k] for k in ("name", "type", "inputs", "outputs")} for n in shown["nodes"]]
    assert nodes == expected_nodes(g)
    for node, n in zip(g.nodes, shown["nodes"]):
        attrs = {a["name"]: a for a in n["attributes"]}
        # ctxbin keeps the op package as the node's domain, not as a param
        assert attrs.pop("packageName")["value"] == node.domain
        assert set(attrs) == set(node.attrs), node.name
        for name, a in attrs.items():
            ours = node.attrs[name]
            if a["type"] == "tensor":
                assert a["sha256"] in (EMPTY_SHA256, hashlib.sha256(np.ascontiguousarray(ours).tobytes()).hexdigest())
            elif isinstance(ours, (float, np.floating)):
                assert a["value"] == pytest.approx(float(ours), rel=1e-6), (node.name, name)
            else:
                assert a["value"] == ours, (node.name, name)
    tensors = {t["name"]: t for t in shown["tensors"]}
    assert set(tensors) == set(g.tensors)
    for name, t in g.tensors.items():
        seen = tensors[name]
        assert (seen["location"], seen["dtype"], seen["shape"]) == (int(t.kind), netron_dtype(t.dtype), list(t.shape)), name
        if t.kind == TensorKind.STATIC:
            ours = hashlib.sha256(np.ascontiguousarray(t.numpy()).tobytes()).hexdigest()
            assert seen["sha256"] in (EMPTY_SHA256, ours), name


def assert_file_agrees(netron_dir: Path, path: Path) -> dict[str, Any]:
    """Netron opens ``path`` and shows what ``ctxbin.load`` reads from it."""
    view = netron_view(netron_dir, path)
    c = ctxbin.load(path)
    assert view["format"] == "DLC"
    assert view["version"]["major"] == 4
    assert [g["name"] for g in view["graphs"]] == c.graph_names
    for g, shown in zip(c.graphs, view["graphs"]):
        assert_graph_agrees(g, shown)
    # what Netron draws: at least one graph, each one node for node as ctxbin reads it
    assert view["modules"]
    for module in view["modules"]:
        g = c.graph(module["name"])
        assert [{k: n[k] for k in ("name", "type", "inputs", "outputs")} for n in module["nodes"]] == expected_nodes(g)
        assert module["values"] == len(g.tensors)
        assert module["initializers"] == sum(t.kind == TensorKind.STATIC for t in g.tensors.values())
    return view


@pytest.fixture(scope="module")
def fcn_dlcs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny FCN at two input shapes converted by ctxbin (no QNN libraries),
    and the two graphs linked into one DLC."""
    tmp = tmp_path_factory.mktemp("fcn")
    paths = {}
    for name, (h, w) in {"landscape": (64, 96), "portrait": (96, 64)}.items():
        src = tmp / f"{name}.onnx"
        save_with_external_data(build_fcn(h, w, tiny=True), src)
        paths[name] = tmp / f"{name}.dlc"
        convert(src, paths[name], name=name, route="ctxbin")
    both, _ = ctxbin.link([ctxbin.load(paths["landscape"]), ctxbin.load(paths["portrait"])])
    paths["both"] = tmp / "both.dlc"
    ctxbin.save(both, paths["both"])
    return paths


def test_single_graph_dlc_opens(netron_dir: Path, fcn_dlcs: dict[str, Path]) -> None:
    view = assert_file_agrees(netron_dir, fcn_dlcs["landscape"])
    assert [m["name"] for m in view["modules"]] == ["landscape"]
    types = {n["type"] for n in view["graphs"][0]["nodes"]}
    assert {"Conv2d", "Neuron", "Eltwise_Binary", "Pool", "Transpose"} <= types


def test_linked_two_graph_dlc_opens(netron_dir: Path, fcn_dlcs: dict[str, Path]) -> None:
    view = assert_file_agrees(netron_dir, fcn_dlcs["both"])
    assert [g["name"] for g in view["graphs"]] == ["landscape", "portrait"]
    # same network at two shapes: same ops, different activation shapes
    a, b = view["graphs"]
    assert [n["type"] for n in a["nodes"]] == [n["type"] for n in b["nodes"]]
    shapes = [{t["name"]: t["shape"] for t in g["tensors"]} for g in (a, b)]
    assert [s["image"] for s in shapes] == [[1, 3, 64, 96], [1, 3, 96, 64]]


@pytest.mark.parametrize("name", ["qdq_tensor", "qdq_channel"])
def test_quantized_dlc_rewritten_by_ctxbin_looks_like_the_vendors(
    netron_dir: Path, tmp_path: Path, name: str
) -> None:
    vendor = oracle.make_dlcs({name: oracle.MODELS[name]()}, tmp_path)[name]
    ours = tmp_path / f"{name}_ctxbin.dlc"
    ctxbin.save(ctxbin.load(vendor), ours)
    view = assert_file_agrees(netron_dir, ours)
    assert view == netron_view(netron_dir, vendor)
    dtypes = {t["dtype"] for t in view["graphs"][0]["tensors"]}
    assert {"quint8", "qint8", "qint32"} <= dtypes


def test_real_v3_dlc_sanity(netron_dir: Path) -> None:
    """The harness reads a real v3 DLC as ctxbin does (Netron reads v3 too)."""
    path = DLC_DIR / "mlcommons_v1_0_deeplabv3_hta.dlc"
    if not path.is_file():
        pytest.skip(f"real DLC test data not found at {path}")
    view = netron_view(netron_dir, path)
    (g,) = ctxbin.load(path).graphs
    assert view["version"] == {"major": 3, "minor": 0}
    (shown,) = view["graphs"]
    assert [(n["name"], n["type"]) for n in shown["nodes"]] == [(n.name, n.op_type) for n in g.nodes]
    assert [n["outputs"] for n in shown["nodes"]] == [list(n.outputs) for n in g.nodes]
    (module,) = view["modules"]
    assert module["values"] == len(g.tensors)


def test_harness_reports_what_netron_refuses(netron_dir: Path, tmp_path: Path) -> None:
    """A file Netron refuses fails the harness with Netron's message (so a pass above means something)."""
    v2 = DLC_DIR / "openpilot_monitoring_model_v2.dlc"
    if v2.is_file():
        proc = netron(netron_dir, v2)
        assert proc.returncode == 1 and "DLC v2" in proc.stderr
    junk = tmp_path / "junk.dlc"
    junk.write_bytes(b"not a model at all\n" * 8)
    proc = netron(netron_dir, junk)
    assert proc.returncode == 1 and "does not recognise" in proc.stderr
