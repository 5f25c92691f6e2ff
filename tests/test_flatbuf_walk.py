"""The schema walk of ctxbin.flatbuf: the C core's walker and the numpy
fallback give the same rows, strings and budget on real DLC flatbuffers
(written by ctxbin's own lowering) and on mutated ones, or both raise
FormatError; hostile sharing and bad strings are refused."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin import flatbuf, hashing
from ctxbin.errors import FormatError
from ctxbin.flatbuf import SCALAR, STRING, STRINGS, TABLE, TABLES, VECTOR, Field, FlatBuffer, Schema, TableType, walk
from ctxbin.formats import dlc
from ctxbin.ziparchive import ZipArchive

from .flatbuffers_vectors import offset_vector
from .native_paths import both_paths

SCHEMAS = {"model": (dlc._V4_MODEL,), "model.params": (dlc._V4_PARAMS,)}


@pytest.fixture(scope="module")
def entries(own_dlc: Path) -> dict[str, bytes]:
    """Its flatbuffers, without the 8-byte prefix."""
    z = ZipArchive.open(own_dlc)
    return {name: bytes(z.read(name)[8:]) for name in SCHEMAS}


def _outcome(buf: bytes, schema: Schema, budget: int | None = None) -> list[object]:
    """What each path gives: (cells, spans, pool, strings, budget left) or the
    error; ``budget``: the walk's, instead of the buffer's default."""
    got = []
    for _ in both_paths():
        fb = FlatBuffer(buf, what="fb", budget=budget)
        try:
            w = walk(fb, schema)
            got.append((w.cells, w.spans, w.pool, w.strings(0, w.spans.shape[0]), fb.budget))
        except FormatError as e:
            got.append(e)
    return got


def _same(got: list[object]) -> None:
    if len(got) == 1:
        return
    a, b = got
    if isinstance(a, FormatError) or isinstance(b, FormatError):
        assert isinstance(a, FormatError) and isinstance(b, FormatError), got
        assert a.path == b.path and a.obj and b.obj and a.offset is not None and b.offset is not None
        assert a.offset >= 0 and b.offset >= 0, got  # an offset names a place in the file
        return
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    assert np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_native_walker_is_built() -> None:
    if hashing._native_core is None:
        pytest.skip("the C core is not built here (python native/build.py): only the numpy walk runs")
    assert hasattr(hashing._native_core.lib, "ctxbin_fb_walk")


@pytest.mark.parametrize("entry", sorted(SCHEMAS))
def test_real_flatbuffers_walk_the_same(entries: dict[str, bytes], entry: str) -> None:
    for schema in SCHEMAS[entry]:
        got = _outcome(entries[entry], schema)
        assert not any(isinstance(g, FormatError) for g in got)
        _same(got)
    fb = FlatBuffer(entries["model"])
    w = walk(fb, dlc._V4_MODEL)
    first, count = (int(c[0]) for c in w.column("Graph", "tensors"))
    assert w.count("Graph") == 1 and w.texts("Graph", "name") == ["fcn"] and first == 0
    names = w.texts("Tensor", "name")[:count]  # the graph's tensors, then its tensor params'
    assert len(names) == len(set(names)) == count > 10 and w.count("Tensor") > count
    # the same values as the table-at-a-time reader
    g = fb.root().tables(0)[0]
    assert names == [t.string(1) for t in g.tables(2)]
    assert w.scalars("Tensor", "dtype")[:count].tolist() == [t.scalar(6, "i") for t in g.tables(2)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_flatbuffers_walk_the_same_or_both_fail(entries: dict[str, bytes], data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(sorted(SCHEMAS)))
    schema = data.draw(st.sampled_from(SCHEMAS[entry]))
    buf = bytearray(entries[entry])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, min(len(buf), 4096) - 1))  # the head holds the offsets and vtables
        buf[at] = data.draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, data.draw(st.integers(0, 255))]))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    _same(_outcome(bytes(buf), schema))


_SHARED = Schema((
    TableType("Root", (Field("items", 0, TABLES, child="Item"),)),
    TableType("Item", (Field("name", 0, STRING), Field("tags", 1, STRINGS))),
))


def _shared_buffer(n: int, name: str = "k") -> bytes:
    """A root whose vector holds n references to one table, whose tags are n
    references to one string: n * n strings from O(n) bytes."""
    b = flatbuffers.Builder(0)
    s = b.CreateString(name)

    def shared(target: int) -> int:
        return offset_vector(b, [target] * n)

    tags = shared(s)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, s, 0)
    b.PrependUOffsetTRelativeSlot(1, tags, 0)
    item = b.EndObject()
    vec = shared(item)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def test_hostile_sharing_is_refused_on_both_paths() -> None:
    buf = _shared_buffer(20_000)
    for _ in both_paths():
        with pytest.raises(FormatError, match="shared beyond"):
            walk(FlatBuffer(buf, what="fb"), _SHARED)


_MEMORY_CHILD = """
import resource, struct, sys
import numpy as np
from ctxbin.errors import FormatError
from ctxbin.flatbuf import TABLES, STRING, Field, FlatBuffer, Schema, TableType, walk
fields, n = 15, int(sys.argv[1])
schema = Schema((TableType("Root", tuple(Field(f"f{i}", i, TABLES, child="Item") for i in range(fields))),
                 TableType("Item", (Field("name", 0, STRING),))))
