"""ctxbin.ziparchive against archives written by Python's zipfile, real DLCs and hostile inputs."""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin.errors import ChecksumError, FormatError
from ctxbin.ziparchive import DEFLATED, STORED, ZipArchive, ZipLimits
from tests.native_paths import both_paths
from tests.shared_data import DLC_DIR

DATA = DLC_DIR


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED, **kw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method, **kw) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_stored_entries_are_zero_copy_views() -> None:
    raw = _zip({"model": b"abc" * 100, "model.params.bin": bytes(range(256))})
    z = ZipArchive(raw)
    assert z.names() == ["model", "model.params.bin"]
    assert "model" in z and "nope" not in z
    view = z.read("model.params.bin")
    assert bytes(view) == bytes(range(256))
    assert view.obj is z.read("model").obj  # both are views of the same buffer
    e = z.entry("model.params.bin")
    assert e.method == STORED and raw[e.data_offset : e.data_end] == bytes(range(256))


def test_deflated_entries_inflate_and_crc_is_checked() -> None:
    payload = bytes(range(256)) * 40
    z = ZipArchive(_zip({"a": payload}, zipfile.ZIP_DEFLATED))
    assert z.entry("a").method == DEFLATED
    assert bytes(z.read("a")) == payload


def test_zip64_archive_from_zipfile() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zf.open("model", "w", force_zip64=True) as f:
            f.write(b"x" * 1000)
    z = ZipArchive(buf.getvalue())
    assert bytes(z.read("model")) == b"x" * 1000


def test_crc_mismatch_is_a_checksum_error() -> None:
    raw = bytearray(_zip({"model": b"hello world"}))
    at = ZipArchive(bytes(raw)).entry("model").data_offset
    raw[at] ^= 0xFF
    z = ZipArchive(bytes(raw))  # structure is fine
    with pytest.raises(ChecksumError, match="CRC-32"):
        z.read("model")


@pytest.mark.parametrize("size", [100, 70_000])  # under and over the size where the C core's CRC takes over
def test_crc_is_checked_for_small_and_large_entries(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    raw = bytearray(_zip({"a": data[:size]}))
    z = ZipArchive(bytes(raw))
    for native in both_paths():
        assert bytes(z.read("a")) == data[:size]
    raw[z.entry("a").data_offset + size - 1] ^= 1
    for native in both_paths():
        with pytest.raises(ChecksumError, match="CRC-32") as e:
            ZipArchive(bytes(raw)).read("a")
        assert e.value.offset == z.entry("a").data_offset


def test_entries_are_immutable_records() -> None:
    e = ZipArchive(_zip({"dir/a": b"abc"})).entry("dir/a")
    assert (e.name, e.method, e.size, e.compressed_size) == ("dir/a", STORED, 3, 3)
    assert e.data_end == e.data_offset + 3
    with pytest.raises(AttributeError):
        e.size = 4  # type: ignore[misc]


def _zero_crcs(raw: bytes) -> bytes:
    """Set every CRC field to 0, as the QNN IR backend writes them."""
    out = bytearray(raw)
    for sig, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        i = out.find(sig)
        while i >= 0:
            out[i + at : i + at + 4] = b"\0\0\0\0"
            i = out.find(sig, i + 4)
    return bytes(out)


def test_zero_crc_is_tolerated() -> None:
    raw = _zero_crcs(_zip({"model": b"hello"}))
    with pytest.raises(zipfile.BadZipFile):  # the standard library refuses these
        zipfile.ZipFile(io.BytesIO(raw)).read("model")
    assert bytes(ZipArchive(raw).read("model")) == b"hello"


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "C:evil", "a\\b", "./x", "", "a\x00b"])
def test_path_traversal_names_are_refused(name: str) -> None:
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # bypass zipfile's own clean-up of the name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(info, b"x")
    with pytest.raises(FormatError, match="unsafe entry name") as e:
        ZipArchive(buf.getvalue(), path="t.zip")
    assert "t.zip" in str(e.value) and e.value.offset is not None


def test_unsafe_name_message_names_entry_and_offset() -> None:
    raw = _zip({"../evil_1": b"x"})
    with pytest.raises(FormatError, match=r"unsafe entry name") as e:
        ZipArchive(raw, path="t.zip")
    assert e.value.obj == "'../evil_1'" and e.value.offset is not None


