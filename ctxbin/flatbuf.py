"""A bounds-checked FlatBuffers reader for untrusted files.

The ``flatbuffers`` package's generated readers trust the buffer (a hostile
offset gives ``IndexError``/``struct.error`` or reads anywhere). This reader
checks every offset, length and vtable against the buffer and raises
:class:`~ctxbin.errors.FormatError` naming the file, the object and the offset.
Writing uses :mod:`ctxbin.flatbuild`.

Layout facts (FlatBuffers wire format): the root is a u32 offset at byte 0,
an optional 4-byte file identifier at bytes 4-8; a table starts with an i32
pointing back (``table - value``) to its vtable, which holds u16 vtable size,
u16 table size, then one u16 field offset per field (0 = absent); references
to tables, vectors and strings are u32 offsets relative to where they are
stored; vectors and strings start with a u32 element count.

References may point many times at the same bytes: a vector of 20,000 offsets
to one table whose own vector holds 20,000 offsets to another gives 400 million
tables from 160 KB. Every buffer therefore carries a work budget proportional
to its size; each table visit and each vector decoded is charged against it,
and a buffer that asks for more work than its size can justify is rejected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field as dataclass_field
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from .errors import FormatError

__all__ = [
    "FlatBuffer", "Table", "Rows", "WORK_PER_BYTE", "WORK_FLOOR", "TABLE_WORK",
    "Field", "TableType", "Schema", "Walk", "walk", "SCALAR", "STRING", "VECTOR", "STRINGS", "TABLE", "TABLES",
]

T = TypeVar("T")

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
#: default budget = WORK_PER_BYTE x buffer size + WORK_FLOOR work units (~bytes
#: decoded); reading real DLC, QNN and .ctxbin metadata whole costs 0.7-1.6 x its size
WORK_PER_BYTE = 16
WORK_FLOOR = 1 << 16
#: one table visit; a table takes 4 bytes or more (real ones 16+), so honest
#: readers may visit every table more than once, while one table referenced
#: N times costs N x TABLE_WORK
TABLE_WORK = 32
#: a table's signed vtable offset leading outside the buffer (reported at the table)
_VTABLE_OUTSIDE = "vtable offset {0} leads outside the buffer"
_SCALARS = {
    "b": struct.Struct("<b"), "B": _U8, "h": struct.Struct("<h"), "H": _U16,
    "i": _I32, "I": _U32, "q": struct.Struct("<q"), "Q": struct.Struct("<Q"),
    "f": struct.Struct("<f"), "d": struct.Struct("<d"), "?": struct.Struct("<?"),
}


class FlatBuffer:
    """A flatbuffer held in ``buf[start:start+size]``; ``base`` is its file offset.

    ``budget`` is the decoding work this buffer may cost (default
    ``WORK_PER_BYTE * size + WORK_FLOOR``): table visits cost ``TABLE_WORK``,
    strings and vectors their byte length; :meth:`charge` lets a reader add
    work of its own (copies it makes per reference).
    """

    __slots__ = ("buf", "start", "size", "path", "what", "base", "budget", "_views")

    def __init__(
        self,
        buf: Any,
        *,
        start: int = 0,
        size: int | None = None,
        path: object = None,
        what: str = "flatbuffer",
        base: int = 0,
        budget: int | None = None,
    ) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        total = len(self.buf)
        self.size = total - start if size is None else size
        if start < 0 or self.size < 0 or start + self.size > total:
            raise FormatError("flatbuffer lies outside the file", path=path, obj=what, offset=base)
        self.start = start
        self.path = path
        self.what = what
        self.base = base
        self.budget = WORK_PER_BYTE * self.size + WORK_FLOOR if budget is None else budget
        self._views: dict[str, np.ndarray] = {}

    def charge(self, work: int, obj: str | None, at: int) -> None:
        """Spend ``work`` units of the budget on the object at ``at``."""
        self.budget -= work
        if self.budget < 0:
            raise self.error(
                f"more decoding work than the {self.size}-byte buffer can justify: references are "
                "shared beyond what its size allows (hostile file?)", obj, at,
            )

    def error(self, msg: str, obj: str | None, at: int) -> FormatError:
        return FormatError(msg, path=self.path, obj=obj or self.what, offset=self.base + at)

    def check(self, at: int, n: int, obj: str | None = None) -> None:
        if at < 0 or n < 0 or at + n > self.size:
            raise self.error(f"{n} bytes at {at} run past the end ({self.size} bytes)", obj, at)

    def scalar(self, fmt: str, at: int, obj: str | None = None) -> Any:
        s = _SCALARS[fmt]
        self.check(at, s.size, obj)
        return s.unpack_from(self.buf, self.start + at)[0]

    def check_many(self, at: np.ndarray, n: np.ndarray | int, obj: str) -> None:
        """:meth:`check` for many spans at once; the error names the first bad one as ``obj[i]``."""
        if not at.size:
            return
        if isinstance(n, np.ndarray):
            if at.min() >= 0 and n.min() >= 0 and (at + n).max() <= self.size:
                return
            bad = (at < 0) | (n < 0) | (at + n > self.size)
        else:
            if at.min() >= 0 and int(at.max()) + n <= self.size:
                return
            bad = (at < 0) | (at + n > self.size)
        i = int(np.argmax(bad))
        self.check(int(at[i]), int(n[i]) if isinstance(n, np.ndarray) else n, f"{obj}[{i}]")

    def column(self, fmt: str, at: np.ndarray, obj: str) -> np.ndarray:
        """The scalars of format ``fmt`` at every position of ``at`` (bounds-checked, one gather)."""
        width = _SCALARS[fmt].size
        self.check_many(at, width, obj)
        view = self._views.get(fmt)
        if view is None:
            # every byte offset, aligned or not, addresses one element of this strided view
            view = self._views[fmt] = np.ndarray(
                (max(self.size - width + 1, 0),), np.dtype(fmt).newbyteorder("<"), self.buf, self.start, (1,)
            )
        return view[at]

    def identifier(self) -> bytes:
        self.check(0, 8)
        return bytes(self.buf[self.start + 4 : self.start + 8])

    def root(self, identifier: bytes | None = None, obj: str = "root") -> "Table":
        if self.size < 8:
            raise self.error(f"{self.size} bytes is too short for a flatbuffer", obj, 0)
        if identifier is not None and self.identifier() != identifier:
            raise self.error(
                f"file identifier {self.identifier()!r}, expected {identifier!r}", obj, 4
            )
        return self.table_at(self.scalar("I", 0, obj), obj)

    def table_at(self, pos: int, obj: str) -> "Table":
        self.check(pos, 4, obj)
        self.charge(TABLE_WORK, obj, pos)
        soff = self.scalar("i", pos, obj)
        vt = pos - soff
        if vt < 0 or vt + 4 > self.size:
            raise self.error(_VTABLE_OUTSIDE.format(soff), obj, pos)
        vt_size = self.scalar("H", vt, obj)
        tbl_size = self.scalar("H", vt + 2, obj)
        if vt_size < 4 or vt_size % 2:
            raise self.error(f"bad vtable size {vt_size}", obj, vt)
        self.check(vt, vt_size, obj)
        self.check(pos, max(tbl_size, 4), obj)
        return Table(self, pos, vt, vt_size, tbl_size, obj)

    def text(self, pos: int, obj: str) -> str:
        """The string stored at ``pos``: u32 length, UTF-8 bytes, NUL terminator."""
        n = self.scalar("I", pos, obj)
        self.check(pos + 4, n + 1, obj)
        self.charge(4 + n, obj, pos)
        s = self.start + pos + 4
        if self.buf[s + n] != 0:
            raise self.error(f"{n}-byte string is not NUL-terminated", obj, pos + 4 + n)
        try:
            return bytes(self.buf[s : s + n]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(f"string is not valid UTF-8 ({e.reason})", obj, pos + 4 + e.start) from None

    def deref(self, at: int, obj: str) -> int:
        """Follow the u32 offset stored at ``at``."""
        return at + self.scalar("I", at, obj)


class Table:
    """One flatbuffer table; fields are addressed by their index in the schema."""

    __slots__ = ("fb", "pos", "vt", "vt_size", "tbl_size", "obj")

    def __init__(self, fb: FlatBuffer, pos: int, vt: int, vt_size: int, tbl_size: int, obj: str):
        self.fb = fb
        self.pos = pos
        self.vt = vt
        self.vt_size = vt_size
        self.tbl_size = tbl_size
        self.obj = obj

    def _field(self, index: int, width: int) -> int | None:
        vo = 4 + 2 * index
        if vo + 2 > self.vt_size:
            return None
        off = self.fb.scalar("H", self.vt + vo, self.obj)
        if off == 0:
            return None
        if off + width > self.tbl_size:
            raise self.fb.error(f"field {index} at {off} lies outside its {self.tbl_size}-byte table", self.obj, self.pos)
        return self.pos + off

    def has(self, index: int) -> bool:
        return self._field(index, 0) is not None

    def scalar(self, index: int, fmt: str, default: Any = 0) -> Any:
        at = self._field(index, _SCALARS[fmt].size)
        return default if at is None else self.fb.scalar(fmt, at, self.obj)

    def struct(self, index: int, size: int) -> int | None:
        """Position of an inline struct field of ``size`` bytes (bounds-checked), or None."""
        return self._field(index, size)

    def table(self, index: int, obj: str | None = None) -> "Table | None":
        at = self._field(index, 4)
        if at is None:
            return None
        name = obj or f"{self.obj}.{index}"
        return self.fb.table_at(self.fb.deref(at, name), name)

    def _vector(self, index: int, elem: int, obj: str, *, whole: bool = True) -> tuple[int, int] | None:
        """(position, count) of a vector field; ``whole`` charges its bytes to the
        budget (the caller decodes or copies them), else only its count word."""
        at = self._field(index, 4)
        if at is None:
            return None
        vec = self.fb.deref(at, obj)
        n = self.fb.scalar("I", vec, obj)
        # never trust the count: the elements must fit in the buffer
        self.fb.check(vec + 4, n * elem, obj)
        self.fb.charge(4 + n * elem if whole else 4, obj, vec)
        return vec + 4, n

    def string(self, index: int, default: str = "", obj: str | None = None) -> str:
        at = self._field(index, 4)
        if at is None:
            return default
        name = obj or self.obj
        return self.fb.text(self.fb.deref(at, name), name)

    def bytes_(self, index: int, obj: str | None = None) -> memoryview | None:
        """A string or ``[ubyte]`` field as a zero-copy view."""
        v = self._vector(index, 1, obj or self.obj)
        if v is None:
            return None
        start, n = v
        s = self.fb.start + start
        return memoryview(self.fb.buf)[s : s + n]

    def vector_span(self, index: int, elem: int, obj: str | None = None) -> tuple[int, int] | None:
        """(absolute position in the buffer, count) of a vector of fixed-size elements,
        for zero-copy use: only its count is charged to the budget."""
        v = self._vector(index, elem, obj or self.obj, whole=False)
        if v is None:
            return None
        return self.fb.start + v[0], v[1]

    def array(self, index: int, dtype: str, obj: str | None = None) -> np.ndarray:
        """A scalar vector as a read-only numpy view (empty if absent)."""
        dt = np.dtype(dtype)
        v = self._vector(index, dt.itemsize, obj or self.obj)
        if v is None:
            return np.empty(0, dt)
        start, n = v
        a = np.frombuffer(self.fb.buf, dt, n, self.fb.start + start)
        return a

    def length(self, index: int) -> int:
        v = self._vector(index, 4, self.obj, whole=False)
        return 0 if v is None else v[1]

    def tables(self, index: int, obj: str | None = None) -> list["Table"]:
        name = obj or f"{self.obj}.{index}"
        v = self._vector(index, 4, name)
        if v is None:
            return []
        start, n = v
        fb = self.fb
        return [fb.table_at(fb.deref(start + 4 * i, f"{name}[{i}]"), f"{name}[{i}]") for i in range(n)]

    def strings(self, index: int, obj: str | None = None) -> list[str]:
        name = obj or f"{self.obj}.{index}"
        v = self._vector(index, 4, name)
        if v is None:
            return []
        start, n = v
        fb = self.fb
        return [fb.text(fb.deref(start + 4 * i, f"{name}[{i}]"), f"{name}[{i}]") for i in range(n)]

    def map(self, index: int, fn: Callable[["Table"], T], obj: str | None = None) -> list[T]:
        return [fn(t) for t in self.tables(index, obj)]


class Rows:
    """Many tables of one type (a vector of tables, or any positions), decoded
    a column at a time with numpy: the same checks as :class:`Table` on every
    row at once, the same budget charges (unless ``charged``: the caller
    charged them already), errors naming ``obj[row]``."""

    __slots__ = ("fb", "pos", "vt", "vt_size", "tbl_size", "obj")

    def __init__(self, fb: FlatBuffer, pos: np.ndarray, obj: str, *, charged: bool = False) -> None:
        self.fb = fb
        self.obj = obj
        self.pos = pos = pos.astype(np.int64)
        if not pos.size:
            self.vt = self.vt_size = self.tbl_size = pos
            return
        if not charged:
            fb.charge(TABLE_WORK * pos.size, obj, int(pos[0]))
        soff = fb.column("i", pos, obj).astype(np.int64)
        self.vt = vt = pos - soff
        outside = (vt < 0) | (vt + 4 > fb.size)
        if outside.any():
            i = int(np.argmax(outside))
            raise fb.error(_VTABLE_OUTSIDE.format(int(soff[i])), f"{obj}[{i}]", int(pos[i]))
        self.vt_size = vs = fb.column("H", vt, obj).astype(np.int64)
        self.tbl_size = ts = fb.column("H", vt + 2, obj).astype(np.int64)
        bad = (vs < 4) | (vs % 2 == 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise fb.error(f"bad vtable size {int(vs[i])}", f"{obj}[{i}]", int(vt[i]))
        fb.check_many(vt, vs, obj)
        fb.check_many(pos, np.maximum(ts, 4), obj)

    def __len__(self) -> int:
        return int(self.pos.size)

    def field(self, index: int, width: int) -> np.ndarray:
        """Where field ``index`` is stored in every row; -1 where it is absent."""
        vo = 4 + 2 * index
        present = vo + 2 <= self.vt_size
        off = np.zeros(self.pos.size, np.int64)
        if present.any():
            off[present] = self.fb.column("H", self.vt[present] + vo, self.obj)
        present = off != 0
        bad = present & (off + width > self.tbl_size)
        if bad.any():
            i = int(np.argmax(bad))
            raise self.fb.error(f"field {index} at {int(off[i])} lies outside its {int(self.tbl_size[i])}-byte table",
                                f"{self.obj}[{i}]", int(self.pos[i]))
        return np.where(present, self.pos + off, -1)

    def refs(self, index: int) -> np.ndarray:
        """Where the table/vector/string each row's field ``index`` refers to starts; -1 where absent."""
        at = self.field(index, 4)
        present = at >= 0
        out = at.copy()
        out[present] += self.fb.column("I", at[present], self.obj)
        return out


