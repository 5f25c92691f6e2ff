"""A bounds-checked, read-only ZIP reader for untrusted archives (DLC files are ZIPs).

Python's :mod:`zipfile` trusts the archive more than ctxbin may (declared sizes,
names, overlapping entries) and rejects the CRC-32 fields of 0 that the QNN IR
backend writes. This reader parses the central directory (ZIP64 included),
cross-checks every local header against it, and hands out *stored* entries as
zero-copy views of the file mapping, so weights inside a DLC are never copied.
With the C core built, ordinary archives are scanned by ``ctxbin_zip_scan``
(same checks, pass or fail only); the Python parser here stays the reference
that decides anything else and words every error.

What it refuses, always as :class:`~ctxbin.errors.FormatError` naming the
file, the entry and the byte offset: records running past the end or into
each other, entries overlapping each other or the central directory, unsafe
names (absolute, ``..``, backslashes, drive letters, NUL), duplicate names,
local headers disagreeing with the central directory, stored entries whose
two sizes differ, encrypted entries, unknown compression methods, deflated
entries claiming an absurd ratio or size (zip bombs) or inflating to another
size than declared. A CRC-32 of 0 is taken as "not recorded" (the structure
checks above still apply); any other CRC is verified when the entry is read
(:class:`~ctxbin.errors.ChecksumError`).

Layout facts (PKWARE APPNOTE): end of central directory record ``PK\\5\\6``
(22 bytes + comment) at the end; ZIP64 locator ``PK\\6\\7`` (20 bytes) right
before it points to the ZIP64 end record ``PK\\6\\6``; central headers
``PK\\1\\2`` (46 bytes + name + extra + comment); local headers ``PK\\3\\4``
(30 bytes + name + extra) followed by the data; extra fields are
``(u16 id, u16 size)`` blocks, id 1 = ZIP64 sizes/offset.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

from .errors import ChecksumError, FormatError
from .hashing import crc32_view, native_core

__all__ = ["ZipArchive", "ZipEntry", "ZipLimits", "STORED", "DEFLATED"]

STORED = 0
DEFLATED = 8

_EOCD = struct.Struct("<4sHHHHIIH")  # sig, disk, cd disk, n here, n total, cd size, cd offset, comment len
_Z64_LOCATOR = struct.Struct("<4sIQI")  # sig, disk of z64 eocd, its offset, disks
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # sig, size, made, need, disk, cd disk, n here, n, cd size, cd off
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_EXTRA = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCAN_HEAD = struct.Struct("=3q")  # what ctxbin_zip_scan writes (native int64s): count, directory start, end
_SCAN_ROW = struct.Struct("=9q")  # and per entry: name start, end, then ZipEntry's fields from method on

_FLAG_ENCRYPTED = 0x0001
_FLAG_DESCRIPTOR = 0x0008
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_UTF8 = 0x0800
_ZIP64_ID = 0x0001
_MAX_COMMENT = 0xFFFF
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # O_BINARY: Windows only
_HEAD = 4096  # bytes read from a file's start: its first local header
_TAIL_GUESS = 4096  # and from its end, when the first entry does not say: the end record and a small directory
_TAIL_MAX = 16 << 20  # a longer tail (metadata entries and directory) is scanned in the mapping
_PREAD = hasattr(os, "pread")  # not on Windows: there the scan reads the mapping
_OPEN_CAP = 64  # entries ctxbin_zip_open takes: an archive with more is opened by the Python side


@dataclass(frozen=True)
class ZipLimits:
    """Ceilings that keep a hostile archive from costing unbounded time or memory.

    ``max_ratio`` applies to deflated entries larger than ``ratio_floor`` bytes
    (tiny entries compress well legitimately); deflate itself cannot exceed
    about 1032:1, so a larger claim is a lie anyway.
    """

    max_entries: int = 100_000
    max_inflated_size: int = 1 << 32
    max_ratio: float = 100.0
    ratio_floor: int = 1 << 16


class ZipEntry(NamedTuple):
    """One archive member as the central directory declares it, checked against
    its local header. ``data_offset`` is where its (compressed) bytes start.
    A named tuple: immutable, and cheap to build (an archive makes one per
    entry on every open)."""

    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int

    @property
    def data_end(self) -> int:
        return self.data_offset + self.compressed_size


_new_entry = tuple.__new__  # a ZipEntry from a tuple of its fields, without the per-field call


class _OpenFile:
    """A file descriptor, closed when this goes or when :meth:`close` is called."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    __del__ = close


