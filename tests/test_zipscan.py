"""The C central directory scan (native/zipscan.c) against the Python parser
of ctxbin.ziparchive, its reference: whatever the scan accepts, the parser
accepts with the same entries; whatever either refuses, ZipArchive refuses
with the parser's error on both paths."""

from __future__ import annotations

import io
import mmap
import os
import tempfile
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin.errors import FormatError
from ctxbin.hashing import native_core
from ctxbin.ziparchive import ZipArchive, ZipLimits
from tests.native_paths import both_paths, needs_native


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED, comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        z.comment = comment
    return buf.getvalue()


def _bare(raw: bytes, limits: ZipLimits) -> ZipArchive:
    """An archive of ``raw`` not parsed yet."""
    z = ZipArchive.__new__(ZipArchive)
    z._buf, z._mv, z._file, z._size, z.path, z.limits = raw, memoryview(raw), None, len(raw), None, limits
    return z


def _python(raw: bytes, limits: ZipLimits = ZipLimits()) -> tuple | FormatError:
    """The reference parser alone (no C scan)."""
    z = _bare(raw, limits)
    try:
        entries = z._parse()
    except FormatError as e:
        return e
    return entries


def _scan(raw: bytes, limits: ZipLimits = ZipLimits(), head: int = 0, tail_at: int = 0) -> tuple | int | None:
    """The C scan alone (even when the suite runs with CTXBIN_NO_NATIVE=1), of
    the first ``head`` bytes and the bytes from ``tail_at`` on (the parts
    ctxbin_zip_open reads): the entries, the file offset it needs the tail to
    start from (CTXBIN_EMORE), or None."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CTXBIN_NO_NATIVE", raising=False)
        core = native_core()
    ffi, lib, cap = core.ffi, core.lib, 64
    out = ffi.new("int64_t[]", 3 + 9 * cap)
    tail = raw[tail_at:]
    try:
        st = lib.ctxbin_zip_scan(ffi.from_buffer(raw[:head]), head, ffi.from_buffer(tail), len(tail), len(raw),
                                 limits.max_entries, limits.max_inflated_size, limits.ratio_floor, limits.max_ratio,
                                 out, cap)
    except OverflowError:
        return None
    if st == lib.CTXBIN_EMORE:
        return int(out[1])
    return _bare(raw, limits)._scanned(ffi.buffer(out), tail) if st == lib.CTXBIN_OK else None


@needs_native
@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_scan_takes_ordinary_archives(method: int) -> None:
    # more entries than the first guess of the caller's capacity, and a comment
    raw = _zip({f"dir/e{i}": bytes([i]) * (10 * i) for i in range(20)}, method, comment=b"PK\x05\x06 hi")
    got = _scan(raw)
    assert got is not None and got == _python(raw)
    assert [e.name for e in got] == [f"dir/e{i}" for i in range(20)]


@needs_native
def test_scan_leaves_unusual_archives_to_the_parser() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zf.open("model", "w", force_zip64=True) as f:
            f.write(b"x" * 100)
    raw = buf.getvalue()
    assert _scan(raw) is None  # ZIP64 local sizes: the parser decides
    for native in both_paths():
        assert bytes(ZipArchive(raw).read("model")) == b"x" * 100


def test_duplicate_names_are_refused_on_both_paths() -> None:
    raw = bytearray(_zip({"ab": b"1", "ac": b"2"}))
    raw[raw.rindex(b"ac") + 1] = ord("b")  # central name of the second entry
    raw[raw.index(b"ac") + 1] = ord("b")  # and its local name
    for native in both_paths():
        with pytest.raises(FormatError, match="duplicate"):
            ZipArchive(bytes(raw))


def test_limits_beyond_64_bits_fall_back() -> None:
    raw = _zip({"a": b"1"})
    for native in both_paths():
        assert ZipArchive(raw, limits=ZipLimits(max_inflated_size=1 << 70)).names() == ["a"]


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_scan_agrees_with_the_parser_on_mutated_archives(data: st.DataObject) -> None:
    entries = {"model": b"M" * 300, "model.params": bytes(range(200)), "a/b": b"q" * 50}
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    raw = bytearray(_zip(entries, method, comment=data.draw(st.sampled_from([b"", b"note"]))))
    # mutations aimed at the structures: the central directory and local headers
    hot = [i for i in range(len(raw)) if raw.startswith((b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"), i)]
    for _ in range(data.draw(st.integers(1, 6))):
        base = data.draw(st.sampled_from(hot + [0]))
        at = min(len(raw) - 1, base + data.draw(st.integers(0, 60)))
        raw[at] = data.draw(st.sampled_from([0, 1, 0x2E, 0x2F, 0x5C, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
    raw = bytes(raw[: data.draw(st.integers(len(raw) - 30, len(raw)))])
    limits = data.draw(st.sampled_from([ZipLimits(), ZipLimits(max_entries=2, ratio_floor=10, max_ratio=2.0)]))
    got, ref = _scan(raw, limits), _python(raw, limits)
    if got is not None:
        assert got == ref  # the parser accepts what the scan accepts, with the same entries
    # through ZipArchive, both paths end alike: the same entries or the parser's error
    outcomes = []
    for native in both_paths():
        try:
            outcomes.append(ZipArchive(raw, limits=limits).entries)
        except FormatError as e:
            assert e.offset is not None and e.offset >= 0
            outcomes.append(str(e))
    assert len(set(outcomes)) == 1
    assert outcomes[0] == (str(ref) if isinstance(ref, FormatError) else ref)


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_scan_of_two_parts_ends_as_the_scan_of_the_whole(data: st.DataObject) -> None:
    # a big first entry, as DLCs store their weights, then small ones
    entries = {"model.params.bin": b"W" * 5000, "model": b"M" * 300, "a/b": b"q" * 50}
    raw = bytearray(_zip(entries, comment=data.draw(st.sampled_from([b"", b"note"]))))
    if data.draw(st.booleans()):
        hot = [i for i in range(len(raw)) if raw.startswith((b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"), i)]
        at = min(len(raw) - 1, data.draw(st.sampled_from(hot)) + data.draw(st.integers(0, 50)))
        raw[at] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    head = data.draw(st.integers(0, len(raw)))
    tail_at = data.draw(st.integers(0, len(raw)))
    whole = _scan(raw)
    got = _scan(raw, head=head, tail_at=tail_at)
    while isinstance(got, int):  # read from where it asks, as ZipArchive.open does
        assert got < tail_at  # always asks for more than it had
        tail_at = got
        got = _scan(raw, head=head, tail_at=tail_at)
    assert got == whole


@needs_native
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_opening_a_file_in_one_c_call_agrees_with_the_parser(data: st.DataObject) -> None:
    """ctxbin_zip_open (the open, the reads of the head and tail and the scan
    in one call) against the parser of the whole file: it passes only files
    the parser takes, with the same entries and an exact copy of the tail;
    through ZipArchive.open both paths end alike."""
    first = data.draw(st.sampled_from([100, 5000, 70000]))  # the first entry ends in the head, past it, far past it
    entries = {"model.params.bin": bytes(range(256)) * (first // 256) + b"w", "model": b"M" * 300, "dlc.metadata": b"k=v"}
    raw = bytearray(_zip(entries))
    hot = [i for i in range(len(raw)) if raw.startswith((b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"), i)]
    for _ in range(data.draw(st.integers(0, 4))):
        at = min(len(raw) - 1, data.draw(st.sampled_from(hot)) + data.draw(st.integers(0, 40)))
        raw[at] = data.draw(st.sampled_from([0, 1, 0xFF, data.draw(st.integers(0, 255))]))
    raw = bytes(raw[: data.draw(st.integers(len(raw) - 30, len(raw)))])
    ref = _python(raw)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.zip")
        with open(path, "wb") as f:
            f.write(raw)
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("CTXBIN_NO_NATIVE", raising=False)
            z = ZipArchive._open_native(native_core(), path, ZipLimits())
            if z is not None:
                assert z.entries == ref
                assert bytes(z._tail) == raw[z._tail_at :] and z._buf is None
        outcomes = []
        for _ in both_paths():
            try:
                outcomes.append(ZipArchive.open(path).entries)
            except FormatError as e:
                outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ref if not isinstance(ref, FormatError) else outcomes[0] == f"{path}: {ref}"


def test_open_refuses_what_is_no_file_on_both_paths(tmp_path) -> None:
    """What the one-call open leaves to the Python side: missing files,
    directories, empty files and NUL in the path get the same errors."""
    (tmp_path / "empty.zip").write_bytes(b"")
    for name, match in (("missing.zip", "cannot open"), ("", "cannot open"), ("empty.zip", "empty file")):
        for _ in both_paths():
            with pytest.raises(FormatError, match=match):
                ZipArchive.open(tmp_path / name)
    for _ in both_paths():
        with pytest.raises(ValueError, match="null"):
            ZipArchive.open(str(tmp_path / "a\0b.zip"))


@pytest.mark.parametrize("tail_max", [16 << 20, 100])
def test_open_reads_the_small_entries_from_a_copy_of_the_tail(tmp_path, monkeypatch, tail_max: int) -> None:
    from ctxbin import ziparchive

    monkeypatch.setattr(ziparchive, "_TAIL_MAX", tail_max)  # 100: the tail is too long, the mapping is scanned
    entries = {"model.params.bin": bytes(range(256)) * 400, "model": b"M" * 5000, "dlc.metadata": b"k=v"}  # past the first 4 KB read
    raw = _zip(entries)
    path = tmp_path / "a.zip"
    path.write_bytes(raw)
    for native in both_paths():
        z = ZipArchive.open(path)
        assert z.entries == ZipArchive(raw).entries
        for name, data in entries.items():
            view = z.read(name)
            assert bytes(view) == data
            # without the C core, or with a tail over the limit, every entry is a view of the mapping
            assert (view.obj is z.buffer) == (not native or tail_max == 100 or name == "model.params.bin")


@needs_native
def test_open_maps_the_file_only_when_asked(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    entries = {"model.params.bin": bytes(range(256)) * 400, "model": b"M" * 5000}
    path = tmp_path / "a.zip"
    path.write_bytes(_zip(entries))
    z = ZipArchive.open(path)
    assert bytes(z.read("model")) == entries["model"] and z._buf is None  # read from the tail's copy
    assert bytes(z.read("model.params.bin")) == entries["model.params.bin"]
    assert isinstance(z.buffer, mmap.mmap) and len(z.buffer) == path.stat().st_size
    # the file cut short before it is mapped: a clear error, not a short mapping
    z = ZipArchive.open(path)
    os.truncate(path, 1000)
    with pytest.raises(FormatError, match="changed since it was opened"):
        z.buffer
