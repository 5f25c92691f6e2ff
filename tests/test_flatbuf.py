"""The bounds-checked flatbuffer reader against hand-made hostile buffers.

A valid buffer is built with ``flatbuffers.Builder``; hostile variants patch
its root offset, vtables, soffsets, vector counts and strings by hand, or are
built with shared references (one table or string referenced thousands of
times) to amplify decoding work. Every one must give a FormatError naming the
object and a byte offset, quickly and without allocating from declared sizes.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxbin.errors import CtxbinError, FormatError
from ctxbin.flatbuf import TABLE_WORK, WORK_FLOOR, WORK_PER_BYTE, FlatBuffer, Table
from tests.flatbuffers_vectors import offset_vector

IDENT = b"TEST"
# Root: 0 name, 1 values [int32], 2 children [Child], 3 tags [string], 4 data [ubyte], 5 count u32, 6 child
# Child: 0 id int32, 1 label string
NAME, VALUES, CHILDREN, TAGS, DATA, COUNT, CHILD = range(7)
C_ID, C_LABEL = range(2)


def _child(b: flatbuffers.Builder, i: int) -> int:
    label = b.CreateString(f"child-{i}")
    b.StartObject(2)
    b.PrependInt32Slot(C_ID, i, 0)
    b.PrependUOffsetTRelativeSlot(C_LABEL, label, 0)
    return b.EndObject()


def build(n_children: int = 3) -> bytes:
    """A valid buffer exercising every reader method."""
    b = flatbuffers.Builder(0)
    name = b.CreateString("root naïve")
    values = b.CreateNumpyVector(np.arange(5, dtype=np.int32))
    data = b.CreateByteVector(b"\x00\x01\xfe\xff")
    kids = [_child(b, i) for i in range(n_children)]
    children = offset_vector(b, kids)
    tags_s = [b.CreateString(t) for t in ("a", "", "ünï")]
    tags = offset_vector(b, tags_s)
    single = _child(b, 99)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(NAME, name, 0)
    b.PrependUOffsetTRelativeSlot(VALUES, values, 0)
    b.PrependUOffsetTRelativeSlot(CHILDREN, children, 0)
    b.PrependUOffsetTRelativeSlot(TAGS, tags, 0)
    b.PrependUOffsetTRelativeSlot(DATA, data, 0)
    b.PrependUint32Slot(COUNT, 7, 0)
    b.PrependUOffsetTRelativeSlot(CHILD, single, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    return bytes(b.Output())


def decode(fb: FlatBuffer) -> dict[str, Any]:
    """Everything in a ``build`` buffer, through every reader method."""
    r = fb.root(IDENT)
    child = r.table(CHILD, "child")
    span = r.vector_span(VALUES, 4)
    return {
        "name": r.string(NAME),
        "values": r.array(VALUES, "<i4").tolist(),
        "span": None if span is None else span[1],
        "children": [(c.scalar(C_ID, "i"), c.string(C_LABEL)) for c in r.tables(CHILDREN, "children")],
        "tags": r.strings(TAGS),
        "data": None if (raw := r.bytes_(DATA)) is None else bytes(raw),
        "count": r.scalar(COUNT, "I"),
        "n_tags": r.length(TAGS),
        "child": None if child is None else (child.scalar(C_ID, "i"), child.string(C_LABEL)),
        "mapped": r.map(CHILDREN, lambda t: t.scalar(C_ID, "i")),
    }


def expect(buf: bytes, match: str, **kw: Any) -> FormatError:
    with pytest.raises(FormatError, match=match) as e:
        decode(FlatBuffer(buf, path="hostile.bin", **kw))
    err = e.value
    assert err.path == "hostile.bin" and err.obj and err.offset is not None, str(err)
    return err


def positions(buf: bytes) -> tuple[Table, FlatBuffer]:
    fb = FlatBuffer(buf)
    return fb.root(IDENT), fb


def field_at(t: Table, index: int) -> int:
    """Buffer position of field ``index`` of table ``t`` (it must be present)."""
    at = t.struct(index, 4)
    assert at is not None
    return at


def patch(buf: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(buf)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


# --------------------------------------------------------------------------- valid buffers


def test_valid_buffer_decodes() -> None:
    got = decode(FlatBuffer(build()))
    assert got == {
        "name": "root naïve", "values": [0, 1, 2, 3, 4], "span": 5,
        "children": [(0, "child-0"), (1, "child-1"), (2, "child-2")],
        "tags": ["a", "", "ünï"], "data": b"\x00\x01\xfe\xff", "count": 7, "n_tags": 3,
        "child": (99, "child-99"), "mapped": [0, 1, 2],
    }


def test_buffer_inside_a_file_reports_file_offsets() -> None:
    """start/size select the flatbuffer inside a larger file; base shifts reported offsets."""
    inner = build()
    file = b"HEADER--" + inner + b"trailer"
    fb = FlatBuffer(file, start=8, size=len(inner), path="f", base=8)
    assert decode(fb) == decode(FlatBuffer(inner))
    bad = file[:8] + patch(inner, 0, "<I", len(inner) + 4) + b"trailer"
    with pytest.raises(FormatError) as e:
        FlatBuffer(bad, start=8, size=len(inner), path="f", base=8).root(IDENT)
    assert e.value.offset == 8 + len(inner) + 4


def test_absent_fields_give_defaults() -> None:
    b = flatbuffers.Builder(0)
    b.StartObject(7)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    r = FlatBuffer(bytes(b.Output())).root(IDENT)
    assert r.string(NAME, "dflt") == "dflt" and r.array(VALUES, "<i4").size == 0
    assert r.tables(CHILDREN) == [] and r.strings(TAGS) == [] and r.bytes_(DATA) is None
    assert r.scalar(COUNT, "I", 5) == 5 and r.table(CHILD) is None and r.length(TAGS) == 0
    assert r.vector_span(VALUES, 4) is None and not r.has(NAME)


def test_region_outside_the_file() -> None:
    with pytest.raises(FormatError, match="outside the file"):
        FlatBuffer(b"\0" * 16, start=8, size=16, path="f")


# --------------------------------------------------------------------------- hostile layout


@pytest.mark.parametrize("root", [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 20])
def test_root_offset_out_of_range(root: int) -> None:
    err = expect(patch(build(), 0, "<I", root), "run past the end")
    assert err.offset == root


def test_too_short_and_wrong_identifier() -> None:
    expect(build()[:7], "too short")
    expect(build()[:4] + b"NOPE" + build()[8:], "file identifier")


def test_vtable_past_the_end() -> None:
    buf = build()
    r, _ = positions(buf)
    # soffset = table - vtable: a vtable 1 MiB after the table, named at the table
    err = expect(patch(buf, r.pos, "<i", -(1 << 20)), f"vtable offset {-(1 << 20)} leads outside the buffer")
    assert err.offset == r.pos


@pytest.mark.parametrize("soffset", [1 << 20, 0x7FFFFFFF, -0x80000000])
def test_soffset_pointing_outside(soffset: int) -> None:
    """A table's soffset placing its vtable before the buffer start or far after it."""
    buf = build()
    r, _ = positions(buf)
    err = expect(patch(buf, r.pos, "<i", soffset), f"vtable offset {soffset} leads outside the buffer")
    assert err.offset == r.pos  # the table holding the bad soffset, never a position outside the file


