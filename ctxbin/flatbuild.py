"""A fast FlatBuffers builder for ctxbin's writers (DLC ``model`` /
``model.params``, ``.ctxbin`` metadata).

It lays objects out exactly as the ``flatbuffers`` package's ``Builder`` does
for the same sequence of calls (same padding, same field order, same vtable
sharing), so the output bytes are identical, but it works a whole object at a
time: a table is one ``struct`` pack whose format is worked out once per
(:class:`Layout`, fields present, alignment of the write position) and
reused, strings and vectors are one ``bytes`` each, and the buffer is a list
of chunks joined once at the end.

Wire format facts used (FlatBuffers): the buffer is built back to front;
every scalar is aligned to its size, counted from the end of the buffer; a
table is an i32 (``table - vtable``) followed by its fields, its vtable (u16
vtable size, u16 table size, one u16 offset per slot up to the last present
one) is written just before it unless an identical one was written already;
references are u32 offsets from where they are stored; strings and vectors
are a u32 count, the elements, and (strings) a 0 byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, repeat
from operator import is_not, itemgetter
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

__all__ = ["Builder", "Layout", "REF"]

#: field format of a reference (u32 offset to a table, string or vector)
REF = "O"

_U32 = struct.Struct("<I")
_ZEROS = bytes(32)  # more than any padding: alignments go up to 16
# integer element types (as dtypes or scalar types) packed with struct
_FORMATS: dict[Any, str] = {k: c for c in "bBhHiIqQ" for k in (np.dtype(f"<{c}"), np.dtype(f"<{c}").type)}
_SIZES = {"?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4, "d": 8, REF: 4}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a cache key
class Layout:
    """One kind of table: its fields as ``(slot, format)`` in the order they
    are written (``flatbuffers.Builder`` order: the first lies last in
    memory); ``format`` is a :mod:`struct` character or :data:`REF`."""

    fields: tuple[tuple[int, str], ...]
    bits: tuple[int, ...] = field(init=False, repr=False)

    def __init__(self, *fields: tuple[int, str]) -> None:
        for slot, fmt in fields:
            if fmt not in _SIZES or not 0 <= slot < 0xFFFF:
                raise ValueError(f"bad table field ({slot}, {fmt!r})")
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "bits", tuple(1 << i for i in range(len(fields))))


class _Plan(NamedTuple):
    """How one table is laid out for one set of present fields at one alignment."""

    pack: Any  # struct.Struct.pack of the table (i32 vtable offset, fields, padding), memory order
    pick: Callable[[Sequence[Any]], tuple[Any, ...]]  # the present values, in memory order
    refs: tuple[tuple[int, int], ...]  # (position in the packed values, field end relative to the start)
    size: int  # bytes of the table with its padding
    vtable: bytes
    align: int


class Builder:
    """Builds one flatbuffer back to front; offsets returned are what
    ``flatbuffers.Builder`` returns (distance from the buffer's end).

    ``force_defaults`` writes fields equal to 0 too (``ForceDefaults(True)``);
    otherwise 0, ``False`` and ``0.0`` are left out, as with a default of 0.
    ``None`` always leaves a field out.
    """

    __slots__ = ("_parts", "_off", "_minalign", "_vtables", "_plans", "_force")

    def __init__(self, *, force_defaults: bool = False) -> None:
        self._parts: list[bytes] = []
        self._off = 0
        self._minalign = 1
        self._vtables: dict[bytes, int] = {}
        self._plans: dict[tuple[Layout, int, int], _Plan] = {}
        self._force = force_defaults

    @property
    def offset(self) -> int:
        """Bytes written so far."""
        return self._off

    def string(self, s: str | bytes) -> int:
        """A string (UTF-8 encoded if ``s`` is a ``str``)."""
        x = s.encode() if isinstance(s, str) else bytes(s)
        n = len(x)
        pad = -(self._off + n + 1) & 3
        self._parts.append(_U32.pack(n) + x + _ZEROS[: 1 + pad])
        self._off += 5 + n + pad
        if self._minalign < 4:
            self._minalign = 4
        return self._off

    def strings(self, items: Iterable[str]) -> list[int]:
        """:meth:`string` for each of ``items``, in order."""
        return [self.string(s) for s in items]

    def vector(self, values: np.ndarray | Sequence[Any], dtype: Any = None) -> int:
        """A vector of scalars (1-D, little-endian, numpy's alignment of ``dtype``)."""
        fmt = _FORMATS.get(dtype) if isinstance(values, (list, tuple)) else None
        if fmt is not None:  # short lists (shapes): one struct call, no array
            try:
                data = struct.pack(f"<{len(values)}{fmt}", *values)
            except struct.error as e:
                raise ValueError(f"{values} do not fit a vector of {np.dtype(dtype)}: {e}") from None
            return self._vector(data, len(values), _SIZES[fmt])
        a = np.asarray(values, dtype)
        if a.ndim != 1 or a.dtype.kind not in "biuf":
            raise ValueError(f"a flatbuffer vector holds 1-D numbers, not {a.dtype} of shape {a.shape}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        return self._vector(a.tobytes(), a.size, a.dtype.alignment)

    def byte_vector(self, data: bytes | bytearray | memoryview) -> int:
        """A vector of bytes."""
        x = bytes(data)
        return self._vector(x, len(x), 1)

    def _vector(self, data: bytes, count: int, align: int) -> int:
        n = len(data)
        off = self._off
        off += -(off + n) & 3
        off += -(off + n) & (align - 1)
        self._parts.append(_U32.pack(count) + data + _ZEROS[: off - self._off])
        self._off = off + n + 4
        self._minalign = max(self._minalign, 4, align)
        return self._off

    def refs(self, offsets: Sequence[int]) -> int:
        """A vector of references to objects already written."""
        n = len(offsets)
        off = self._off
        pad = -off & 3
        top = off + pad + 4 * n  # where the first element ends
        if n and not 0 < min(offsets) <= max(offsets) <= off:
            raise ValueError(f"references {list(offsets)} must point to objects already written (offset <= {off})")
        data = struct.pack(f"<{n + 1}I", n, *[top - 4 * i - o for i, o in enumerate(offsets)])
        self._parts.append(data + _ZEROS[:pad])
        self._off = top + 4
        if self._minalign < 4:
            self._minalign = 4
        return self._off

    def table(self, layout: Layout, values: Sequence[Any]) -> int:
        """A table of ``layout`` with one value per field (a reference for
        :data:`REF` fields); see the class doc for which are left out."""
        off = self._off
        if self._force:
            mask = sum(compress(layout.bits, map(is_not, values, repeat(None))))
        else:
            mask = sum(compress(layout.bits, values))
        key = (layout, off & 7, mask)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _plan(layout, off & 7, mask)
        pack, pick, refs, size, vtable, align = plan
        vals = pick(values)
        if refs:
            vals = list(vals)
            for j, end in refs:
                if not 0 < vals[j] <= off:
                    raise ValueError(f"reference {vals[j]} must point to an object already written (offset <= {off})")
                vals[j] = off + end - vals[j]
        start = off + size  # the table's own position (its i32 to the vtable)
        vt = self._vtables.get(vtable)
        try:
            data = pack(len(vtable) if vt is None else vt - start, *vals)
        except (struct.error, OverflowError) as e:
            raise ValueError(f"a value does not fit its field {layout.fields}: {vals}: {e}") from None
        self._parts.append(data)
        if vt is None:
            self._parts.append(vtable)
            self._off = self._vtables[vtable] = start + len(vtable)
        else:
            self._off = start
        if align > self._minalign:
            self._minalign = align
        return start

    def finish(self, root: int, identifier: bytes | None = None) -> bytes:
        """The finished buffer: root reference, optional 4-byte file
        identifier, then everything built."""
        ident = [] if identifier is None else [identifier]
        if identifier is not None and len(identifier) != 4:
            raise ValueError(f"a file identifier has 4 bytes, not {len(identifier)}")
        off = self._off
        off += -(off + 4 + 4 * len(ident)) & (self._minalign - 1)  # the root (and identifier) end aligned
        if ident:
            off += (-(off + 4) & 3) + 4
        pad = -off & 3
        off += pad + 4
        fill = off - self._off - 4 - pad - 4 * len(ident)
        return b"".join([_U32.pack(off - root), bytes(pad), *ident, bytes(fill), *reversed(self._parts)])


def _plan(layout: Layout, at: int, mask: int) -> _Plan:
    """Lay out the present fields of ``layout`` starting at ``at`` (mod 8), as
    ``flatbuffers.Builder`` would: each aligned to its size, then the i32."""
    off = at
    align = 4
    placed = []  # (index, format, pad before it (higher address), end offset)
    for i, (_, fmt) in enumerate(layout.fields):
        if not mask >> i & 1:
            continue
        size = _SIZES[fmt]
        pad = -off & (size - 1)
        off += pad + size
        placed.append((i, fmt, pad, off))
        align = max(align, size)
    pad = -off & 3
    off += pad + 4
    obj = off
    if obj - at > 0xFFFF:  # vtable entries are u16
        raise ValueError(f"a table of {obj - at} bytes; at most 65535")
    # memory order: the i32 and the padding that aligned it, then the fields, last first
    fmt = f"<i{pad}x" + "".join(f"{'I' if f == REF else f}{p}x" for _, f, p, _ in reversed(placed))
    slots: dict[int, int] = {}
    for i, _, _, end in placed:
        slots[layout.fields[i][0]] = obj - end
    entries = [slots.get(s, 0) for s in range(max(slots) + 1)] if slots else []
    vtable = struct.pack(f"<{len(entries) + 2}H", 2 * (len(entries) + 2), obj - at, *entries)
    order = [i for i, *_ in reversed(placed)]
    pick = itemgetter(*order) if len(order) > 1 else partial(_pick_few, tuple(order))  # itemgetter(i) gives no tuple
    refs = tuple((j, end - at) for j, (i, f, _, end) in enumerate(reversed(placed)) if f == REF)
    return _Plan(struct.Struct(fmt).pack, pick, refs, obj - at, vtable, align)


def _pick_few(order: tuple[int, ...], values: Sequence[Any]) -> tuple[Any, ...]:
    return (values[order[0]],) if order else ()