# root offset, the root's vtable and table (every field: the one vector), the
# vector (n references to one table), the table's vtable, the table, its string
vt_root, root = 4, 4 + 4 + 2 * fields
vec = root + 4 + 4 * fields
vt_item = vec + 4 + 4 * n
item = vt_item + 8
text = item + 8
head = struct.pack("<I", root) + struct.pack(f"<HH{fields}H", 4 + 2 * fields, 4 + 4 * fields,
                                             *(4 + 4 * i for i in range(fields)))
head += struct.pack("<i", root - vt_root) + b"".join(struct.pack("<I", vec - (root + 4 + 4 * i)) for i in range(fields))
refs = (item - (vec + 4) - 4 * np.arange(n, dtype=np.int64)).astype("<u4").tobytes()
tail = struct.pack("<HHHH", 6, 8, 4, 0) + struct.pack("<iI", item - vt_item, text - (item + 4)) + struct.pack("<I", 1) + b"k\\0"
buf = head + struct.pack("<I", n) + refs + tail
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    walk(FlatBuffer(buf, what="fb"), schema)
    print("walked")
except FormatError as e:
    print("refused", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / len(buf))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX")
def test_tables_shared_by_many_fields_cost_memory_within_the_budget() -> None:
    """One vector of n references, named by each of 15 fields of the root: 15n
    tables from ~4n bytes. Each is charged where its parent names it, before
    it is kept for its type's turn, so the walk is refused with memory in
    proportion to the file, on both paths (charged only at their turn, the
    tables kept first took ~60-90 bytes per byte of the file)."""
    for _ in both_paths():
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(1 << 20)], capture_output=True, text=True,
                             check=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
        what, _, per_byte = out.stdout.strip().partition(" ")
        assert what == "refused" and float(per_byte) < 25, out.stdout


def test_errors_name_type_row_and_offset() -> None:
    buf = bytearray(_shared_buffer(3))
    buf[0:4] = (len(buf) - 2).to_bytes(4, "little")  # root offset pointing past the end
    for _ in both_paths():
        with pytest.raises(FormatError, match="run past the end") as e:
            walk(FlatBuffer(bytes(buf), what="fb", path="x.bin", base=100), _SHARED)
        assert e.value.path == "x.bin" and "Root[0]" in str(e.value.obj) and e.value.offset >= 100


def test_bad_utf8_is_named_when_decoded() -> None:
    buf = bytearray(_shared_buffer(2, "ab"))
    at = bytes(buf).index(b"ab")
    buf[at] = 0xFF
    for _ in both_paths():
        w = walk(FlatBuffer(bytes(buf), what="fb"), _SHARED)  # bounds and NUL are checked by the walk
        with pytest.raises(FormatError, match="not valid UTF-8") as e:
            w.texts("Item", "name")
        assert e.value.offset == at


def test_strings_with_nul_inside_decode_one_by_one() -> None:
    buf = _shared_buffer(2, "a\0b")
    for _ in both_paths():
        assert walk(FlatBuffer(buf), _SHARED).texts("Item", "name") == ["a\0b", "a\0b"]


def test_schema_children_must_follow_parents() -> None:
    with pytest.raises(ValueError, match="must follow"):
        Schema((TableType("A", (Field("b", 0, TABLES, child="A"),)),))