@pytest.mark.parametrize("vt_size", [0, 2, 3, 7, 0xFFFF])
def test_bad_vtable_size(vt_size: int) -> None:
    buf = build()
    r, _ = positions(buf)
    expect(patch(buf, r.vt, "<H", vt_size), "bad vtable size|run past the end")


def test_vtable_running_past_the_end() -> None:
    buf = build()
    r, _ = positions(buf)
    expect(patch(buf, r.vt, "<H", 0xFFFE), "run past the end")


def test_table_size_past_the_end() -> None:
    buf = build()
    r, _ = positions(buf)
    expect(patch(buf, r.vt + 2, "<H", 0xFFFF), "run past the end")


def test_field_outside_its_table() -> None:
    buf = build()
    r, _ = positions(buf)
    err = expect(patch(buf, r.vt + 4 + 2 * COUNT, "<H", r.tbl_size), "outside its")
    assert err.offset == r.pos


@pytest.mark.parametrize("field", [NAME, VALUES, CHILDREN, TAGS, DATA, CHILD])
@pytest.mark.parametrize("offset", [0xFFFFFFFF, 0x80000000, 1 << 16])
def test_reference_out_of_range(field: int, offset: int) -> None:
    buf = build()
    r, _ = positions(buf)
    expect(patch(buf, field_at(r, field), "<I", offset), "run past the end")