# --------------------------------------------------------------------------- schema walk
#: field kinds of a :class:`Schema` (the values of the C core's CTXBIN_FB_*)
SCALAR, STRING, VECTOR, STRINGS, TABLE, TABLES = range(6)
_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
_FIELD_DTYPE = np.dtype([("index", "<u2"), ("kind", "u1"), ("width", "u1"), ("child", "<u2")])
_ERRORS = {  # CTXBIN_FB_* error code -> message (value, value2)
    1: "{0} bytes at {at} run past the end ({size} bytes)",
    2: "bad vtable size {0}",
    3: "field {field} at {0} lies outside its {1}-byte table",
    4: "{0}-byte string is not NUL-terminated",
    5: "more decoding work than the {size}-byte buffer can justify: references are shared beyond what its "
       "size allows (hostile file?)",
    6: _VTABLE_OUTSIDE,
}


@dataclass(frozen=True)
class Field:
    """One field to decode from every table of a type: ``kind`` is one of
    SCALAR, STRING, VECTOR, STRINGS, TABLE, TABLES; ``fmt`` the struct format
    of a SCALAR or of a VECTOR's items; ``child`` the table type of TABLE(S)."""

    name: str
    index: int
    kind: int
    fmt: str = ""
    child: str = ""


@dataclass(frozen=True)
class TableType:
    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Schema:
    """Table types to walk, root first; a type's children come after it (so the
    walk's depth is bounded by the number of types)."""

    types: tuple[TableType, ...]
    index: dict[str, int] = dataclass_field(init=False, repr=False, compare=False)
    fields: dict[tuple[str, str], int] = dataclass_field(init=False, repr=False, compare=False)
    native: tuple[np.ndarray, np.ndarray] = dataclass_field(init=False, repr=False, compare=False)
    widths: tuple[int, ...] = dataclass_field(init=False, repr=False, compare=False)  # cells per row, per type

    def __post_init__(self) -> None:
        index = {t.name: i for i, t in enumerate(self.types)}
        rows, starts = [], [0]
        for t, tt in enumerate(self.types):
            for f in tt.fields:
                child = index.get(f.child, -1) if f.kind in (TABLE, TABLES) else 0
                if f.kind in (TABLE, TABLES) and child <= t:
                    raise ValueError(f"{tt.name}.{f.name}: child type {f.child!r} must follow {tt.name!r}")
                width = struct.calcsize("<" + f.fmt) if f.kind in (SCALAR, VECTOR) else 4
                rows.append((f.index, f.kind, width, child))
            starts.append(len(rows))
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "fields", {(tt.name, f.name): i for tt in self.types for i, f in enumerate(tt.fields)})
        object.__setattr__(self, "native", (np.array(rows, _FIELD_DTYPE), np.array(starts, np.uint32)))
        object.__setattr__(self, "widths", tuple(1 + 2 * len(tt.fields) for tt in self.types))