def test_dlc_read_is_the_same_on_both_paths(own_dlc: Path) -> None:
    seen = []
    for _ in both_paths():
        (g,) = dlc.read(own_dlc).graphs
        seen.append((g.name, [(t.name, t.dtype, t.shape, t.kind, t.encoding) for t in g.tensors.values()],
                     [(n.name, n.op_type, n.inputs, n.outputs, sorted(n.attrs)) for n in g.nodes]))
    assert all(s == seen[0] for s in seen)


def test_native_walk_arrays_outlive_the_walk(entries: dict[str, bytes]) -> None:
    """The C core's arrays are handed over without a copy: they stay valid
    (and equal to the numpy walk's) after the Walk and its C result are gone."""
    buf = entries["model"]
    kept = []
    for _ in both_paths():
        w = walk(FlatBuffer(buf, what="fb"), dlc._V4_MODEL)
        kept.append((w.cells, w.spans, bytes(w.pool[:64]), w.pool))
        del w
    gc.collect()
    junk = [np.full(4096, -7, np.int64) for _ in range(256)]  # reuse of freed memory would show
    assert len(junk) == 256
    if len(kept) == 2:
        (cells, spans, head, pool), (ncells, nspans, nhead, npool) = kept
        assert all(np.array_equal(x, y) for x, y in zip(cells, ncells)) and np.array_equal(spans, nspans)
        assert head == nhead and bytes(pool) == bytes(npool)


