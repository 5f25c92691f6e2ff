"""The CRC-32 of ``model.params.bin`` when a DLC is written: carried over from
the source archive when the entry is a verbatim copy of the source's (no
weight is read again, and damage in the source stays detectable), computed
from the bytes in every other case. Python's ``zipfile`` checks every CRC."""

from __future__ import annotations

import dataclasses
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctxbin.check import check
from ctxbin.formats import dlc
from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob
from ctxbin.ziparchive import ZipArchive


def _graph(name: str = "g", scale: float = 1.0) -> Graph:
    rng = np.random.default_rng(0)
    x = Tensor("x", DType.FLOAT32, (1, 128), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1, 160), TensorKind.OUTPUT)
    w = Tensor("W", DType.FLOAT32, (160, 128), TensorKind.STATIC, None,
               Blob.from_array(rng.standard_normal((160, 128)).astype(np.float32) * scale))  # 80 KiB
    b = Tensor("B", DType.FLOAT32, (160,), TensorKind.STATIC, None, Blob.from_array(np.arange(160, dtype=np.float32)))
    attrs = {"tp": np.array([3, 1], np.uint32), "keep_dims": False}
    node = Node("fc", "FullyConnected", "qnn", ("x", "W", "B"), ("y",), attrs, "qti.aisw")
    return Graph(name, (x,), (y,), (node,), {t.name: t for t in (x, y, w, b)})


def _crc(path: Path) -> int:
    return ZipArchive.open(path).entry("model.params.bin").crc


def _sound(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
    assert check(path) == []


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.dlc"
    dlc.write(Container((_graph(),)), path)
    _sound(path)
    return path


@pytest.fixture
def crc_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of weights read for CRC-32s while writing."""
    seen: list[int] = []
    real = dlc.crc32_many

    def counting(buffers: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(sum(memoryview(b).nbytes for b in buffers))
        return real(buffers, *args, **kwargs)

    monkeypatch.setattr(dlc, "crc32_many", counting)
    return seen


def test_a_verbatim_copy_carries_the_recorded_crc(source: Path, tmp_path: Path, crc_reads: list[int]) -> None:
    out = tmp_path / "copy.dlc"
    c = dlc.read(source)
    dlc.write(c, out)
    assert sum(crc_reads) == 0  # no weight read for the CRC
    assert _crc(out) == _crc(source)
    _sound(out)
    assert dlc.read(out).graphs == c.graphs
    again = tmp_path / "again.dlc"  # and from the copy, once more (its history gets one more step)
    dlc.write(dlc.read(out), again)
    weights = [bytes(ZipArchive.open(p).read("model.params.bin")) for p in (source, again)]
    assert weights[0] == weights[1]
    assert _crc(again) == _crc(source) and sum(crc_reads) == 0


def test_damage_in_the_source_stays_detectable(source: Path, tmp_path: Path) -> None:
    entry = ZipArchive.open(source).entry("model.params.bin")
    raw = bytearray(source.read_bytes())
    raw[entry.data_offset + 1000] ^= 0x40  # inside W
    damaged = tmp_path / "damaged.dlc"
    damaged.write_bytes(bytes(raw))
    out = tmp_path / "out.dlc"
    dlc.write(dlc.read(damaged), out)
    problems = check(out)
    assert len(problems) == 1 and "model.params.bin" in problems[0] and "CRC-32" in problems[0]


def _with_weight(c: Container, name: str, array: np.ndarray) -> Container:
    (g,) = c.graphs
    t = dataclasses.replace(g.tensors[name], data=Blob.from_array(array))
    return dataclasses.replace(c, graphs=(dataclasses.replace(g, tensors={**g.tensors, name: t}),))


@pytest.mark.parametrize("change", ["small changed", "large unchanged", "large changed"])
def test_weights_from_memory_are_checksummed(source: Path, tmp_path: Path, crc_reads: list[int], change: str) -> None:
    """A weight held in memory (changed or not) is compared with the source
    only when small; otherwise, or when it differs, every CRC is computed."""
    c = dlc.read(source)
    name = "B" if change == "small changed" else "W"
    array = c.graphs[0].tensors[name].numpy().copy()
    if change != "large unchanged":
        array[3] += 1
    out = tmp_path / "out.dlc"
    dlc.write(_with_weight(c, name, array), out)
    assert sum(crc_reads) > 0
    _sound(out)
    assert (_crc(out) == _crc(source)) == (change == "large unchanged")
    np.testing.assert_array_equal(dlc.read(out).graphs[0].tensors[name].numpy(), array)


def test_a_new_layout_is_checksummed(source: Path, tmp_path: Path, crc_reads: list[int]) -> None:
    """Two graphs that share nothing: the source's bytes are at other places."""
    c = dlc.read(source)
    g = c.graphs[0]
    out = tmp_path / "two.dlc"
    dlc.write(dataclasses.replace(c, graphs=(g, dataclasses.replace(g, name="h"))), out, share="none")
    assert sum(crc_reads) > 0
    _sound(out)


def test_a_source_without_recorded_crc(source: Path, tmp_path: Path, crc_reads: list[int]) -> None:
    """QNN records CRC 0: the writer computes the CRC then."""
    archive = ZipArchive.open(source)
    entry = archive.entry("model.params.bin")
    raw = bytearray(source.read_bytes())
    struct.pack_into("<I", raw, entry.header_offset + 14, 0)  # local header
    central = raw.rfind(b"PK\x01\x02" + raw[entry.header_offset + 4 : entry.header_offset + 6])
    while raw[central + 46 : central + 46 + len(b"model.params.bin")] != b"model.params.bin":
        central = raw.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", raw, central + 16, 0)  # central directory
    zeroed = tmp_path / "zeroed.dlc"
    zeroed.write_bytes(bytes(raw))
    assert _crc(zeroed) == 0
    out = tmp_path / "out.dlc"
    dlc.write(dlc.read(zeroed), out)
    assert sum(crc_reads) > 0
    assert _crc(out) == _crc(source)
    _sound(out)