#: up to this many strings are decoded one by one from the buffer (no pool offsets needed)
_FEW_STRINGS = 4


class Walk:
    """Every table of a flatbuffer reachable along a :class:`Schema`, checked
    (:func:`walk`) and held column-wise. Rows of a type are numbered in walk
    order; per field, :meth:`column` gives the C core's (a, b) columns. Strings
    are checked (bounds, NUL) by the walk and decoded from UTF-8 when asked for;
    ``pool`` holds their bytes, each followed by a NUL (the C core's own buffer, not a copy)."""

    __slots__ = ("fb", "schema", "cells", "spans", "pool", "_offsets")

    def __init__(self, fb: FlatBuffer, schema: Schema, cells: Sequence[np.ndarray], spans: np.ndarray,
                 pool: Any) -> None:
        self.fb, self.schema, self.cells, self.spans, self.pool = fb, schema, cells, spans, pool
        self._offsets: np.ndarray | None = None

    def count(self, type_: str) -> int:
        return self.cells[self.schema.index[type_]].shape[0]

    def pos(self, type_: str) -> np.ndarray:
        """Where each row's table starts in the flatbuffer."""
        return self.cells[self.schema.index[type_]][:, 0]

    def column(self, type_: str, field: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.schema.fields[(type_, field)]
        c = self.cells[self.schema.index[type_]]
        return c[:, 1 + 2 * i], c[:, 2 + 2 * i]

    def scalars(self, type_: str, field: str, default: Any = 0) -> np.ndarray:
        """A SCALAR field of every row, in its own dtype; ``default`` where absent."""
        f = self.schema.types[self.schema.index[type_]].fields[self.schema.fields[(type_, field)]]
        raw, present = self.column(type_, field)
        width = struct.calcsize("<" + f.fmt)
        value = raw.astype(np.dtype(_UNSIGNED[width])).view(np.dtype(f.fmt))
        if not default:  # absent scalars are walked as 0 already
            return value
        return np.where(present.astype(bool), value, np.array(default, value.dtype))

    def texts(self, type_: str, field: str, rows: np.ndarray | None = None, default: str = "") -> list[str]:
        """A STRING field of every row (or of ``rows``); ``default`` where absent."""
        idx, _ = self.column(type_, field)
        if rows is not None:
            idx = idx[rows]
        if not idx.size:
            return []
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if lo >= 0 and hi - lo == idx.size and (idx.size < 3 or np.array_equal(idx, np.arange(lo, hi))):
            return self.strings(lo, hi)  # every row's string, in walk order: the common case
        present = idx[idx >= 0]
        if not present.size:
            return [default] * idx.size
        lo = int(present.min())
        got = self.strings(lo, int(present.max()) + 1)
        return [got[i - lo] if i >= 0 else default for i in idx.tolist()]

    def check_utf8(self) -> None:
        """Raise unless every string of the walk is valid UTF-8 (one decode of the pool)."""
        try:
            str(self.pool, "utf-8")
        except UnicodeDecodeError:
            self.strings(0, self.spans.shape[0])  # names the bad string

    def strings(self, lo: int, hi: int) -> list[str]:
        """Strings ``lo`` to ``hi - 1`` of the walk (the strings of one STRING or
        STRINGS field are consecutive): one decode, split on the NULs, unless a
        string holds a NUL or is not UTF-8 (the bad one is named)."""
        if hi <= lo:
            return []
        if hi - lo > _FEW_STRINGS:  # one decode of their part of the pool
            if self._offsets is None:
                self._offsets = np.concatenate([[0], np.cumsum(self.spans[:, 1] + 1)])
            chunk = self.pool[int(self._offsets[lo]) : int(self._offsets[hi])]
            if chunk.count(0) == hi - lo:
                try:
                    return chunk.decode("utf-8").split("\0")[:-1]
                except UnicodeDecodeError:
                    pass
        fb, out = self.fb, []
        for at, length in self.spans[lo:hi].tolist():
            s = fb.start + at
            try:
                out.append(bytes(fb.buf[s : s + length]).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise fb.error(f"string is not valid UTF-8 ({e.reason})", f"{fb.what}: string", at + e.start) from None
        return out


def walk(fb: FlatBuffer, schema: Schema) -> Walk:
    """Check and decode every table of ``fb`` reachable from its root along
    ``schema`` (the C core when available, else numpy: same rows, strings and
    budget; :class:`FormatError` naming ``type[row]`` and the offset)."""
    from .hashing import native_core

    core = native_core()
    if core is None:
        return Walk(fb, schema, *_walk_numpy(fb, schema))
    return _walk_native(core, fb, schema).walk()


def _walk_error(fb: FlatBuffer, schema: Schema, code: int, type_: int, row: int, field: int, at: int,
                value: int, value2: int) -> FormatError:
    tt = schema.types[type_]
    obj = f"{fb.what}: {tt.name}[{row}]" + (f".{tt.fields[field].name}" if field >= 0 else "")
    f = tt.fields[field].index if field >= 0 else -1
    return fb.error(_ERRORS[code].format(value, value2, at=at, size=fb.size, field=f), obj, at)


def _walk_native(core: Any, fb: FlatBuffer, schema: Schema) -> NativeWalk:
    ffi, lib = core.ffi, core.lib
    fields, starts = schema.native
    out = ffi.new("ctxbin_fb_result **")
    err = ffi.new("ctxbin_fb_error *")
    budget = ffi.new("int64_t *", fb.budget)
    view = memoryview(fb.buf)[fb.start : fb.start + fb.size]
    with ffi.from_buffer(view) as buf:
        st = lib.ctxbin_fb_walk(buf, fb.size, ffi.from_buffer("ctxbin_fb_field[]", fields),
                                ffi.from_buffer("uint32_t[]", starts), len(schema.types), budget, out, err)
    fb.budget = budget[0]
    if st == lib.CTXBIN_ERANGE and err.code:
        raise _walk_error(fb, schema, err.code, err.type, err.row, err.field, err.at, err.value, err.value2)
    if st != lib.CTXBIN_OK:
        from .hashing import check_status

        check_status(st)
    res = out[0]
    try:
        nrows = ffi.new("uint64_t[]", len(schema.types))
        sizes = ffi.new("uint64_t[2]")
        lib.ctxbin_fb_sizes(res, nrows, sizes, sizes + 1)
        cells, spans, pool = ffi.new("int64_t **"), ffi.new("int64_t **"), ffi.new("uint8_t **")
        lib.ctxbin_fb_detach(res, cells, spans, pool)
    finally:
        lib.ctxbin_fb_free(res)
    return NativeWalk(core, fb, schema, cells[0], ffi.unpack(nrows, len(schema.types)), spans[0], sizes[0], pool[0],
                      sizes[1])


class NativeWalk:
    """The arrays a C core walk handed over (``cells``: every type's, one
    after the other; ``nrows``: rows per type; ``spans``; ``pool``), owned
    from now on: freed when the last thing made on them goes (no copy).
    :meth:`walk` makes the :class:`Walk` on first call."""

    __slots__ = ("fb", "schema", "nrows", "_ffi", "_cells", "_spans", "_nstr", "_pool", "_npool", "_walk")

    def __init__(self, core: Any, fb: FlatBuffer, schema: Schema, cells: Any, nrows: Sequence[int], spans: Any,
                 nstr: int, pool: Any, npool: int) -> None:
        ffi, free = core.ffi, core.lib.ctxbin_free
        self.fb, self.schema, self._ffi = fb, schema, ffi
        self.nrows = nrows
        self._cells, self._spans, self._pool = ffi.gc(cells, free), ffi.gc(spans, free), ffi.gc(pool, free)
        self._nstr, self._npool = nstr, npool
        self._walk: Walk | None = None

    def walk(self) -> Walk:
        if self._walk is None:
            ffi = self._ffi
            shapes = list(zip(self.nrows, self.schema.widths))
            block = np.frombuffer(ffi.buffer(self._cells, 8 * sum(n * w for n, w in shapes)), np.int64)
            spans = np.frombuffer(ffi.buffer(self._spans, self._nstr * 16), np.int64).reshape(-1, 2)
            self._walk = Walk(self.fb, self.schema, _NativeCells(block, shapes), spans, ffi.buffer(self._pool, self._npool))
        return self._walk


class _NativeCells(Sequence[np.ndarray]):
    """The cells of a C core walk per type: views of its one block (rows x
    width ``shapes``, one type after the other), made on first use (most
    types are never looked at from Python at open)."""

    __slots__ = ("_block", "_at", "_shapes", "_arrays")

    def __init__(self, block: np.ndarray, shapes: list[tuple[int, int]]) -> None:
        self._block, self._shapes, self._at = block, shapes, []
        at = 0
        for n, w in shapes:
            self._at.append(at)
            at += n * w
        self._arrays: list[np.ndarray | None] = [None] * len(shapes)

    def __getitem__(self, t: int) -> np.ndarray:  # type: ignore[override]  # no slices
        a = self._arrays[t]
        if a is None:
            n, w = self._shapes[t]
            a = self._arrays[t] = self._block[self._at[t] : self._at[t] + n * w].reshape(n, w)
        return a

    def __len__(self) -> int:
        return len(self._shapes)


def _walk_numpy(fb: FlatBuffer, schema: Schema) -> tuple[list[np.ndarray], np.ndarray, bytes]:
    """:func:`walk` with numpy: type by type, field by field, all rows at once
    (the order the C core walks in, so rows and strings are numbered alike)."""
    pending: list[list[np.ndarray]] = [[] for _ in schema.types]
    # every table is charged where its parent names it (the root here), before
    # its position is kept: what is kept for later stays within the budget
    fb.check(0, 4, f"{fb.what}: {schema.types[0].name}[0]")
    fb.charge(TABLE_WORK, f"{fb.what}: {schema.types[0].name}[0]", 0)
    pending[0].append(np.array([fb.scalar("I", 0)], np.int64))
    string_at: list[np.ndarray] = []
    nstr = 0

    def add_strings(at: np.ndarray, obj: str) -> np.ndarray:
        """Check the strings at ``at``; their indices in the walk's string list."""
        nonlocal nstr
        if not at.size:
            return np.empty(0, np.int64)
        n = fb.column("I", at, obj).astype(np.int64)
        fb.check_many(at + 4, n + 1, obj)
        fb.charge(int(n.sum()) + 4 * at.size, obj, int(at[0]))
        nul = fb.column("B", at + 4 + n, obj)
        if nul.any():
            i = int(np.flatnonzero(nul)[0])
            raise fb.error(f"{int(n[i])}-byte string is not NUL-terminated", obj, int(at[i] + 4 + n[i]))
        string_at.append(np.stack([at + 4, n], axis=1))
        nstr += at.size
        return np.arange(nstr - at.size, nstr, dtype=np.int64)

    def vectors(rows: Rows, index: int, width: int, obj: str) -> tuple[np.ndarray, np.ndarray]:
        vec = rows.refs(index)
        present = vec >= 0
        count = np.zeros(vec.size, np.int64)
        count[present] = fb.column("I", vec[present], obj)
        fb.check_many(np.where(present, vec + 4, 0), count * width, obj)
        fb.charge(int(4 * present.sum() + width * count.sum()), obj, int(vec[present][0]) if present.any() else 0)
        return np.where(present, vec + 4, -1), count

    cells = []
    for t, tt in enumerate(schema.types):
        pos = np.concatenate(pending[t]) if pending[t] else np.empty(0, np.int64)
        rows = Rows(fb, pos, f"{fb.what}: {tt.name}", charged=True)
        out = np.zeros((pos.size, 1 + 2 * len(tt.fields)), np.int64)
        out[:, 0] = pos
        for i, f in enumerate(tt.fields):
            a, b = out[:, 1 + 2 * i], out[:, 2 + 2 * i]
            obj = f"{fb.what}: {tt.name}.{f.name}"
            if not pos.size:
                continue
            if f.kind == SCALAR:
                width = struct.calcsize("<" + f.fmt)
                at = rows.field(f.index, width)
                present = at >= 0
                a[present] = fb.column(_UNSIGNED[width], at[present], obj).astype(np.uint64).view(np.int64)
                b[:] = present
            elif f.kind in (STRING, TABLE):
                at = rows.refs(f.index)
                present = at >= 0
                a[:] = -1
                if f.kind == STRING:
                    a[present] = add_strings(at[present], obj)
                else:
                    c = schema.index[f.child]
                    base = sum(p.size for p in pending[c])
                    fb.charge(TABLE_WORK * int(present.sum()), obj, int(at[present][0]) if present.any() else 0)
                    a[present] = base + np.arange(int(present.sum()), dtype=np.int64)
                    pending[c].append(at[present])
            else:  # VECTOR, STRINGS, TABLES
                width = struct.calcsize("<" + f.fmt) if f.kind == VECTOR else 4
                start, count = vectors(rows, f.index, width, obj)
                b[:] = count
                if f.kind == VECTOR:
                    a[:] = start
                    continue
                ends = np.cumsum(count)
                total = int(ends[-1])
                if f.kind == TABLES:
                    fb.charge(TABLE_WORK * total, obj, int(start.max()))
                elem = (np.arange(total, dtype=np.int64) - np.repeat(ends - count, count)) * 4 + np.repeat(start, count)
                target = elem + fb.column("I", elem, obj) if total else elem
                if f.kind == STRINGS:
                    a[:] = np.where(start >= 0, nstr + ends - count, -1)
                    add_strings(target, obj)
                else:
                    c = schema.index[f.child]
                    a[:] = np.where(start >= 0, sum(p.size for p in pending[c]) + ends - count, -1)
                    pending[c].append(target)
        cells.append(out)
    spans = np.concatenate(string_at) if string_at else np.zeros((0, 2), np.int64)
    return cells, spans, _gather(fb, spans)


def _gather(fb: FlatBuffer, spans: np.ndarray) -> bytes:
    """Every string's bytes followed by its NUL, in order (what the C core's pool holds)."""
    if not spans.size:
        return b""
    lens = spans[:, 1] + 1
    ends = np.cumsum(lens)
    idx = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(spans[:, 0] - (ends - lens), lens)
    return fb.column("B", idx, fb.what).tobytes()