def test_few_and_many_strings_decode_alike(entries: dict[str, bytes]) -> None:
    """Short runs are decoded string by string, longer ones from the pool: same strings."""
    for _ in both_paths():
        w = walk(FlatBuffer(entries["model"], what="fb"), dlc._V4_MODEL)
        n = w.spans.shape[0]
        every = w.strings(0, n)
        assert len(every) == n
        for lo in range(0, n, max(1, n // 50)):
            for k in (1, 2, flatbuf._FEW_STRINGS, flatbuf._FEW_STRINGS + 1, 40):
                assert w.strings(lo, min(n, lo + k)) == every[lo : lo + k]


@pytest.mark.parametrize("name", ["", "k", "x" * 27, "y" * 31, "z" * 32, "w" * 33, "long name " * 12])
def test_strings_of_every_length_and_regrown_rows_walk_the_same(name: str) -> None:
    """Short strings are copied into the pool in fixed-size pieces, longer ones
    (and ones ending near the buffer's end: the builder puts the name last)
    whole; a type with more tables than the room first made for it regrows:
    the same cells, strings and pool on both paths."""
    buf = _shared_buffer(20, name)
    got = _outcome(buf, _SHARED)
    assert not any(isinstance(g, FormatError) for g in got)
    _same(got)
    cells, spans, pool, strings, _ = got[0]
    assert strings == [name] * (20 + 20 * 20) and bytes(pool) == (name.encode() + b"\0") * (20 + 20 * 20)
    assert cells[1].shape == (20, 5)


_MIXED = Schema((
    TableType("Root", (Field("items", 0, TABLES, child="Item"),)),
    TableType("Item", (Field("a", 0, SCALAR, "i"), Field("b", 1, STRING), Field("c", 2, SCALAR, "q"),
                       Field("d", 3, TABLE, child="Sub"), Field("e", 4, VECTOR, "H"))),
    TableType("Sub", (Field("x", 0, SCALAR, "B"), Field("y", 1, STRING))),
))


def _mixed_buffer(items: list[tuple[bool, ...]]) -> bytes:
    """A root with one Item per entry of items, each with the fields (a .. e)
    its flags say: many field sets, so many vtables (the builder shares equal ones)."""
    b = flatbuffers.Builder(0)
    made = []
    for i, (a, has_b, c, d, e) in enumerate(items):
        name = b.CreateString(f"item{i}") if has_b else None
        sub = None
        if d:
            y = b.CreateString("s" * (i % 40))
            b.StartObject(2)
            b.PrependUint8Slot(0, i % 256, (i + 1) % 256)
            b.PrependUOffsetTRelativeSlot(1, y, 0)
            sub = b.EndObject()
        vec = None
        if e:
            b.StartVector(2, i % 5, 2)
            for k in range(i % 5):
                b.PrependUint16(k)
            vec = b.EndVector()
        b.StartObject(5)
        if a:
            b.PrependInt32Slot(0, -i, 1)
        if name is not None:
            b.PrependUOffsetTRelativeSlot(1, name, 0)
        if c:
            b.PrependInt64Slot(2, i << 40, 1)
        if sub is not None:
            b.PrependUOffsetTRelativeSlot(3, sub, 0)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(4, vec, 0)
        made.append(b.EndObject())
    vec = offset_vector(b, made)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def _mixed_outcome(items: list[tuple[bool, ...]], damage: tuple[int, int] | None) -> list[object]:
    """Both paths' walks of :func:`_mixed_buffer` (one byte set to a value
    where ``damage`` says), checked equal."""
    buf = bytearray(_mixed_buffer(items))
    if damage is not None:
        at, value = damage
        buf[4 + at % (len(buf) - 4)] = value
    got = _outcome(bytes(buf), _MIXED)
    _same(got)
    return got


@settings(max_examples=80, deadline=None)
@given(items=st.lists(st.tuples(*[st.booleans()] * 5), min_size=1, max_size=48),
       damage=st.none() | st.tuples(st.integers(0, 10**6), st.sampled_from([0xFF, 0x7F, 0x40, 0x00])))
def test_tables_of_many_vtables_walk_the_same(items: list[tuple[bool, ...]], damage: tuple[int, int] | None) -> None:
    """Tables of one type with up to 32 different vtables, interleaved (the C
    walk reads each distinct vtable once and finds it again by position),
    fields absent from every table of a type, and, damaged, a vtable entry
    pointing past its table or a vtable moved: the same cells, strings and
    budget on both paths, or errors on both."""
    got = _mixed_outcome(items, damage)
    if damage is None:
        assert not isinstance(got[0], FormatError)
        cells = got[0][0]
        assert cells[1].shape == (len(items), 11)
        assert cells[1][:, 1].tolist() == [-i & 0xFFFFFFFF if f[0] else 0 for i, f in enumerate(items)]  # raw bits


@settings(max_examples=60, deadline=None)
@given(flags=st.tuples(*[st.booleans()] * 5), others=st.lists(st.just((True,) * 5), max_size=3),
       count=st.integers(1, 40), damage=st.none() | st.tuples(st.integers(0, 10**6), st.sampled_from([0xFF, 0x7F, 0x40, 0x00])))
def test_fields_in_every_vtable_walk_the_same(flags: tuple[bool, ...], others: list[tuple[bool, ...]], count: int,
                                              damage: tuple[int, int] | None) -> None:
    """Tables of one type sharing one vtable, or a few more with every field
    (the C walk's loops without a per-row lookup or presence test, and their
    errors): the same cells, strings and budget on both paths, or the same
    error at the same byte on both."""
    items = [flags] * count + others
    got = _mixed_outcome(items, damage)
    if len(got) == 2 and isinstance(got[0], FormatError):
        assert type(got[0]) is type(got[1]) and got[0].offset == got[1].offset, got
    if damage is None:
        assert not isinstance(got[0], FormatError)
        assert got[0][0][1].shape == (len(items), 11)


_NAMED = Schema((
    TableType("Root", (Field("name", 0, STRING), Field("tags", 1, STRINGS), Field("items", 2, TABLES, child="Item"))),
    TableType("Item", (Field("id", 0, SCALAR, "i"),)),
))


def _named_buffer(name: str, tags: list[str], items: int) -> bytes:
    """A root with a name, tags and `items` small tables; the name is made
    first, so it lies last in the buffer (the builder writes back to front)."""
    b = flatbuffers.Builder(0)
    s = b.CreateString(name)
    made = [b.CreateString(t) for t in tags]
    tag_vec = offset_vector(b, made)
    tables = []
    for i in range(items):
        b.StartObject(1)
        b.PrependInt32Slot(0, i, -1)
        tables.append(b.EndObject())
    item_vec = offset_vector(b, tables)
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(0, s, 0)
    b.PrependUOffsetTRelativeSlot(1, tag_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, item_vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


@settings(max_examples=40, deadline=None)
@given(name=st.text(max_size=100), tags=st.lists(st.text(max_size=100), max_size=12),
       items=st.integers(0, 40) | st.integers(1000, 2100))
def test_strings_of_any_length_and_long_table_vectors_walk_the_same(name: str, tags: list[str], items: int) -> None:
    """Strings of every length, one ending at the buffer's end (the C walk
    pools them after walking: short ones in fixed 32-byte copies where the
    buffer has room, up to 63 bytes in two that overlap, longer ones whole),
    and a vector of up to 2100 tables (the C walk's first room for a type's
    rows, a piece of a shared block or, this big, a block of its own, then
    regrown): the same cells, strings and pool on both paths."""
    got = _outcome(_named_buffer(name, tags, items), _NAMED)
    assert not any(isinstance(g, FormatError) for g in got)
    _same(got)
    cells, spans, pool, strings, _ = got[0]
    assert strings == [name, *tags]
    assert bytes(pool) == b"".join(t.encode() + b"\0" for t in [name, *tags])
    assert cells[1][:, 1].tolist() == list(range(items))


def _walk_cost(buf: bytes, schema: Schema) -> int:
    """The budget a walk of buf takes (both paths charge alike)."""
    fb = FlatBuffer(buf, what="fb")
    start = fb.budget
    walk(fb, schema)
    return start - fb.budget


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_budget_walks_the_same(entries: dict[str, bytes], data: st.DataObject) -> None:
    """The C walk charges each table where its parent names it but checks it
    when its type's turn comes, and walks some types a row at a time, then
    walks field by field again when that fails: with any budget around what
    a DLC flatbuffer needs, it passes exactly when the field-by-field walk
    does, leaving the same budget, and fails on both paths otherwise."""
    entry = data.draw(st.sampled_from(sorted(SCHEMAS)))
    buf = entries[entry]
    need = _walk_cost(buf, SCHEMAS[entry][0])
    budget = data.draw(st.integers(need - 40, need + 2) | st.integers(0, need))
    got = _outcome(buf, SCHEMAS[entry][0], budget)
    _same(got)
    if budget >= need:
        assert not isinstance(got[0], FormatError) and got[0][4] == budget - need
    else:
        assert isinstance(got[0], FormatError) and "more decoding work" in str(got[0])


# Types of the shapes the C walk takes a row at a time (Param, BinRef and
# ScaleOffset of the DLC schemas), and one like Param whose two table fields
# share a child type, which it must walk field by field (its child rows would
# come in another order row by row).
_SHAPED = Schema((
    TableType("Root", (Field("items", 0, TABLES, child="Item"), Field("pairs", 1, TABLES, child="Pair"))),
    TableType("Item", (Field("name", 0, STRING), Field("kind", 1, SCALAR, "i"), Field("ref", 2, TABLE, child="Ref"),
                       Field("scale", 3, TABLE, child="Scale"))),
    TableType("Pair", (Field("name", 0, STRING), Field("kind", 1, SCALAR, "i"), Field("a", 2, TABLE, child="Ref"),
                       Field("b", 3, TABLE, child="Ref"))),
    TableType("Ref", (Field("offset", 0, SCALAR, "Q"), Field("size", 1, SCALAR, "Q"))),
    TableType("Scale", (Field("bits", 0, SCALAR, "i"), Field("scale", 1, SCALAR, "f"), Field("offset", 2, SCALAR, "i"),
                        Field("symmetric", 3, SCALAR, "B"))),
))


def _shaped_buffer(items: list[tuple[bool, ...]]) -> bytes:
    """A root with an Item and a Pair per entry of items, each with the fields
    its flags say (name, kind, ref, scale; a Pair's a and b: ref, scale), some
    refs shared by consecutive items: rows with vtables that alternate."""
    b = flatbuffers.Builder(0)
    refs = []
    for i in range(len(items)):
        b.StartObject(2)
        b.PrependUint64Slot(0, i << 33, 0)
        b.PrependUint64Slot(1, i + 1, 0)
        refs.append(b.EndObject())
    made = {"Item": [], "Pair": []}
    for i, (has_name, has_kind, has_ref, has_scale, share) in enumerate(items):
        for what in made:
            name = b.CreateString(f"{what}{i}" * (i % 7)) if has_name else None
            scale = None
            if has_scale and what == "Item":
                b.StartObject(4)
                b.PrependInt32Slot(0, i, 0)
                b.PrependFloat32Slot(1, i / 8, 0)
                b.PrependUint8Slot(3, i % 2, 0)
                scale = b.EndObject()
            ref = refs[i - 1 if share and i else i]
            b.StartObject(4)
            if name is not None:
                b.PrependUOffsetTRelativeSlot(0, name, 0)
            if has_kind:
                b.PrependInt32Slot(1, 1 - i, 0)
            if has_ref:
                b.PrependUOffsetTRelativeSlot(2, ref, 0)
            if scale is not None:
                b.PrependUOffsetTRelativeSlot(3, scale, 0)
            elif has_scale:
                b.PrependUOffsetTRelativeSlot(3, refs[i], 0)
            made[what].append(b.EndObject())
    vecs = [offset_vector(b, made[what]) for what in ("Item", "Pair")]
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, vecs[0], 0)
    b.PrependUOffsetTRelativeSlot(1, vecs[1], 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


@settings(max_examples=80, deadline=None)
@given(items=st.lists(st.tuples(*[st.booleans()] * 5), min_size=1, max_size=40),
       damage=st.none() | st.tuples(st.integers(0, 10**6), st.sampled_from([0xFF, 0x7F, 0x40, 0x04, 0x00])),
       short=st.integers(0, 3))
def test_types_walked_row_by_row_walk_the_same(items: list[tuple[bool, ...]], damage: tuple[int, int] | None,
                                               short: int) -> None:
    """Types the C walk takes a row at a time (with each table checked there),
    their rows' vtables alternating, child tables shared, fields absent, and a
    type of the same shape whose table fields share a child type (walked
    field by field): damaged or short of budget, the same cells, strings and
    budget on both paths, or errors on both."""
    buf = bytearray(_shaped_buffer(items))
    if damage is not None:
        at, value = damage
        buf[4 + at % (len(buf) - 4)] = value
    need = _walk_cost(bytes(_shaped_buffer(items)), _SHAPED)
    got = _outcome(bytes(buf), _SHAPED, need - short if damage is None else 1 << 30)
    _same(got)
    if damage is None and not short:
        cells = got[0][0]
        n = len(items)
        assert cells[1].shape == (n, 9) and cells[2].shape == (n, 9)
        assert cells[1][:, 3].tolist() == [(1 - i) & 0xFFFFFFFF if f[1] else 0 for i, f in enumerate(items)]
        # Ref rows: the Items' refs, then the Pairs' a refs, then their b refs (field by field)
        with_a = [i for i, f in enumerate(items) if f[2]]
        with_b = [i for i, f in enumerate(items) if f[3]]
        assert cells[2][:, 5].tolist() == [len(with_a) + with_a.index(i) if i in with_a else -1 for i in range(n)]
        assert cells[2][:, 7].tolist() == [2 * len(with_a) + with_b.index(i) if i in with_b else -1 for i in range(n)]


def _item_tables(buf: bytes) -> list[int]:
    """Where _shaped_buffer's Item tables are (the root's first vector)."""
    def u32(at: int) -> int:
        return int.from_bytes(buf[at:at + 4], "little")
    root = u32(0)
    vtable = root - int.from_bytes(buf[root:root + 4], "little", signed=True)
    field = root + int.from_bytes(buf[vtable + 4:vtable + 6], "little")
    vec = field + u32(field)
    return [vec + 4 + 4 * k + u32(vec + 4 + 4 * k) for k in range(u32(vec))]


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.tuples(*[st.booleans()] * 5), min_size=1, max_size=20), data=st.data())
def test_fields_past_their_table_in_rows_walked_row_by_row_fail_alike(items: list[tuple[bool, ...]],
                                                                     data: st.DataObject) -> None:
    """An Item's vtable (shared by other rows) declaring its table smaller,
    so that fields run past it: the C walk, which leaves rows of such a
    vtable to the walk field by field, fails with the same error as the
    numpy walk (the same row, field and offset), or both pass (no field
    left past the table)."""
    buf = bytearray(_shaped_buffer(items))
    tables = _item_tables(bytes(buf))
    pos = tables[data.draw(st.integers(0, len(tables) - 1))]
    vtable = pos - int.from_bytes(buf[pos:pos + 4], "little", signed=True)
    size = int.from_bytes(buf[vtable + 2:vtable + 4], "little")
    buf[vtable + 2:vtable + 4] = data.draw(st.integers(0, size)).to_bytes(2, "little")
    got = _outcome(bytes(buf), _SHAPED)
    _same(got)
    if len(got) == 2 and isinstance(got[0], FormatError):  # the same row and offset (one path names the field)
        assert str(got[0]).split(":")[1].split(".")[0] == str(got[1]).split(":")[1].split(".")[0]
        assert str(got[0]).split(": offset")[1] == str(got[1]).split(": offset")[1]
