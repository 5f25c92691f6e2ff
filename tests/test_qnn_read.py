"""ctxbin's pure-Python QNN context-binary reader, checked against libQnnSystem.

Real binaries are compiled once per session by onnxruntime-qnn (tests/qnn_oracle.py);
the vendor's reading of each comes from libQnnSystem through ctxbin's cffi
binding, in a child process (the library cannot share a process with the one
that compiled the binaries, and may crash on bad input).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin.errors import BackendError, FormatError, UnsupportedVersionError
from ctxbin.formats import qnn
from ctxbin.ir import DType, QuantKind, TensorKind

from tests.qnn_oracle import IO, ModelSpec, compile_models, require_qnn

U8, U16, I32, F32 = 2, 4, 6, 1  # onnx.TensorProto element types

# Variants: graph counts 1-4, ranks 1-5, 1-3 inputs and outputs, float32,
# int32, per-tensor uint8/uint16 quantized I/O (a per-channel QDQ weight inside),
# per-channel quantized input (ONNX Runtime keeps that DequantizeLinear on CPU).
VARIANTS: dict[str, tuple[list[ModelSpec], bool]] = {
    "float": ([ModelSpec((IO("x", (1, 3, 8, 8)),), (IO("y", (1, 3, 8, 8)),), name="float")], False),
    "q8": ([ModelSpec((IO("x", (1, 4, 4, 4), U8, 0.05, 128),), (IO("y", (1, 4, 4, 4), U8, 0.03, 0),), name="q8")], False),
    "q16": ([ModelSpec(
        (IO("a", (2, 8), U16, 0.001, 32768), IO("b", (2, 8), U16, 0.002, 30000)),
        (IO("y", (2, 8), U16, 0.0005, 0), IO("z", (2, 8), U16, 0.0007, 100)), name="q16")], False),
    "qpc": ([ModelSpec((IO("x", (1, 4, 2, 2), U8, (0.1, 0.2, 0.3, 0.4), (128, 120, 110, 100), axis=1),),
                       (IO("y", (1, 4, 2, 2), U8, 0.03, 0),), name="qpc")], False),
    "int32": ([ModelSpec((IO("a", (2, 3), I32), IO("b", (2, 3), I32), IO("c", (2, 3), I32)),
                         (IO("d", (2, 3), I32),), op="Abs", weight=False, name="int32")], False),
    "rank1": ([ModelSpec((IO("v", (16,)),), (IO("w", (16,)), IO("w2", (16,)), IO("w3", (16,))), op="Sigmoid",
                         name="rank1")], False),
    "shared3": ([
        ModelSpec((IO("x", (1, 8)),), (IO("y", (1, 8)),), name="sa"),
        ModelSpec((IO("x", (4, 8)),), (IO("y", (4, 8)), IO("z", (4, 8))), name="sb"),
        ModelSpec((IO("p", (2, 2, 2, 2, 2)),), (IO("q", (2, 2, 2, 2, 2)),), name="sc"),
    ], True),
    "shared4q": ([
        ModelSpec((IO("x", (1, 16), U8, 0.02, 10),), (IO("y", (1, 16), U8, 0.01, 0),), name="qa"),
        ModelSpec((IO("x", (2, 16), U8, 0.02, 10),), (IO("y", (2, 16), U8, 0.01, 0),), name="qb"),
        ModelSpec((IO("x", (4, 16), U8, 0.02, 10),), (IO("y", (4, 16), U8, 0.01, 0),), name="qc"),
        ModelSpec((IO("x", (8, 16)),), (IO("y", (8, 16)),), name="qd"),
    ], True),
}


@pytest.fixture(scope="session")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One compiled context binary per variant (≈0.2 s each)."""
    require_qnn()
    out = {}
    for key, (specs, share) in VARIANTS.items():
        compiled = compile_models(specs, tmp_path_factory.mktemp(f"qnn_{key}"), share=share)
        assert len(compiled.bins) == 1, compiled.bins
        out[key] = compiled.bins[0]
    return out


@pytest.fixture(scope="session")
def oracle(binaries: dict[str, Path]) -> dict[str, object]:
    """libQnnSystem's BinaryInfo for each binary, read in one child process."""
    from ctxbin.runtime.qnn_system import binary_infos_isolated

    keys = list(binaries)
    return dict(zip(keys, binary_infos_isolated([binaries[k] for k in keys])))