class ZipArchive:
    """A ZIP archive held in a buffer (``bytes``, ``mmap``, ...), fully validated
    on construction; entries are read on demand."""

    __slots__ = ("_buf", "_mv", "_file", "_size", "_tail", "_tail_at", "path", "limits", "core", "_entries",
                 "_by_name")

    def __init__(self, buf: Any, *, path: object = None, limits: ZipLimits = ZipLimits()) -> None:
        self._buf, self._file = buf, None
        self._mv = memoryview(buf).cast("B")
        self._setup(len(self._mv), path, limits)

    def _setup(self, size: int, path: object, limits: ZipLimits) -> None:
        """Parse the archive (``size`` bytes) in the buffer, or in the file
        mapped on first use: the C scan, then the Python parser unless it
        passed."""
        self._size = size
        #: entries wholly in bytes [_tail_at, end) are read from _tail (see _open_native)
        self._tail, self._tail_at = memoryview(b""), size
        self.path = None if path is None else str(path)
        self.limits = limits
        #: the C core chosen at open (None: the Python paths), which readers of its entries follow
        self.core = core = native_core()
        entries = None if core is None else self._scan_native(core)
        self._by_name = {} if entries is None else {e.name: e for e in entries}
        if entries is None or len(self._by_name) != len(entries):
            entries = self._parse()  # the reference: decides, and names any error
            self._by_name = {e.name: e for e in entries}
        self._entries = entries

    @classmethod
    def open(cls, path: str | os.PathLike, *, limits: ZipLimits = ZipLimits()) -> "ZipArchive":
        """Open the file at ``path`` and parse it. With the C core, only the
        file's first bytes and its tail are read (:meth:`_open_native`): the
        file is mapped read-only when more is asked for (:attr:`buffer`, the
        weights), and stays open until then."""
        core = native_core()
        if core is not None and _PREAD:
            z = cls._open_native(core, path, limits)
            if z is not None:
                return z
        try:
            f = _OpenFile(os.open(path, _OPEN_FLAGS))  # no file object, no read buffer
            try:
                st = os.fstat(f.fd)
                if stat.S_ISDIR(st.st_mode):  # os.open takes directories; open() refused them
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
                if st.st_size == 0:
                    raise FormatError("empty file, not a ZIP archive", path=path, offset=0)
                z = cls.__new__(cls)
                z._buf = z._mv = None
                z._file = f
                if not _PREAD:
                    z._map(f, st.st_size, path)
                z._setup(st.st_size, path, limits)
            except BaseException:
                f.close()  # now, not when the traceback goes
                raise
        except OSError as e:
            raise FormatError(f"cannot open: {e.strerror or e}", path=path) from None
        return z

    @classmethod
    def _open_native(cls, core: Any, path: str | os.PathLike, limits: ZipLimits) -> "ZipArchive | None":
        """:meth:`open` in one C call, ``ctxbin_zip_open``, for the files that
        pass its scan; None for any other, which :meth:`open` then opens,
        maps and parses itself. It reads the file's first bytes (the first
        local header: DLCs store their weights first) and its tail from where
        the first entry ends (else from its last ``_TAIL_GUESS`` bytes), as
        far back as the scan asks (the end record, the central directory,
        the other entries). The file is not mapped: mapping it and faulting
        pages in costs more than copying the few KB of a DLC's metadata, and
        the entries in the tail are then read from the copy. A tail over
        ``_TAIL_MAX`` is left to the mapping."""
        ffi, lib = core.ffi, core.lib
        name = os.fsencode(path)
        if b"\0" in name:  # C would open a shorter path: os.open refuses it
            return None
        try:
            f = ffi.new("ctxbin_zip_file *", (_HEAD, _TAIL_GUESS, _TAIL_MAX, limits.max_entries,
                                               limits.max_inflated_size, limits.ratio_floor, limits.max_ratio))
        except OverflowError:  # a limit outside 64 bits: the parser applies it
            return None
        out = ffi.new("int64_t[]", 3 + 9 * _OPEN_CAP)
        if lib.ctxbin_zip_open(name, f, out, _OPEN_CAP) != lib.CTXBIN_OK:
            return None
        z = cls.__new__(cls)
        z._file = _OpenFile(f.fd)  # owned from here on
        z._buf = z._mv = None
        z._size, z._tail_at = f.size, f.tail_at
        z._tail = memoryview(ffi.buffer(ffi.gc(f.tail, lib.ctxbin_free), f.size - f.tail_at))
        z.path, z.limits, z.core = str(path), limits, core
        entries = z._scanned(ffi.buffer(out), z._tail)
        z._by_name = {e.name: e for e in entries}
        if len(z._by_name) != len(entries):
            return None  # duplicate names: the parser names them
        z._entries = entries
        return z

    def _map(self, f: _OpenFile, size: int, path: object) -> None:
        """Map the first ``size`` bytes of the open file ``f`` and close it (the
        mapping keeps its own descriptor); a file now shorter changed since it
        was opened."""
        try:
            self._buf = mmap.mmap(f.fd, size, access=mmap.ACCESS_READ)
        except ValueError:  # the file is shorter than `size`
            raise FormatError(f"the file changed since it was opened (no longer {size} bytes)", path=path) from None
        self._mv = memoryview(self._buf).cast("B")
        self._file = None
        f.close()

    def _mapped(self) -> memoryview:
        """The whole archive as bytes (the file mapped on first use)."""
        if self._mv is None:
            try:
                self._map(self._file, self._size, self.path)  # type: ignore[arg-type]
            except OSError as e:
                raise FormatError(f"cannot map: {e.strerror or e}", path=self.path) from None
        return self._mv  # type: ignore[return-value]

    _view = property(_mapped)

    # ----------------------------------------------------------------- queries
    @property
    def buffer(self) -> Any:
        """The underlying buffer (the file mapping for :meth:`open`, made on first use)."""
        self._mapped()
        return self._buf

    @property
    def entries(self) -> tuple[ZipEntry, ...]:
        return self._entries

    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ZipEntry]:
        return iter(self._entries)

    def entry(self, name: str) -> ZipEntry:
        try:
            return self._by_name[name]
        except KeyError:
            have = ", ".join(repr(n) for n in self._by_name) or "(none)"
            raise FormatError(f"archive has no entry {name!r} (entries: {have})", path=self.path, obj=name) from None

    def stored(self, name: str) -> memoryview | None:
        """The bytes of stored entry ``name``, its CRC-32 not checked, for
        readers that check it themselves; None when there is no such entry or
        it is compressed."""
        e = self._by_name.get(name)
        return None if e is None or e.method != STORED else self._raw(e)

    def _raw(self, e: ZipEntry) -> memoryview:
        """Entry ``e``'s bytes as stored (compressed if deflated)."""
        at = e.data_offset - self._tail_at
        if at >= 0:
            return self._tail[at : at + e.compressed_size]
        return self._view[e.data_offset : e.data_end]

    def read(self, name: str) -> memoryview:
        """The entry's bytes: a zero-copy view for stored entries, a new buffer
        for deflated ones (at most its declared, limit-checked size)."""
        e = self.entry(name)
        raw = self._raw(e)
        if e.method == STORED:
            data = raw
        else:
            data = memoryview(self._inflate(e, raw))
        if e.crc != 0:
            got = crc32_view(data, self.core)  # the core chosen at open: no second look at the environment
            if got != e.crc:
                raise ChecksumError(
                    f"CRC-32 {got:08x} does not match the recorded {e.crc:08x}",
                    path=self.path, obj=name, offset=e.data_offset,
                )
        return data

    # ----------------------------------------------------------------- parsing
    def _scan_native(self, core: Any) -> tuple[ZipEntry, ...] | None:
        """The entries when the C scan of the whole archive (the checks of
        :meth:`_parse` but duplicate names, for ordinary archives) passes;
        else None, and :meth:`_parse` decides."""
        ffi, lib, lim, view = core.ffi, core.lib, self.limits, self._view
        cap = 8
        with ffi.from_buffer(view) as t:
            while True:
                out = ffi.new("int64_t[]", 3 + 9 * cap)
                try:
                    st = lib.ctxbin_zip_scan(ffi.NULL, 0, t, len(view), self._size, lim.max_entries,
                                             lim.max_inflated_size, lim.ratio_floor, lim.max_ratio, out, cap)
                except OverflowError:  # a limit outside 64 bits: the parser applies it
                    return None
                if st != lib.CTXBIN_EINVAL or out[0] <= cap:
                    break
                cap = out[0]
        return self._scanned(ffi.buffer(out), view) if st == lib.CTXBIN_OK else None

    def _scanned(self, raw: Any, tail: Any) -> tuple[ZipEntry, ...]:
        """The entries a passing scan wrote to ``raw``, the file's last bytes
        being ``tail``."""
        count, cd_start, cd_end = _SCAN_HEAD.unpack_from(raw)
        tail_at = self._size - len(tail)
        # the scan took only ASCII names: the directory decoded as latin-1 keeps
        # their positions, so each name is a slice of one decode
        names = str(tail[cd_start - tail_at : cd_end - tail_at], "latin-1")
        return tuple([
            _new_entry(ZipEntry, (names[start:end], method, flags, crc, csize, size, hoff, data_at))
            for start, end, method, flags, crc, csize, size, hoff, data_at in _SCAN_ROW.iter_unpack(
                raw[_SCAN_HEAD.size : _SCAN_HEAD.size + _SCAN_ROW.size * count]
            )
        ])

    def _error(self, msg: str, at: int, obj: str | None = None) -> FormatError:
        return FormatError(msg, path=self.path, obj=obj or "zip", offset=at)

    def _unpack(self, st: struct.Struct, at: int, what: str) -> tuple:
        if at < 0 or at + st.size > len(self._view):
            raise self._error(f"{what} ({st.size} bytes) runs past the end of the file ({len(self._view)} bytes)", at, what)
        return st.unpack_from(self._view, at)

    def _find_eocd(self) -> int:
        size = len(self._view)
        if size < _EOCD.size:
            raise self._error(f"{size} bytes is too short for a ZIP archive", 0)
        lo = max(0, size - _EOCD.size - _MAX_COMMENT)
        tail = bytes(self._view[lo:])
        pos = len(tail)
        while True:
            pos = tail.rfind(b"PK\x05\x06", 0, pos)
            if pos < 0:
                raise self._error("no end-of-central-directory record: not a ZIP archive (or truncated)", size)
            if pos + _EOCD.size <= len(tail):
                (comment_len,) = _U16.unpack_from(tail, pos + 20)
                if pos + _EOCD.size + comment_len == len(tail):
                    return lo + pos

    def _directory(self) -> tuple[int, int, int]:
        """(entry count, central directory offset, where it ends)."""
        eocd = self._find_eocd()
        _, disk, cd_disk, _, count, cd_size, cd_off, _ = self._unpack(_EOCD, eocd, "end record")
        end = eocd
        loc = eocd - _Z64_LOCATOR.size
        if loc >= 0 and bytes(self._view[loc : loc + 4]) == b"PK\x06\x07":
            _, z_disk, z_off, _ = self._unpack(_Z64_LOCATOR, loc, "ZIP64 locator")
            if z_off + _Z64_EOCD.size > loc:
                raise self._error(f"ZIP64 end record at {z_off} overlaps what follows it", loc, "ZIP64 locator")
            sig, _, _, _, disk, cd_disk, _, count, cd_size, cd_off = self._unpack(_Z64_EOCD, z_off, "ZIP64 end record")
            if sig != b"PK\x06\x06":
                raise self._error("bad ZIP64 end record signature", z_off, "ZIP64 end record")
            end = z_off
        if disk != 0 or cd_disk != 0:
            raise self._error("multi-disk archives are not supported", eocd, "end record")
        if cd_off + cd_size > end:
            raise self._error(
                f"central directory ({cd_size} bytes at {cd_off}) runs past its end record at {end}", eocd, "end record"
            )
        if count > cd_size // _CENTRAL.size:
            raise self._error(f"{count} entries cannot fit in a {cd_size}-byte central directory", eocd, "end record")
        if count > self.limits.max_entries:
            raise self._error(f"{count} entries exceed the limit of {self.limits.max_entries}", eocd, "end record")
        return count, cd_off, cd_off + cd_size

    def _parse(self) -> tuple[ZipEntry, ...]:
        count, cd_start, cd_end = self._directory()
        at = cd_start
        entries: list[ZipEntry] = []
        seen: set[str] = set()
        for i in range(count):
            entry, at = self._central(i, at, cd_end)
            if entry.name in seen:
                raise self._error("duplicate entry name", entry.header_offset, entry.name)
            seen.add(entry.name)
            entries.append(entry)
        if at != cd_end:
            raise self._error(f"central directory declares {cd_end - at} bytes more than its {count} entries", at, "central directory")
        self._check_layout(entries, cd_start)
        return tuple(entries)

    def _central(self, i: int, at: int, cd_end: int) -> tuple[ZipEntry, int]:
        what = f"central header #{i}"
        if at + _CENTRAL.size > cd_end:
            raise self._error("runs past the end of the central directory", at, what)
        (sig, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, disk, _, _, hoff) = self._unpack(
            _CENTRAL, at, what
        )
        if sig != b"PK\x01\x02":
            raise self._error("bad central header signature", at, what)
        nxt = at + _CENTRAL.size + nlen + elen + clen
        if nxt > cd_end:
            raise self._error("name/extra/comment run past the end of the central directory", at, what)
        name_at = at + _CENTRAL.size
        raw_name = bytes(self._view[name_at : name_at + nlen])
        name = self._name(raw_name, flags, at)
        extra = self._view[name_at + nlen : name_at + nlen + elen]
        usize, csize, hoff = self._zip64(extra, name, at, usize, csize, hoff, disk)
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise self._error("encrypted entries are not supported", at, name)
        if method not in (STORED, DEFLATED):
            raise self._error(f"compression method {method} is not supported (only stored and deflate)", at, name)
        if method == STORED and csize != usize:
            raise self._error(f"stored entry declares {usize} bytes but holds {csize}", at, name)
        if method == DEFLATED:
            self._check_bomb(name, at, csize, usize)
        data_at = self._local(name, raw_name, hoff, method, flags, crc, csize, usize)
        return ZipEntry(name, method, flags, crc, csize, usize, hoff, data_at), nxt

    def _name(self, raw: bytes, flags: int, at: int) -> str:
        try:
            name = raw.decode("utf-8") if flags & _FLAG_UTF8 else raw.decode("cp437")
        except UnicodeDecodeError:
            raise self._error("entry name is not valid UTF-8", at, repr(raw)) from None
        parts = name.split("/")
        if (
            not name
            or "\x00" in name
            or "\\" in name
            or name.startswith("/")
            or (len(name) >= 2 and name[1] == ":")
            or any(p in ("..", ".") for p in parts)
        ):
            raise self._error("unsafe entry name (empty, absolute, drive, backslash, '.' or '..')", at, repr(name))
        return name

    def _zip64(
        self, extra: memoryview, name: str, at: int, usize: int, csize: int, hoff: int, disk: int
    ) -> tuple[int, int, int]:
        """Apply a ZIP64 extra field: 8-byte values for each 32-bit field set to 0xFFFFFFFF."""
        block = self._extra_block(extra, _ZIP64_ID, name, at)
        wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, hoff == 0xFFFFFFFF]
        if not any(wanted) and disk != 0xFFFF:
            if disk != 0:
                raise self._error("entry lies on another disk", at, name)
            return usize, csize, hoff
        if block is None:
            raise self._error("sizes are 0xFFFFFFFF but there is no ZIP64 extra field", at, name)
        values = [usize, csize, hoff]
        pos = 0
        for k, need in enumerate(wanted):
            if need:
                if pos + 8 > len(block):
                    raise self._error("ZIP64 extra field is too short", at, name)
                (values[k],) = _U64.unpack_from(block, pos)
                pos += 8
        if disk == 0xFFFF:
            if pos + 4 > len(block) or _U32.unpack_from(block, pos)[0] != 0:
                raise self._error("entry lies on another disk", at, name)
        # bytes after the fields are tolerated: the QNN IR backend pads this block
        return values[0], values[1], values[2]

    def _extra_block(self, extra: memoryview, wanted: int, name: str, at: int) -> memoryview | None:
        pos, found = 0, None
        while pos + _EXTRA.size <= len(extra):
            tag, size = _EXTRA.unpack_from(extra, pos)
            pos += _EXTRA.size
            if pos + size > len(extra):
                raise self._error(f"extra field 0x{tag:04x} runs past its {len(extra)}-byte area", at, name)
            if tag == wanted and found is None:
                found = extra[pos : pos + size]
            pos += size
        return found

    def _check_bomb(self, name: str, at: int, csize: int, usize: int) -> None:
        lim = self.limits
        if usize > lim.max_inflated_size:
            raise self._error(f"declares {usize} inflated bytes, over the limit of {lim.max_inflated_size}", at, name)
        if usize > lim.ratio_floor and usize > lim.max_ratio * max(csize, 1):
            raise self._error(
                f"compression ratio {usize}/{csize} exceeds {lim.max_ratio:g}:1 (zip bomb?)", at, name
            )

    def _local(
        self, name: str, raw_name: bytes, hoff: int, method: int, flags: int, crc: int, csize: int, usize: int
    ) -> int:
        what = name
        sig, _, lflags, lmethod, _, _, lcrc, lcsize, lusize, nlen, elen = self._unpack(_LOCAL, hoff, f"local header of {name}")
        if sig != b"PK\x03\x04":
            raise self._error("bad local header signature", hoff, what)
        name_at = hoff + _LOCAL.size
        data_at = name_at + nlen + elen
        if data_at > len(self._view):
            raise self._error("local header runs past the end of the file", hoff, what)
        if bytes(self._view[name_at : name_at + nlen]) != raw_name:
            raise self._error("local header names a different entry than the central directory", hoff, what)
        if lmethod != method:
            raise self._error(f"local header says method {lmethod}, central directory {method}", hoff, what)
        if not (lflags & _FLAG_DESCRIPTOR):
            if lcsize == 0xFFFFFFFF or lusize == 0xFFFFFFFF:
                block = self._extra_block(self._view[name_at + nlen : data_at], _ZIP64_ID, name, hoff)
                if block is None or len(block) < 16:
                    raise self._error("local sizes are 0xFFFFFFFF but its ZIP64 field is missing or short", hoff, what)
                lusize, lcsize = struct.unpack_from("<QQ", block, 0)
            if (lcsize, lusize) != (csize, usize) or lcrc != crc:
                raise self._error(
                    f"local header declares {lcsize}/{lusize} bytes and CRC {lcrc:08x}, "
                    f"central directory {csize}/{usize} and {crc:08x}",
                    hoff, what,
                )
        if data_at + csize > len(self._view):
            raise self._error(f"{csize} bytes of data run past the end of the file", data_at, what)
        return data_at

    def _check_layout(self, entries: list[ZipEntry], cd_start: int) -> None:
        """No two entries share bytes; none reaches into the central directory."""
        spans = sorted(entries, key=lambda e: e.header_offset)
        for a, b in zip(spans, spans[1:]):
            if a.data_end > b.header_offset:
                raise self._error(f"entry overlaps {b.name!r} (which starts at {b.header_offset})", a.header_offset, a.name)
        if spans and spans[-1].data_end > cd_start:
            last = spans[-1]
            raise self._error("entry data runs into the central directory", last.header_offset, last.name)

    def _inflate(self, e: ZipEntry, raw: memoryview) -> bytes:
        d = zlib.decompressobj(-15)
        try:
            out = d.decompress(raw, e.size + 1)  # never more than declared + 1
        except zlib.error as ex:
            raise self._error(f"corrupt deflate data: {ex}", e.data_offset, e.name) from None
        if len(out) != e.size or not d.eof:
            raise self._error(
                f"inflates to {'more than ' if len(out) > e.size else ''}{len(out)} bytes, declared {e.size}",
                e.data_offset, e.name,
            )
        return out
