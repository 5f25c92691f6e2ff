"""ctxbin's flatbuffer builder against the ``flatbuffers`` package as oracle:
any sequence of strings, vectors, reference vectors and tables (any fields,
alignments, defaults, shared vtables) gives byte for byte what
``flatbuffers.Builder`` gives for the same calls; the result decodes with the
``flatbuffers`` package's own table reader and with ctxbin's bounds-checked
reader."""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np
import pytest
from flatbuffers.table import Table as FbTable
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxbin.flatbuf import FlatBuffer
from ctxbin.flatbuild import REF, Builder, Layout
from tests.flatbuffers_vectors import offset_vector

_PREPEND = {
    "?": "Bool", "b": "Int8", "B": "Uint8", "h": "Int16", "H": "Uint16", "i": "Int32",
    "I": "Uint32", "q": "Int64", "Q": "Uint64", "f": "Float32", "d": "Float64",
}
# g (long double): 16-byte alignment, more padding than any other
_DTYPES = ["<i1", "<u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", ">i4", ">f8", "?", "g"]


def _scalar(fmt: str) -> st.SearchStrategy[Any]:
    if fmt == "?":
        return st.booleans()
    if fmt == "f":
        return st.floats(width=32)
    if fmt == "d":
        return st.floats()
    bits = {"b": 8, "h": 16, "i": 32, "q": 64}.get(fmt.lower(), 8)
    lo, hi = (0, (1 << bits) - 1) if fmt.isupper() else (-(1 << bits - 1), (1 << bits - 1) - 1)
    return st.one_of(st.just(0), st.integers(lo, hi))


@st.composite
def _table(draw: st.DrawFn) -> tuple[str, Any, list[Any]]:
    slots = draw(st.lists(st.integers(0, 12), unique=True, max_size=8))
    fields = [(s, draw(st.sampled_from([*_PREPEND, REF]))) for s in slots]
    values = [
        draw(st.one_of(st.none(), st.integers(0, 1 << 20) if f == REF else _scalar(f)))  # REF: which object
        for _, f in fields
    ]
    return "table", fields, values


_OPS = st.one_of(
    st.tuples(st.just("string"), st.text(max_size=12)),
    st.tuples(st.just("bytes"), st.binary(max_size=12)),
    st.tuples(st.just("vector"), st.sampled_from(_DTYPES), st.lists(st.integers(0, 100), max_size=6)),
    st.tuples(st.just("refs"), st.lists(st.integers(0, 1 << 20), max_size=5)),
    _table(),
)


def _run_oracle(ops: list[tuple], force: bool, ident: bytes | None) -> bytes:
    b = flatbuffers.Builder(0)
    b.ForceDefaults(force)
    made: list[int] = []
    for op in ops:
        kind = op[0]
        if kind == "string":
            made.append(b.CreateString(op[1]))
        elif kind == "bytes":
            made.append(b.CreateByteVector(op[1]))
        elif kind == "vector":
            made.append(b.CreateNumpyVector(np.array(op[2], np.dtype(op[1]))))
        elif kind == "refs":
            refs = [made[i % len(made)] for i in op[1]] if made else []
            made.append(offset_vector(b, refs))
        else:
            _, fields, values = op
            b.StartObject(13)
            for (slot, fmt), v in zip(fields, values):
                if v is None or (fmt == REF and not made):
                    continue
                if fmt == REF:
                    b.PrependUOffsetTRelativeSlot(slot, made[v % len(made)], 0)
                else:
                    getattr(b, f"Prepend{_PREPEND[fmt]}Slot")(slot, v, 0)
            made.append(b.EndObject())
    b.Finish(made[-1], file_identifier=ident)
    return bytes(b.Output())


def _run(ops: list[tuple], force: bool, ident: bytes | None) -> bytes:
    b = Builder(force_defaults=force)
    made: list[int] = []
    for op in ops:
        kind = op[0]
        if kind == "string":
            made.append(b.string(op[1]))
        elif kind == "bytes":
            made.append(b.byte_vector(op[1]))
        elif kind == "vector":  # lists (struct path for integers) and arrays (numpy path)
            values = op[2] if len(op[2]) % 2 else np.array(op[2], np.dtype(op[1]))
            made.append(b.vector(values, np.dtype(op[1])))
        elif kind == "refs":
            made.append(b.refs([made[i % len(made)] for i in op[1]] if made else []))
        else:
            _, fields, values = op
            vals = [
                None if fmt == REF and (v is None or not made) else made[v % len(made)] if fmt == REF else v
                for (_, fmt), v in zip(fields, values)
            ]
            made.append(b.table(Layout(*fields), vals))
    return b.finish(made[-1], ident)


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPS, min_size=1, max_size=25), st.booleans(), st.sampled_from([None, b"NETD", b"\x00\x01\x02\x03"]))
def test_same_bytes_as_the_flatbuffers_package(ops: list[tuple], force: bool, ident: bytes | None) -> None:
    assert _run(ops, force, ident) == _run_oracle(ops, force, ident)