def _same_tensor(ours: qnn.IOTensor, theirs: object, where: str) -> None:
    assert ours.id == theirs.id, where
    assert ours.name == theirs.name, where
    assert int(ours.kind) == theirs.type, where
    assert ours.data_format == theirs.data_format, where
    assert ours.dtype == theirs.dtype, where
    assert ours.shape == theirs.shape, where
    if theirs.encoding is None:
        assert ours.encoding is None, where
    else:
        assert ours.encoding is not None, where
        assert ours.encoding.kind == theirs.encoding.kind, where
        assert np.float32(ours.encoding.scales).tobytes() == np.float32(theirs.encoding.scales).tobytes(), where
        assert ours.encoding.offsets == theirs.encoding.offsets, where


def test_every_field_matches_libqnnsystem(binaries: dict[str, Path], oracle: dict[str, object]) -> None:
    checked = 0
    for key, path in binaries.items():
        ours = qnn.read_info(path)
        theirs = oracle[key]
        assert ours.info_version == theirs.version
        assert ours.backend_id == theirs.backend_id == 6
        assert ours.build_id == theirs.build_id
        assert ours.core_api_version == theirs.core_api_version
        assert ours.backend_api_version == theirs.backend_api_version
        assert ours.soc_version == theirs.soc_version
        assert ours.context_blob_version == theirs.context_blob_version
        assert ours.context_blob_size == theirs.context_blob_size
        assert ours.num_context_tensors == len(theirs.context_tensors)
        assert ours.soc_model == theirs.soc_model
        assert ours.context_metadata == theirs.context_metadata
        assert ours.dsp_arch == theirs.dsp_arch
        assert ours.graph_names == theirs.graph_names
        assert len(ours.graphs) == len(VARIANTS[key][0])
        for g, t in zip(ours.graphs, theirs.graphs):
            where = f"{key}/{g.name}"
            assert len(g.inputs) == len(t.inputs) and len(g.outputs) == len(t.outputs), where
            for a, b in zip(g.inputs + g.outputs, t.inputs + t.outputs):
                _same_tensor(a, b, f"{where}/{a.name}")
                checked += 1
            assert len(g.updateable) == len(t.updateable), where
            assert g.blob_info == t.blob_info, where
            assert g.htp == t.htp_blob_info, where
            assert (g.start_op_index, g.end_op_index) == (t.start_op_index, t.end_op_index), where
    assert checked >= 30


def test_decoded_values_are_what_was_compiled(binaries: dict[str, Path]) -> None:
    info = qnn.read_info(binaries["q16"])
    (g,) = info.graphs
    # ONNX Runtime ran the per-channel weight's DequantizeLinear on CPU: a third input
    a, b, w = g.inputs
    assert (w.name, w.dtype, w.encoding) == ("_w", DType.FLOAT32, None)
    assert a.encoding.bitwidth == 16
    assert (a.name, a.kind, a.dtype, a.shape) == ("a", TensorKind.INPUT, DType.UFIXED16, (2, 8))
    assert a.encoding.kind == QuantKind.SCALE_OFFSET
    assert a.encoding.scales == (float(np.float32(0.001)),) and a.encoding.offsets == (-32768,)
    assert b.encoding.offsets == (-30000,)  # QNN offset = -ONNX zero point
    assert [t.name for t in g.outputs] == ["y", "z"] and g.outputs[1].encoding.offsets == (-100,)
    assert info.sdk_version.count(".") == 2 and info.build_id.startswith("v" + info.sdk_version)
    assert info.backend_name == "htp" and info.soc_model == 60 and info.dsp_arch == 73
    shapes = [t.shape for t in qnn.read_info(binaries["shared3"]).graphs[2].inputs]
    assert shapes == [(2, 2, 2, 2, 2)]
    assert [t.dtype for t in qnn.read_info(binaries["int32"]).graphs[0].inputs] == [DType.INT32] * 3
    assert qnn.read_info(binaries["rank1"]).graphs[0].outputs[2].shape == (16,)


def test_blob_directory(binaries: dict[str, Path]) -> None:
    for key, path in binaries.items():
        info = qnn.read_info(path)
        size = path.stat().st_size
        assert info.context_blob_offset + info.context_blob_size == size, key
        for g in info.graphs:
            rec = [r for r in info.records if r.name.startswith("PICKLE/") and r.name.endswith("/" + g.name)]
            assert len(rec) == 1 and g.blob_size == rec[0].size > 0, key
            assert rec[0].offset % rec[0].alignment == 0
        # the shared-weights record and what every graph's HTP info says agree
        for g in info.graphs:
            assert g.shared_weights_size == info.shared_weights_size, key
        assert (info.shared_weights_size > 0) == VARIANTS[key][1], key