def test_duplicate_names_are_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("model", b"a")
        z.writestr("model", b"b")
    with pytest.raises(FormatError, match="duplicate entry name"):
        ZipArchive(buf.getvalue())


def test_zip_bomb_is_refused_before_inflating() -> None:
    raw = _zip({"bomb": b"\0" * (4 << 20)}, zipfile.ZIP_DEFLATED)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="zip bomb"):
        ZipArchive(raw)
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(FormatError, match="over the limit"):
        ZipArchive(raw, limits=ZipLimits(max_inflated_size=1 << 20, max_ratio=1e9))
    # with the ratio limit lifted, the content is as written
    assert len(ZipArchive(raw, limits=ZipLimits(max_ratio=1e9)).read("bomb")) == 4 << 20


def test_declared_size_lie_is_refused() -> None:
    raw = bytearray(_zip({"a": b"0123456789" * 50}, zipfile.ZIP_DEFLATED))
    # shrink the declared uncompressed size in both headers: inflating yields more
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.find(sig)
        struct.pack_into("<I", raw, i + at, 100)
    with pytest.raises(FormatError, match="inflates to more than"):
        ZipArchive(bytes(raw)).read("a")
    # a stored entry whose compressed and uncompressed sizes differ
    raw = bytearray(_zip({"a": b"x" * 10}))
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<I", raw, raw.find(sig) + at, 11)
    with pytest.raises(FormatError, match="stored entry declares 11 bytes but holds 10"):
        ZipArchive(bytes(raw))


def test_local_header_must_agree_with_central_directory() -> None:
    raw = bytearray(_zip({"a": b"x" * 10}))
    struct.pack_into("<I", raw, raw.find(b"PK\x03\x04") + 18, 9)  # local compressed size
    with pytest.raises(FormatError, match="local header declares"):
        ZipArchive(bytes(raw))


def test_overlapping_entries_are_refused() -> None:
    raw = bytearray(_zip({"a": b"x" * 10, "b": b"y" * 10}))
    # point b's central record at a's local header: the archive becomes a polyglot
    cd_b = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 4)
    struct.pack_into("<I", raw, cd_b + 42, 0)
    with pytest.raises(FormatError):
        ZipArchive(bytes(raw))


def test_entry_past_end_and_truncation() -> None:
    raw = _zip({"a": b"x" * 100})
    for cut in (0, 10, len(raw) // 2, len(raw) - 1):
        with pytest.raises(FormatError):
            ZipArchive(raw[:cut])
    bad = bytearray(raw)
    struct.pack_into("<I", bad, bad.find(b"PK\x01\x02") + 42, 1 << 30)  # local header offset far away
    with pytest.raises(FormatError, match="runs past the end"):
        ZipArchive(bytes(bad))


def test_missing_entry_is_a_format_error() -> None:
    z = ZipArchive(_zip({"a": b"1"}), path="x.dlc")
    with pytest.raises(FormatError, match="no entry 'model'"):
        z.read("model")


def test_real_v3_dlcs() -> None:
    for f in ("mlcommons_v1_0_deeplabv3_hta.dlc", "openpilot_dmonitoring_model_q_v3.dlc"):
        path = DATA / f
        if not path.exists():
            pytest.skip(f"{path} is missing")
        z = ZipArchive.open(path)
        ref = zipfile.ZipFile(path)
        assert z.names() == [i.filename for i in ref.infolist()]
        for info in ref.infolist():
            assert bytes(z.read(info.filename)) == ref.read(info.filename)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.dlc"
    p.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        ZipArchive.open(p)


def test_unopenable_paths(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open: Is a directory"):
        ZipArchive.open(tmp_path)
    with pytest.raises(FormatError, match="cannot open: No such file"):
        ZipArchive.open(tmp_path / "missing.dlc")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_only_format_errors(data: st.DataObject) -> None:
    base = _zero_crcs(_zip({"model": b"M" * 300, "model.params": bytes(range(200)),
                            "d": zlib.compress(b"q" * 50)}, zipfile.ZIP_STORED))
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    t0 = time.perf_counter()
    try:
        z = ZipArchive(bytes(raw[:cut]))
        for e in z:
            z.read(e.name)
    except FormatError:
        pass
    assert time.perf_counter() - t0 < 2