@pytest.mark.parametrize("field", [VALUES, CHILDREN, TAGS, DATA, NAME])
@pytest.mark.parametrize("count", [0xFFFFFFFF, 0x40000000, 1 << 20])
def test_huge_vector_count(field: int, count: int) -> None:
    """A huge element count is refused before anything is allocated or looped over."""
    buf = build()
    r, _ = positions(buf)
    vec = r.fb.deref(field_at(r, field), "x")
    t0 = time.perf_counter()
    err = expect(patch(buf, vec, "<I", count), "run past the end")
    assert time.perf_counter() - t0 < 0.5
    assert err.offset == vec + 4


def test_vector_element_out_of_range() -> None:
    buf = build()
    r, _ = positions(buf)
    vec = r.fb.deref(field_at(r, CHILDREN), "x")
    err = expect(patch(buf, vec + 4 + 4, "<I", 0xFFFFFF00), "run past the end")
    assert err.obj == "children[1]"


# --------------------------------------------------------------------------- strings


def _string_pos(buf: bytes, which: str) -> int:
    r, fb = positions(buf)
    if which == "name":
        return fb.deref(field_at(r, NAME), "x")
    tags = fb.deref(field_at(r, TAGS), "x")
    return fb.deref(tags + 4 + 4 * 2, "x")  # "ünï", via strings()


@pytest.mark.parametrize("which", ["name", "tag"])
def test_unterminated_string(which: str) -> None:
    buf = build()
    s = _string_pos(buf, which)
    n = struct.unpack_from("<I", buf, s)[0]
    err = expect(patch(buf, s + 4 + n, "<B", ord("x")), "not NUL-terminated")
    assert err.offset == s + 4 + n


@pytest.mark.parametrize("which", ["name", "tag"])
def test_string_length_one_short(which: str) -> None:
    """A length one byte short leaves the last character where the NUL should be."""
    buf = build()
    s = _string_pos(buf, which)
    n = struct.unpack_from("<I", buf, s)[0]
    expect(patch(buf, s, "<I", n - 1), "not NUL-terminated|not valid UTF-8")


@pytest.mark.parametrize("which", ["name", "tag"])
@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\xc3\x28", b"\xed\xa0"])
def test_invalid_utf8(which: str, bad: bytes) -> None:
    buf = build()
    s = _string_pos(buf, which)
    err = expect(buf[: s + 4] + bad + buf[s + 4 + len(bad) :], "not valid UTF-8")
    assert err.offset == s + 4  # the first bad byte


@pytest.mark.parametrize("which", ["name", "tag"])
def test_string_length_past_the_end(which: str) -> None:
    buf = build()
    s = _string_pos(buf, which)
    expect(patch(buf, s, "<I", 0xFFFFFFF0), "run past the end")


# --------------------------------------------------------------------------- amplification


def _shared_vector(b: flatbuffers.Builder, target: int, n: int) -> int:
    return offset_vector(b, [target] * n)