def test_read_container(binaries: dict[str, Path]) -> None:
    path = binaries["shared3"]
    c = qnn.read(path)
    info = qnn.read_info(path)
    assert c.format == "qnn" and c.format_version == "2.3.0.1"
    assert c.graph_names == info.graph_names and len(c.graphs) == 3
    assert (c.target.backend, c.target.soc_model, c.target.htp_arch) == ("htp", 60, 73)
    assert c.target.sdk_version == info.sdk_version
    blobs = {id(g.binary.blob) for g in c.graphs}
    assert len(blobs) == 1  # one mapping of the whole file, shared by every graph
    g = c.graph(info.graph_names[1])
    assert g.nodes == () and g.binary.graph_name == g.name and g.binary.backend == "htp"
    assert bytes(g.binary.blob.raw()) == path.read_bytes()
    assert [t.kind for t in g.inputs] == [TensorKind.INPUT]
    assert [t.name for t in g.outputs] == ["y", "z"] and all(t.kind == TensorKind.OUTPUT for t in g.outputs)
    assert qnn.read_info(path.read_bytes()) == info  # bytes and path agree


def test_sniff(binaries: dict[str, Path], tmp_path: Path) -> None:
    for path in binaries.values():
        assert qnn.sniff(path.read_bytes()[:16])
    assert not qnn.sniff(b"PK\x03\x04" + b"\0" * 12)
    assert not qnn.sniff(b"\x08\x08" + b"\0" * 14)
    assert not qnn.sniff(b"\0\0\0\x02")


def test_unknown_version_words(binaries: dict[str, Path]) -> None:
    data = bytearray(binaries["float"].read_bytes())
    data[4:8] = struct.pack(">I", 9)
    with pytest.raises(UnsupportedVersionError, match=r"\[2, 9, 0, 1\]") as e:
        qnn.read_info(bytes(data))
    assert e.value.offset == 0


def _check(data: bytes) -> None:
    """Reading either succeeds or raises FormatError; nothing else."""
    try:
        qnn.read_info(data)
    except FormatError as exc:
        assert str(exc)


def test_every_truncation_is_a_format_error(binaries: dict[str, Path]) -> None:
    data = binaries["shared3"].read_bytes()
    info = qnn.read_info(data)
    meta_end = 40 + struct.unpack_from("<Q", data, 16)[0]
    cuts = list(range(0, meta_end + 64, 7)) + [info.context_blob_offset + 40, len(data) - 1]
    for n in cuts:
        with pytest.raises(FormatError) as e:
            qnn.read_info(data[:n])
        assert "offset" in str(e.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutations(binaries: dict[str, Path], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(["float", "q16", "shared3"]))
    raw = bytearray(binaries[key].read_bytes())
    meta_end = 40 + struct.unpack_from("<Q", raw, 16)[0]
    blob_off = struct.unpack_from("<Q", raw, 24)[0]
    # metadata and the blob directory are what the reader parses
    region = data.draw(st.sampled_from([(16, meta_end), (blob_off, blob_off + 0x300)]))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(region[0], region[1] - 1))
        raw[at] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, raw[at] ^ 0x10]))
    _check(bytes(raw))


def test_hostile_sizes_do_not_allocate(binaries: dict[str, Path]) -> None:
    raw = bytearray(binaries["float"].read_bytes())
    for at, value in ((16, 1 << 62), (24, 1 << 62), (32, 1 << 62), (16, 0)):
        bad = bytearray(raw)
        bad[at:at + 8] = struct.pack("<Q", value)
        with pytest.raises(FormatError):
            qnn.read_info(bytes(bad))
    with pytest.raises(FormatError, match="empty file"):
        qnn.read_info(_empty(binaries["float"].parent))


def _empty(d: Path) -> Path:
    p = d / "empty.bin"
    p.write_bytes(b"")
    return p


def test_libqnnsystem_rejects_what_we_reject(binaries: dict[str, Path], tmp_path: Path) -> None:
    """The vendor library refuses a truncated binary too (in a child process:
    a crash there must become a clear error, not take down the test run)."""
    from ctxbin.runtime.qnn_system import binary_info_isolated

    data = binaries["float"].read_bytes()
    bad = tmp_path / "truncated.bin"
    bad.write_bytes(data[:200])
    with pytest.raises(FormatError):
        qnn.read_info(bad)
    with pytest.raises(BackendError):
        binary_info_isolated(bad)


def test_missing_library_is_a_clear_error(tmp_path: Path) -> None:
    from ctxbin.errors import BackendUnavailableError
    from ctxbin.runtime.qnn_system import find_library

    with pytest.raises(BackendUnavailableError, match="libQnnSystem.so"):
        find_library(tmp_path)
