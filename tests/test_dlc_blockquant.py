"""Bit-width and block (LPBQ) quantization encodings in real v4 DLCs.

The QNN IR backend in onnxruntime-qnn writes them from ONNX models with int4
weights (opset 21 ``DequantizeLinear``): per-tensor → BW_SCALE_OFFSET,
per-channel → BW_AXIS_SCALE_OFFSET, an int4 block-quantized weight whose
per-block scales are themselves dequantized from uint8 × per-channel float →
BLOCKWISE_EXPANSION (LPBQ), a plain float-scale block weight → BW_FLOAT_BLOCK
(written without its scales: refused). Every decoded field is checked against
the source ONNX, the dequantized weights and the emulator against onnxruntime
CPU running the source, both code paths, and hostile edits of the new tables.
LPBQ is written back in the vendor's tables, which its own DLC loader
composes into the same HTP binary as from its file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from ctxbin.errors import BackendUnavailableError, FormatError
from ctxbin.flatbuf import FlatBuffer, Rows, walk
from ctxbin.formats import dlc
from ctxbin.ir import Container, DType, Graph, Node, QuantEncoding, QuantKind, Tensor, TensorKind
from ctxbin.weights import Blob
from ctxbin.ziparchive import ZipArchive

from . import dlc_oracle as oracle
from .native_paths import both_paths, needs_native
from .test_dlc_native import _entries, _rezip, _summary, _walks, record_c_checks

_ACT_SCALE, _OUT_SCALE = 0.001, 0.01  # uint16 activations in, out (one output step: _OUT_SCALE)


def _int4(name: str, a: np.ndarray) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT4, a.shape, a.ravel().tolist())


def _qdq(x: str, out: str, scale: float) -> tuple[list, dict]:
    inits = {f"{x}_s": np.array(scale, np.float32), f"{x}_z": np.array(32768, np.uint16)}
    return [helper.make_node("QuantizeLinear", [x, f"{x}_s", f"{x}_z"], [f"{x}_q"]),
            helper.make_node("DequantizeLinear", [f"{x}_q", f"{x}_s", f"{x}_z"], [out])], inits


def _weight_model(kind: str, op: str, k: int, n: int, block: int = 0, seed: int = 0) -> onnx.ModelProto:
    """x (uint16 QDQ) → op(x, DQ(int4 wq)) → uint16 QDQ. ``kind``: ``tensor``,
    ``channel``, ``lpbq`` (int4 blocks of ``block`` along K, scales = DQ(uint8
    × per-channel float)), ``block`` (float per-block scales). ``op``:
    ``MatMul`` (wq [K, N]) or ``Conv`` (1x1, wq [N, K, 1, 1])."""
    rng = np.random.default_rng(seed)
    conv = op == "Conv"
    chan_axis, block_axis = (0, 1) if conv else (1, 0)
    wshape = (n, k, 1, 1) if conv else (k, n)
    nodes, inits = _qdq("x", "xd", _ACT_SCALE)
    inits["wq"] = _int4("wq", rng.integers(-8, 8, wshape).astype(np.int8))
    grid = list(wshape)
    grid[block_axis] = k // block if block else 1
    attrs: dict = {}
    if kind == "tensor":
        inits["ws"], zp = np.array(0.05, np.float32), np.zeros((), np.int8)
    elif kind == "channel":
        inits["ws"], zp, attrs = rng.uniform(0.01, 0.1, n).astype(np.float32), np.zeros(n, np.int8), {"axis": chan_axis}
    else:
        zp, attrs = np.zeros(grid, np.int8), {"axis": block_axis, "block_size": block}
        if kind == "block":
            inits["ws"] = rng.uniform(0.01, 0.1, grid).astype(np.float32)
        else:
            inits["bsq"] = rng.integers(1, 16, grid).astype(np.uint8)
            inits["chs"] = rng.uniform(0.001, 0.01, n).astype(np.float32)
            inits["bsz"] = np.zeros(n, np.uint8)
            nodes.append(helper.make_node("DequantizeLinear", ["bsq", "chs", "bsz"], ["ws"], axis=chan_axis))
    inits["wz"] = _int4("wz", zp)
    nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], **attrs))
    nodes.append(helper.make_node(op, ["xd", "wd"], ["m"]))
    more, more_inits = _qdq("m", "y", _OUT_SCALE)
    nodes += more
    inits.update(more_inits)
    xs, ys = ([1, k, 4, 4], [1, n, 4, 4]) if conv else ([1, 4, k], [1, 4, n])
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)],
        [v if isinstance(v, TensorProto) else numpy_helper.from_array(v, name) for name, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10  # onnxruntime 1.31 refuses the IR 14 that onnx 1.23 writes
    onnx.checker.check_model(m)
    return m


#: name -> (model, the weight's name in the DLC, its layout there from the ONNX weight)
MODELS = {
    "mm_tensor": (lambda: _weight_model("tensor", "MatMul", 64, 16), "wq_transpose", (1, 0)),
    "conv_channel": (lambda: _weight_model("channel", "Conv", 32, 8), "wq", (2, 3, 1, 0)),
    "mm_channel": (lambda: _weight_model("channel", "MatMul", 64, 16, seed=1), "wq_transpose", (1, 0)),
    "mm_lpbq": (lambda: _weight_model("lpbq", "MatMul", 64, 16, block=32, seed=2), "wq", (0, 1)),
    "mm_lpbq_b16": (lambda: _weight_model("lpbq", "MatMul", 128, 8, block=16, seed=3), "wq", (0, 1)),
    "mm_float_block": (lambda: _weight_model("block", "MatMul", 64, 16, block=32, seed=4), "wq", (0, 1)),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, onnx.ModelProto]]:
    oracle.require_qnn()
    models = {name: make() for name, (make, _, _) in MODELS.items()}
    paths = oracle.make_dlcs({name: (m, False) for name, m in models.items()}, tmp_path_factory.mktemp("bq"))
    return {name: (paths[name], models[name]) for name in MODELS}


def _inits(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _ort(m: onnx.ModelProto, outputs: list[str], x: np.ndarray) -> list[np.ndarray]:
    """onnxruntime CPU running the source model as written (any of its values
    as outputs). Without graph optimizations: onnxruntime 1.32 fuses the
    DQ(int4 per-channel) → MatMul → Q chain into a kernel that rounds up to
    two output steps away from the ONNX reference evaluator; unfused it
    agrees with it exactly, as 1.31 did fused."""
    ort = pytest.importorskip("onnxruntime")
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    known = {o.name for o in m2.graph.output}
    m2.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in outputs if o not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m2.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return s.run(outputs, {"x": x})


def _x(m: onnx.ModelProto, seed: int = 0) -> np.ndarray:
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _check_weight(made, name: str) -> QuantEncoding:
    """The weight's bytes are the source's int4 values (in the DLC's layout) one
    per byte, low nibble, high nibble zero; dequantized, they are the values
    onnxruntime computes for the source's DQ chain."""
    path, m = made[name]
    (g,) = dlc.read(path).graphs
    t = g.tensors[MODELS[name][1]]
    perm = MODELS[name][2]
    wq = _inits(m)["wq"].astype(np.int8)
    assert t.dtype == DType.SFIXED8 and t.shape == wq.transpose(perm).shape
    assert np.array_equal(t.numpy().view(np.uint8), wq.transpose(perm).astype(np.uint8) & 0x0F)
    (wd,) = _ort(m, ["wd"], _x(m))
    np.testing.assert_allclose(t.encoding.dequantize(t.numpy()), wd.transpose(perm), rtol=1e-6, atol=0)
    return t.encoding


def test_bw_scale_offset(made) -> None:
    e = _check_weight(made, "mm_tensor")
    src = _inits(made["mm_tensor"][1])
    assert e.kind == QuantKind.BW_SCALE_OFFSET and e.axis is None
    assert e.scales == (float(src["ws"]),) and e.offsets == (0,) and e.bitwidth == 4 and e.is_symmetric


@pytest.mark.parametrize("name, axis", [("conv_channel", 3), ("mm_channel", 0)])
def test_bw_axis_scale_offset(made, name: str, axis: int) -> None:
    e = _check_weight(made, name)
    src = _inits(made[name][1])
    assert e.kind == QuantKind.BW_AXIS_SCALE_OFFSET and e.axis == axis and e.bitwidth == 4 and e.is_symmetric
    assert np.array_equal(np.float32(e.scales), src["ws"]) and e.offsets == (0,) * src["ws"].size


@pytest.mark.parametrize("name, block", [("mm_lpbq", 32), ("mm_lpbq_b16", 16)])
def test_lpbq(made, name: str, block: int) -> None:
    e = _check_weight(made, name)
    src = _inits(made[name][1])
    assert e.kind == QuantKind.BLOCKWISE_EXPANSION and e.axis == 1 and e.is_symmetric
    assert np.array_equal(np.float32(e.scales), src["chs"]) and e.offsets == (0,) * src["chs"].size
    assert e.block_size == (block, 1) and e.block_scale_bitwidth == 4 and e.bitwidth == 8 and e.value_bits == 4
    assert e.block_scales == tuple(src["bsq"].T.ravel().tolist())  # channel-major: [N, K / block]


def test_bw_float_block_is_refused_by_name(made) -> None:
    path, _ = made["mm_float_block"]
    assert "model.encodings.bin" in ZipArchive.open(path)
    for _ in both_paths():
        with pytest.raises(FormatError, match=r"/wq: .*encoding 11 \(BW_FLOAT_BLOCK\).*without its per-block scales"):
            dlc.read(path)


@pytest.mark.parametrize("name", [n for n in MODELS if n != "mm_float_block"])
def test_both_paths_and_the_emulator_match_onnxruntime(made, name: str) -> None:
    from ctxbin.runtime.emulator import Emulator

    path, m = made[name]
    a, b = (_summary(path) for _ in both_paths())
    assert a == b and a[0] == "ok"
    (g,) = dlc.read(path).graphs
    x = _x(m, seed=1)
    (ref,) = _ort(m, ["y"], x)
    (got,) = Emulator(g).run({g.inputs[0].name: x}).values()  # the graph's I/O keep the ONNX layout
    # the same int16 grid: at most one output step apart (a rounding tie)
    np.testing.assert_allclose(got, ref, rtol=0, atol=_OUT_SCALE * 1.01)


@needs_native
def test_the_c_checks_accept_the_new_encodings(made, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C core passes every decodable file (no slow path for LPBQ weights)."""
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    results = record_c_checks(monkeypatch)
    for name in MODELS:
        if name != "mm_float_block":
            dlc.read(made[name][0])
    assert len(results) == len(MODELS) - 1 and all(r is not None for r in results)


@pytest.mark.parametrize("name", ["mm_tensor", "conv_channel"])
def test_bw_encodings_write_back(made, name: str, tmp_path: Path) -> None:
    from .test_dlc_vendor import vendor_codes

    path, _ = made[name]
    out = tmp_path / f"{name}.dlc"
    dlc.write(dlc.read(path), out)
    a, b = dlc.read(path).graphs[0], dlc.read(out).graphs[0]
    for t in a.tensors.values():
        u = b.tensors[t.name]
        assert (u.dtype, u.shape, u.encoding) == (t.dtype, t.shape, t.encoding)
        assert t.data is None or u.data.equals(t.data)
    assert vendor_codes([out]) == {out.name: 0}


# ----------------------------------------------------------------------------- hostile tables
def _blockwise_fields(path: Path) -> dict[str, tuple[int, int]]:
    """(offset in the model entry, width) of the LPBQ table's fields and of its
    block-scale count; and of the Quant encoding of the weight."""
    doc = dlc._Doc(ZipArchive.open(path), str(path))
    model = dlc._flatbuffer(doc, "model", doc.entry("model"), b"NETD")
    w = walk(model, dlc._V4_MODEL)
    bx = Rows(model, w.pos("Blockwise"), "Blockwise")
    (q,) = np.flatnonzero(w.scalars("Quant", "encoding") == 5)
    out = {"encoding": (int(Rows(model, w.pos("Quant"), "Quant").field(dlc._V4.Q_ENCODING, 4)[q]), 4)}
    for name, index, width in (("axis", dlc._V4.BX_AXIS, 4), ("blocks", dlc._V4.BX_BLOCKS, 4), ("bits", dlc._V4.BX_BITS, 1)):
        (at,) = bx.field(index, width)
        out[name] = (int(at), width)
    (scales_at,) = w.column("Blockwise", "scales8")[0]
    out["scale_count"] = (int(scales_at) - 4, 4)
    return {k: (at + dlc._PREFIX, width) for k, (at, width) in out.items()}


def _mutated(path: Path, tmp: Path, edits: dict[str, int]) -> Path:
    e = _entries(path)
    fields = _blockwise_fields(path)
    raw = bytearray(e["model"])
    for name, value in edits.items():
        at, width = fields[name]
        raw[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    e["model"] = bytes(raw)
    return _rezip(e, tmp / "m.dlc")


@pytest.mark.parametrize("edits, message", [
    ({"axis": 0}, "axis 0 with 16 channels does not fit shape"),
    ({"axis": 2}, "axis 2 with 16 channels does not fit shape"),
    ({"blocks": 3}, "3 blocks do not split dimension 0"),
    ({"blocks": 0}, "0 blocks do not split"),
    ({"blocks": -2}, "-2 blocks do not split"),
    ({"bits": 0}, "block-scale bitwidth 0"),
    ({"bits": 9}, "block-scale bitwidth 9"),
    ({"scale_count": 31}, "31 block scales, 16 channels x 2 blocks need 32"),
    ({"blocks": 4}, "32 block scales, 16 channels x 4 blocks need 64"),
    ({"encoding": 4}, r"encoding 4 \(BLOCK\) is not decoded by ctxbin: not seen"),
    ({"encoding": 7}, r"encoding 7 \(unknown\)"),
])
def test_bad_lpbq_tables_are_named(made, tmp_path: Path, edits: dict[str, int], message: str) -> None:
    path = _mutated(made["mm_lpbq"][0], tmp_path, edits)
    a, b = (_summary(path) for _ in both_paths())
    assert a == b and a[0] == "error", a
    assert re.search(message, a[2]), a[2]
    assert "/wq" in a[2] and "offset" in a[2]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_lpbq_tables_agree_on_both_paths(made, tmp_path: Path, data: st.DataObject) -> None:
    """Any values in the LPBQ table's fields (or any byte of the model): both
    paths give the same graph or the same FormatError, nothing else."""
    path = made["mm_lpbq"][0]
    fields = _blockwise_fields(path)
    if data.draw(st.booleans()):
        names = data.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
        edits = {n: data.draw(st.one_of(st.integers(-3, 70), st.integers(0, (1 << (8 * fields[n][1])) - 1)))
                 for n in names}
        mutated = _mutated(path, tmp_path, edits)
    else:
        e = _entries(path)
        raw = bytearray(e["model"])
        lo = min(at for at, _ in fields.values()) - 64
        raw[data.draw(st.integers(max(lo, 8), len(raw) - 1))] = data.draw(st.integers(0, 255))
        e["model"] = bytes(raw)
        mutated = _rezip(e, tmp_path / "m.dlc")
    if not _walks(mutated):
        return  # a table the schema walks refuse: test_flatbuf_walk.py compares those
    a, b = (_summary(mutated) for _ in both_paths())
    assert repr(a) == repr(b)  # by repr: a byte edited into a scale can make it NaN, which == never matches


# ----------------------------------------------------------------------------- dequantize
def test_dequantize_narrows_sub_byte_values() -> None:
    e = QuantEncoding(QuantKind.BW_SCALE_OFFSET, (0.5,), (0,), bitwidth=4)
    nibbles = np.array([0, 7, 8, 15, 0x1F], np.uint8).view(np.int8)
    assert e.dequantize(nibbles).tolist() == [0.0, 3.5, -4.0, -0.5, -0.5]  # low nibble, sign-extended
    assert e.dequantize(np.array([-8, 7], np.int8)).tolist() == [-4.0, 3.5]  # already in range: unchanged
    u = QuantEncoding(QuantKind.BW_SCALE_OFFSET, (1.0,), (-8,), bitwidth=4)
    assert u.dequantize(np.array([0x1F, 8], np.uint8)).tolist() == [7.0, 0.0]  # unsigned storage: masked only


def test_lpbq_dequantize_on_conv_layout() -> None:
    """HWIO weights, channels on axis 3, blocks on axis 2 (as QNN lays out Conv2d LPBQ)."""
    rng = np.random.default_rng(0)
    q = rng.integers(-8, 8, (3, 3, 8, 2)).astype(np.int8)
    bs = rng.integers(1, 16, (2, 4))  # [channel, block]
    e = QuantEncoding(QuantKind.BLOCKWISE_EXPANSION, (0.5, 0.25), (0, 0), 3, 8, True, (3, 3, 2, 1),
                      tuple(bs.ravel().tolist()), 4)
    want = q * np.array([0.5, 0.25]) * np.repeat(bs.T, 2, axis=0)[None, None]
    np.testing.assert_array_equal(e.dequantize(q), want.astype(np.float32))
    with pytest.raises(ValueError, match="block scales"):
        QuantEncoding(QuantKind.BLOCKWISE_EXPANSION, (0.5, 0.25), (0, 0), 3, 8, True, (3, 3, 4, 1),
                      tuple(bs.ravel().tolist()), 4).dequantize(q)


def test_conv_lpbq_from_float_blocks(tmp_path: Path) -> None:
    """With ``enable_block_quant_weight_optimization`` the EP turns a Conv's
    float per-block scales into LPBQ: HWIO weights, channels on axis 3, blocks
    along axis 2; each float scale becomes the channel scale times a 4-bit
    integer, so the weights agree with the source within half a channel step
    per unit of the int4 value."""
    oracle.require_qnn()
    m = _weight_model("block", "Conv", 64, 16, block=32, seed=5)
    path = oracle.make_dlcs({"c": (m, False)}, tmp_path, options={"enable_block_quant_weight_optimization": "1"})["c"]
    src = _inits(m)
    wq = src["wq"].astype(np.int8).transpose(2, 3, 1, 0)
    want = (src["wq"] * np.repeat(src["ws"], 32, axis=1)).transpose(2, 3, 1, 0)
    for _ in both_paths():
        t = dlc.read(path).graphs[0].tensors["wq"]
        e = t.encoding
        assert e.kind == QuantKind.BLOCKWISE_EXPANSION and e.axis == 3 and e.value_bits == 4
        assert t.shape == wq.shape == (1, 1, 64, 16) and e.block_size == (1, 1, 32, 1) and len(e.block_scales) == 32
        assert np.array_equal(t.numpy().view(np.uint8), wq.astype(np.uint8) & 0x0F)
        err = np.abs(e.dequantize(t.numpy()) - want)
        assert np.all(err <= np.abs(wq) * np.float32(e.scales) / 2 * 1.001 + 1e-7)
        assert 0 < err.max() < 0.05 * np.abs(want).max()  # lossy, and only by the scale rounding


def test_inspect_names_the_weight_encodings(made) -> None:
    from ctxbin.summary import summarize

    expect = {"mm_tensor": "sfixed8 BW_SCALE_OFFSET 4-bit", "mm_channel": "sfixed8 BW_AXIS_SCALE_OFFSET 4-bit",
              "mm_lpbq": "sfixed8 BLOCKWISE_EXPANSION 4-bit"}
    for name, key in expect.items():
        (g,) = summarize(dlc.read(made[name][0]))["graphs"]
        assert g["weight_types"] == {key: 1}


# ----------------------------------------------------------------------------- writing LPBQ
def _rows(m: onnx.ModelProto, rows: int) -> onnx.ModelProto:
    """``m`` with ``rows`` activation rows instead of 4 (the same weights): a
    second graph for linking, as a prompt and a token graph of one LLM."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    for v in (out.graph.input[0], out.graph.output[0]):
        v.type.tensor_type.shape.dim[1].dim_value = rows
    return out


@pytest.fixture(scope="module")
def lpbq(made, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, onnx.ModelProto]]:
    """LPBQ DLCs by the QNN IR backend: the MatMul ones of ``made``, a Conv one
    (float blocks turned into LPBQ by the EP) and the first MatMul with 8 rows
    (``mm_lpbq_rows8``: the same weight as ``mm_lpbq``)."""
    tmp = tmp_path_factory.mktemp("lpbq")
    conv = _weight_model("block", "Conv", 64, 16, block=32, seed=5)
    rows8 = _rows(made["mm_lpbq"][1], 8)
    paths = oracle.make_dlcs({"conv_lpbq": (conv, False)}, tmp, options={"enable_block_quant_weight_optimization": "1"})
    paths.update(oracle.make_dlcs({"mm_lpbq_rows8": (rows8, False)}, tmp))
    return {"mm_lpbq": made["mm_lpbq"], "mm_lpbq_b16": made["mm_lpbq_b16"],
            "conv_lpbq": (paths["conv_lpbq"], conv), "mm_lpbq_rows8": (paths["mm_lpbq_rows8"], rows8)}


@pytest.fixture(scope="module")
def lpbq_rewritten(lpbq, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the vendor's LPBQ DLC read and written by ctxbin."""
    out = tmp_path_factory.mktemp("lpbq_ctxbin")
    paths = {}
    for name, (src, _) in lpbq.items():
        paths[name] = out / f"{name}.dlc"
        dlc.write(dlc.read(src), paths[name])
    return paths


def _quant_vtables(path: Path) -> list[bytes]:
    """The vtables (field slots and their places) of every LPBQ weight's
    Quant and BlockwiseExpansion tables."""
    fb = FlatBuffer(ZipArchive.open(path).read("model"), start=8)
    out = []
    for g in fb.root(b"NETD").tables(0):
        for t in g.tables(2):
            q = t.table(5)
            if q is not None and q.scalar(0, "i") == QuantKind.BLOCKWISE_EXPANSION:
                out += [bytes(fb.buf[fb.start + x.vt : fb.start + x.vt + x.vt_size]) for x in (q, q.table(5))]
    return out


@pytest.mark.parametrize("name", ["mm_lpbq", "mm_lpbq_b16", "conv_lpbq"])
def test_lpbq_tables_agree_with_the_vendor(lpbq, lpbq_rewritten, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of every table as the QNN IR backend writes it, the LPBQ
    ones decoded too (storage type left out, block-scale bitwidth, channel-major
    scales, blocks per axis), and the LPBQ tables laid out in its field order."""
    from . import test_dlc_write as w

    monkeypatch.setitem(w.SCHEMA, "Quant", {**w.SCHEMA["Quant"], 5: ("blockwise", "Blockwise")})
    monkeypatch.setitem(w.SCHEMA, "Blockwise", {
        0: ("axis", "i"), 1: ("scale_offsets", "[ScaleOffset]"), 2: ("blocks", "i"), 3: ("storage", "i"),
        4: ("block_scale_bits", "B"), 5: ("block_scales", "[u1]")})
    vm, vp, vz = w.decode_file(lpbq[name][0])
    cm, cp, cz = w.decode_file(lpbq_rewritten[name])
    w.unmask_param_names(cm, cp, w.param_tensor_names(vm))
    assert w.masked(cm) == w.masked(vm)
    assert w.masked(cp) == w.masked(vp)
    (q,) = [t["quant"] for t in cm["graphs"][0]["tensors"] if t["quant"].get("encoding") == 5]
    assert "storage" not in q["blockwise"] and q["blockwise"]["block_scale_bits"] == 4
    vtables = _quant_vtables(lpbq[name][0])
    assert len(vtables) == 2 and _quant_vtables(lpbq_rewritten[name]) == vtables
    assert sorted(vz.names()) == sorted(cz.names())


@pytest.mark.parametrize("name", ["mm_lpbq", "conv_lpbq"])
def test_lpbq_read_write_read_on_both_paths(lpbq, name: str, tmp_path: Path) -> None:
    """Identical tensors, encodings and weight bytes after a rewrite, on both
    code paths, which also write the same bytes."""
    src = lpbq[name][0]
    written = []
    for native in both_paths():
        a = dlc.read(src)
        out = tmp_path / f"{native}.dlc"
        dlc.write(a, out)
        b = dlc.read(out)
        assert a.graphs == b.graphs
        for t in a.graphs[0].tensors.values():
            u = b.graphs[0].tensors[t.name]
            assert (u.dtype, u.shape, u.encoding) == (t.dtype, t.shape, t.encoding)
            assert t.data is None or bytes(u.data.raw()) == bytes(t.data.raw())
        e = b.graphs[0].tensors["wq"].encoding
        assert e.kind == QuantKind.BLOCKWISE_EXPANSION and e.value_bits == 4
        written.append(out.read_bytes())
    assert all(x == written[0] for x in written)


@pytest.mark.parametrize("name", ["mm_lpbq", "conv_lpbq"])
def test_vendor_composes_the_written_lpbq_dlc_alike(lpbq, lpbq_rewritten, name: str, tmp_path: Path) -> None:
    """The vendor's DLC loader composes ctxbin's file into an HTP context binary
    byte for byte the same as from its own file; with the block scales changed
    the binary changes (the loader reads them from ctxbin's table)."""
    from ctxbin.runtime.qnn_compose import ComposeOptions, compose_dlc

    src, out = lpbq[name][0], lpbq_rewritten[name]
    c = dlc.read(out)
    (g,) = c.graphs
    t = g.tensors["wq"]
    bumped = tuple(min(s + 1, 15) for s in t.encoding.block_scales)
    assert bumped != t.encoding.block_scales
    changed = dataclasses.replace(t, encoding=dataclasses.replace(t.encoding, block_scales=bumped))
    dlc.write(dataclasses.replace(c, graphs=(dataclasses.replace(g, tensors={**g.tensors, "wq": changed}),)),
              tmp_path / "bumped.dlc")
    bins = {}
    for label, path in (("vendor", src), ("ctxbin", out), ("bumped", tmp_path / "bumped.dlc")):
        bins[label] = tmp_path / f"{label}.bin"
        try:
            compose_dlc(path, bins[label], graphs=[g.name], options=ComposeOptions(60, 75))
        except BackendUnavailableError as e:
            pytest.skip(str(e))
    assert bins["ctxbin"].read_bytes() == bins["vendor"].read_bytes()
    assert bins["bumped"].read_bytes() != bins["vendor"].read_bytes()


@pytest.mark.parametrize("name", ["mm_lpbq", "mm_lpbq_b16", "conv_lpbq"])
def test_emulator_gives_the_same_outputs_on_the_written_dlc(lpbq, lpbq_rewritten, name: str) -> None:
    from ctxbin.runtime.emulator import Emulator

    path, m = lpbq[name]
    x = _x(m, seed=2)
    outs = []
    for p in (path, lpbq_rewritten[name]):
        (g,) = dlc.read(p).graphs
        outs.append(Emulator(g).run({g.inputs[0].name: x}))
    (ref,) = _ort(m, ["y"], x)
    for a, b in zip(outs[0].values(), outs[1].values()):
        np.testing.assert_array_equal(a, b)
        if name != "conv_lpbq":  # its source has float block scales, which the EP rounded (see above)
            np.testing.assert_allclose(b, ref, rtol=0, atol=_OUT_SCALE * 1.01)


def test_link_two_lpbq_dlcs_shares_the_weight(lpbq, tmp_path: Path) -> None:
    """Two LPBQ graphs with the same weight (4 and 8 rows) linked into one DLC:
    the weight is stored once, both graphs read back with their LPBQ encoding,
    run as their sources do, and compose into one HTP context."""
    import ctxbin
    from ctxbin.runtime.emulator import Emulator
    from ctxbin.runtime.qnn_compose import ComposeOptions, compose_dlc

    names = ["prompt", "token"]
    srcs = [lpbq["mm_lpbq_rows8"], lpbq["mm_lpbq"]]
    linked, _ = ctxbin.link([dlc.read(p) for p, _ in srcs], names=names)
    out = tmp_path / "both.dlc"
    ctxbin.save(linked, out)
    single = tmp_path / "one.dlc"
    dlc.write(dlc.read(srcs[0][0]), single)
    for _ in both_paths():
        back = dlc.read(out)
        assert back.graph_names == names
        a, b = (g.tensors["wq"] for g in back.graphs)
        assert a.data.offset == b.data.offset and a.encoding == b.encoding
        assert a.encoding == dlc.read(srcs[0][0]).graphs[0].tensors["wq"].encoding
    size = [ZipArchive.open(p).entry("model.params.bin").size for p in (out, single)]
    assert size[0] <= size[1] + 64 * 8  # the weight once; only the small per-graph tensors again
    for g, (_, m) in zip(dlc.read(out).graphs, srcs):
        x = _x(m, seed=3)
        (got,) = Emulator(g).run({g.inputs[0].name: x}).values()
        np.testing.assert_allclose(got, _ort(m, ["y"], x)[0], rtol=0, atol=_OUT_SCALE * 1.01)
    try:
        r = compose_dlc(out, tmp_path / "both.bin", graphs=names, options=ComposeOptions(60, 75))
    except BackendUnavailableError as e:
        pytest.skip(str(e))
    assert r.size == (tmp_path / "both.bin").stat().st_size > 0


def _lpbq_graph(enc: QuantEncoding, shape: tuple[int, ...]) -> Container:
    w = Tensor("w", DType.SFIXED8, shape, TensorKind.STATIC, enc, Blob(np.zeros(int(np.prod(shape)), np.uint8)))
    x = Tensor("x", DType.FLOAT32, (1, 4), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1, 4), TensorKind.OUTPUT)
    node = Node("n", "MatMul", "qnn", ("x", "w"), ("y",), {}, "qti.aisw")
    return Container((Graph("g", (x,), (y,), (node,), {"x": x, "y": y, "w": w}),))


_GOOD = QuantEncoding(QuantKind.BLOCKWISE_EXPANSION, (0.5, 0.25), (0, 0), 1, 8, True, (4, 1), (1, 2, 3, 255), 4)


@pytest.mark.parametrize("change, message", [
    ({"block_scales": (1, 2, 3, 256)}, r"block scale 256 does not fit .*0\.\.255"),
    ({"block_scales": (1, -2, 3, 4)}, r"block scale -2 does not fit"),
    ({"block_scales": (1, 2, 3)}, r"3 LPBQ block scales, 2 channels x 2 blocks need 4"),
    ({"block_size": (3, 1)}, r"block size \(3, 1\) does not fit shape \(8, 2\)"),
    ({"block_size": (4, 2)}, r"block size \(4, 2\) does not fit"),
    ({"block_size": (4,)}, r"block size \(4,\) does not fit"),
    ({"block_size": (0, 1)}, r"block size \(0, 1\) does not fit"),
    ({"axis": 0}, r"LPBQ axis 0 with 2 channels does not fit shape \(8, 2\)"),
    ({"axis": None}, r"LPBQ axis None"),
    ({"scales": (0.5,), "offsets": (0,)}, r"LPBQ axis 1 with 1 channels"),
    ({"block_scale_bitwidth": 0}, r"block-scale bitwidth 0"),
    ({"block_scale_bitwidth": 9}, r"block-scale bitwidth 9"),
    ({"kind": QuantKind.BLOCK}, r"does not encode BLOCK quantization"),
    ({"kind": QuantKind.VECTOR}, r"does not encode VECTOR quantization"),
    ({"kind": QuantKind.BW_FLOAT_BLOCK}, r"does not encode BW_FLOAT_BLOCK quantization"),
])
def test_unwritable_lpbq_is_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    target = tmp_path / "x.dlc"
    dlc.write(_lpbq_graph(_GOOD, (8, 2)), target)  # the unchanged encoding is written
    assert dlc.read(target).graphs[0].tensors["w"].encoding == _GOOD
    with pytest.raises(FormatError, match=message) as e:
        dlc.write(_lpbq_graph(dataclasses.replace(_GOOD, **change), (8, 2)), target)
    assert "g/w" in str(e.value)
    assert dlc.read(target).graphs[0].tensors["w"].encoding == _GOOD  # the old file stays


@st.composite
def _lpbq_tensors(draw: st.DrawFn) -> tuple[QuantEncoding, tuple[int, ...]]:
    rank = draw(st.integers(2, 4))
    shape = [draw(st.integers(1, 3)) for _ in range(rank)]
    axis = draw(st.integers(1, rank - 1))
    blocks, block = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shape[axis - 1] = blocks * block
    size = tuple(1 if d == axis else block if d == axis - 1 else shape[d] for d in range(rank))
    n = shape[axis]
    scales = tuple(float(np.float32(draw(st.floats(1e-4, 10)))) for _ in range(n))
    offsets = tuple(draw(st.lists(st.integers(-8, 0), min_size=n, max_size=n)))
    block_scales = tuple(draw(st.lists(st.integers(0, 255), min_size=n * blocks, max_size=n * blocks)))
    enc = QuantEncoding(QuantKind.BLOCKWISE_EXPANSION, scales, offsets, axis, 8, draw(st.booleans()), size,
                        block_scales, draw(st.integers(1, 8)))
    return enc, tuple(shape)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_lpbq_tensors())
def test_any_writable_lpbq_encoding_round_trips(tmp_path: Path, case: tuple[QuantEncoding, tuple[int, ...]]) -> None:
    enc, shape = case
    out = tmp_path / "p.dlc"
    dlc.write(_lpbq_graph(enc, shape), out)
    for _ in both_paths():
        assert dlc.read(out).graphs[0].tensors["w"].encoding == enc