def quadratic(n: int) -> bytes:
    """Root.children = n references to one Child whose own ``children`` vector
    holds n references to one grandchild: n² tables from O(n) bytes."""
    b = flatbuffers.Builder(0)
    label = b.CreateString("g")
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(C_LABEL, label, 0)
    grandchild = b.EndObject()
    grands = _shared_vector(b, grandchild, n)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(CHILDREN, grands, 0)
    child = b.EndObject()
    kids = _shared_vector(b, child, n)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(CHILDREN, kids, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    return bytes(b.Output())


def test_shared_tables_are_bounded() -> None:
    """20,000 references to one table holding 20,000 references to another:
    4e8 tables from 160 KB. The budget stops the walk early, naming where."""
    buf = quadratic(20_000)
    fb = FlatBuffer(buf, path="amplified.bin", what="metadata")
    t0 = time.perf_counter()
    visited = 0
    with pytest.raises(FormatError, match="shared beyond") as e:
        for child in fb.root(IDENT).tables(CHILDREN, "children"):
            visited += len(child.tables(CHILDREN, "grandchildren"))
    assert time.perf_counter() - t0 < 5
    err = e.value
    assert err.path == "amplified.bin" and err.obj.startswith("grandchildren") and err.offset is not None
    assert f"{len(buf)}-byte buffer" in str(err)
    # what was decoded before stopping is bounded by the size-proportional budget
    assert visited * TABLE_WORK <= WORK_PER_BYTE * len(buf) + WORK_FLOOR


def test_unshared_buffer_of_the_same_size_decodes() -> None:
    """The budget never stops an honest buffer: 40,000 distinct tables (more
    than the hostile buffer above holds references) read twice over."""
    b = flatbuffers.Builder(0)
    kids = []
    for i in range(40_000):
        b.StartObject(2)
        b.PrependInt32Slot(C_ID, i, 0)
        kids.append(b.EndObject())
    vec = offset_vector(b, kids)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(CHILDREN, vec, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    fb = FlatBuffer(bytes(b.Output()))
    ids = [t.scalar(C_ID, "i") for t in fb.root(IDENT).tables(CHILDREN)]
    assert ids == list(range(40_000))
    # a second full pass still fits: honest re-reads are allowed
    assert len(fb.root(IDENT).tables(CHILDREN)) == 40_000


def test_shared_strings_are_bounded() -> None:
    """50,000 references to one 64 KiB string would decode 3.2 GB of text."""
    b = flatbuffers.Builder(0)
    big = b.CreateString("x" * (64 << 10))
    tags = _shared_vector(b, big, 50_000)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(TAGS, tags, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    buf = bytes(b.Output())
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="shared beyond") as e:
        FlatBuffer(buf, path="s.bin").root(IDENT).strings(TAGS, "tags")
    assert time.perf_counter() - t0 < 5
    assert e.value.obj.startswith("tags[")


def test_shared_byte_vectors_are_bounded() -> None:
    """One 64 KiB [ubyte] read through 50,000 shared tables (callers copy what they read)."""
    b = flatbuffers.Builder(0)
    data = b.CreateByteVector(b"\x01" * (64 << 10))
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(DATA, data, 0)
    holder = b.EndObject()
    kids = _shared_vector(b, holder, 50_000)
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(CHILDREN, kids, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    fb = FlatBuffer(bytes(b.Output()))
    with pytest.raises(FormatError, match="shared beyond"):
        for t in fb.root(IDENT).tables(CHILDREN):
            bytes(t.bytes_(DATA) or b"")


def test_zero_copy_spans_cost_only_their_count() -> None:
    """vector_span is for zero-copy views (weights): re-reading it costs O(1)."""
    b = flatbuffers.Builder(0)
    vals = b.CreateNumpyVector(np.zeros(1 << 16, np.float32))
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(VALUES, vals, 0)
    b.Finish(b.EndObject(), file_identifier=IDENT)
    fb = FlatBuffer(bytes(b.Output()))
    r = fb.root(IDENT)
    for _ in range(1000):
        assert r.vector_span(VALUES, 4)[1] == 1 << 16
    with pytest.raises(FormatError, match="shared beyond"):
        for _ in range(1000):
            r.array(VALUES, "<f4")


def test_budget_is_proportional_and_overridable() -> None:
    buf = build()
    assert FlatBuffer(buf).budget == WORK_PER_BYTE * len(buf) + WORK_FLOOR
    fb = FlatBuffer(buf, budget=TABLE_WORK - 1, path="tight.bin")
    with pytest.raises(FormatError, match="shared beyond") as e:
        fb.root(IDENT)
    assert e.value.obj == "root" and e.value.offset == struct.unpack_from("<I", buf)[0]
    fb = FlatBuffer(buf)
    fb.charge(fb.budget, "x", 0)  # spending all of it is fine
    with pytest.raises(FormatError, match="shared beyond"):
        fb.charge(1, "reader copy", 12)


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0xFE])),
                min_size=1, max_size=6),
       st.integers(0, 1 << 16))
def test_fuzz_only_format_errors(edits: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(build())
    for at, value in edits:
        buf[at % len(buf)] = value
    buf = buf[: max(8, len(buf) - cut % 16)] if cut % 3 == 0 else buf
    try:
        decode(FlatBuffer(bytes(buf), path="fuzz.bin"))
    except FormatError as e:
        assert isinstance(e, CtxbinError) and e.offset is not None