@settings(max_examples=100, deadline=None)
@given(st.lists(_table(), min_size=1, max_size=12), st.booleans())
def test_layouts_reused_at_every_alignment(tables: list[tuple], force: bool) -> None:
    """The same layouts again and again at shifting write positions (cached
    plans, shared vtables) still match the oracle."""
    ops: list[tuple] = []
    for i, t in enumerate(tables * 3):
        ops += [("bytes", b"x" * (i % 7)), t]
    assert _run(ops, force, b"TEST") == _run_oracle(ops, force, b"TEST")


ROOT = Layout((0, "B"), (1, REF), (2, "q"), (3, REF), (4, "d"), (5, REF), (6, REF), (7, "?"))


def _sample() -> bytes:
    b = Builder()
    name = b.string("näme")
    dims = b.vector([3, 1, 4, 1, 5], "<u4")
    kids = b.refs([b.table(Layout((0, "i"), (1, REF)), [i, b.string(f"k{i}")]) for i in range(3)])
    wide = b.vector(np.array([1.5, -2.0]), "<f8")
    root = b.table(ROOT, [7, name, -(1 << 40), dims, 2.25, kids, wide, True])
    return b.finish(root, b"TEST")


def test_decodes_with_ctxbins_reader() -> None:
    root = FlatBuffer(_sample(), what="sample").root(b"TEST")
    assert root.scalar(0, "B") == 7
    assert root.string(1) == "näme"
    assert root.scalar(2, "q") == -(1 << 40)
    assert root.array(3, "<u4").tolist() == [3, 1, 4, 1, 5]
    assert root.scalar(4, "d") == 2.25
    assert [(t.scalar(0, "i"), t.string(1)) for t in root.tables(5)] == [(0, "k0"), (1, "k1"), (2, "k2")]
    assert root.array(6, "<f8").tolist() == [1.5, -2.0]
    assert root.scalar(7, "?") is True


def test_decodes_with_the_flatbuffers_package() -> None:
    buf = bytearray(_sample())
    assert flatbuffers.util.GetBufferIdentifier(buf, 0) == b"TEST"
    pos = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
    t = FbTable(buf, pos)
    assert t.String(pos + t.Offset(6)) == "näme".encode()
    assert t.Get(flatbuffers.number_types.Int64Flags, pos + t.Offset(8)) == -(1 << 40)
    assert t.GetVectorAsNumpy(flatbuffers.number_types.Uint32Flags, t.Offset(10)).tolist() == [3, 1, 4, 1, 5]
    assert t.VectorLen(t.Offset(14)) == 3


def test_identical_tables_share_one_vtable() -> None:
    b = Builder()
    lay = Layout((0, "i"), (1, "i"))
    assert b.table(lay, [1, 2]) == 12 and b.offset == 20  # i32 + two fields, then a 4-slot vtable
    assert b.table(lay, [3, 4]) == 32 and b.offset == 32  # no second vtable


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="bad table field"):
        Layout((0, "x"))
    with pytest.raises(ValueError, match="1-D numbers"):
        Builder().vector(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="4 bytes"):
        Builder().finish(0, b"TOOLONG")
    with pytest.raises(ValueError, match="does not fit"):
        Builder().table(Layout((0, "B")), [256])
    with pytest.raises(ValueError, match="does not fit"):
        Builder().table(Layout((0, "f")), [1e300])
    with pytest.raises(ValueError, match="do not fit"):
        Builder().vector([-1], np.uint32)
    b = Builder()
    with pytest.raises(ValueError, match="already written"):
        b.refs([b.string("x") + 4])
    with pytest.raises(ValueError, match="already written"):
        b.table(Layout((0, REF)), [b.offset + 8])
    with pytest.raises(ValueError, match="65535"):
        Builder().table(Layout(*((i, "q") for i in range(9000))), [1] * 9000)
