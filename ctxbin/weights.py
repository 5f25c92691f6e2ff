"""Weight blobs: zero-copy references to tensor bytes in a file mapping or buffer.

A :class:`Blob` is the unit of sharing: two tensors share storage exactly when
they refer to the same ``Blob`` object. Blobs read from a file carry the content
hash recorded there and check it on first access (lazily), or all at once with
:meth:`Blob.verify`.
"""

from __future__ import annotations

import mmap
import os
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from . import hashing
from .errors import ChecksumError, FormatError

__all__ = ["Blob", "BlobCopy", "hash_blobs", "coalesce", "write_blobs"]


class Blob:
    """``nbytes`` bytes at ``offset`` of a buffer (an ``mmap``, ``bytes`` or array).

    ``expected_hash`` is the XXH3-64 the bytes must have (checked once, on first
    access); ``origin`` is ``(path, object name, file offset)`` for error messages.
    ``file`` names the file when ``buf`` is an ``mmap`` of it from byte 0, so
    writers can copy the bytes file to file in the kernel
    (:class:`BlobCopy`) instead of through this process's memory.
    """

    __slots__ = ("_buf", "offset", "nbytes", "_expected", "_hash", "origin", "file")

    def __init__(
        self,
        buf: Any,
        offset: int = 0,
        nbytes: int | None = None,
        *,
        expected_hash: int | None = None,
        origin: tuple[str, str, int] | None = None,
        file: str | None = None,
    ) -> None:
        total = memoryview(buf).nbytes
        if nbytes is None:
            nbytes = total - offset
        if offset < 0 or nbytes < 0 or offset + nbytes > total:
            path, obj, at = origin or ("", "blob", offset)
            raise FormatError(
                f"blob of {nbytes} bytes at {offset} lies outside its {total}-byte buffer",
                path=path, obj=obj, offset=at,
            )
        self._buf = buf
        self.offset = offset
        self.nbytes = nbytes
        self._expected = expected_hash
        self._hash: int | None = None
        self.origin = origin
        self.file = file if isinstance(buf, mmap.mmap) else None

    @classmethod
    def from_array(cls, arr: np.ndarray) -> "Blob":
        """A blob over a C-contiguous little-endian copy of ``arr`` (no copy if already so)."""
        a = np.ascontiguousarray(arr)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        return cls(a.reshape(-1).view(np.uint8))

    def raw(self) -> memoryview:
        """The bytes, unverified (for hashing and copying to another file)."""
        return memoryview(self._buf).cast("B")[self.offset : self.offset + self.nbytes]

    @property
    def hash(self) -> int:
        """XXH3-64 (seed 0) of the bytes; computed once."""
        if self._hash is None:
            self._hash = hashing.xxh3_64(self.raw())
        return self._hash

    @property
    def expected_hash(self) -> int | None:
        return self._expected

    def set_hash(self, value: int) -> None:
        """Record the hash of the bytes computed elsewhere (e.g. by the batch
        hasher); this also settles the recorded checksum."""
        self._hash = value
        self.verify()

    def verify(self) -> None:
        """Raise :class:`ChecksumError` if the bytes differ from the recorded hash."""
        if self._expected is None:
            return
        if self.hash != self._expected:
            path, obj, at = self.origin or ("", "blob", self.offset)
            raise ChecksumError(
                f"content hash {self.hash:016x} does not match the recorded {self._expected:016x}",
                path=path, obj=obj, offset=at,
            )
        self._expected = None  # verified: never again

    def release(self) -> None:
        """Drop this blob's pages from the process's resident memory, when it
        lies in a file mapping (they stay in the OS page cache and come back
        on the next access). Streaming passes call this after using a blob,
        so hashing or copying a file costs little more RSS than one blob."""
        buf = self._buf
        if not isinstance(buf, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = -(-self.offset // mmap.PAGESIZE) * mmap.PAGESIZE
        end = (self.offset + self.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            try:
                buf.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError):
                pass  # advice only: a mapping that refuses it just keeps its pages

    def memoryview(self) -> memoryview:
        """The bytes as a read-only view, verified against the recorded hash."""
        self.verify()
        return self.raw()

    def array(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A read-only numpy view of the bytes (no copy)."""
        dt = np.dtype(dtype)
        count = 1
        for d in shape:
            count *= d
        if count * dt.itemsize != self.nbytes:
            path, obj, at = self.origin or ("", "blob", self.offset)
            raise FormatError(
                f"{self.nbytes} bytes cannot hold shape {shape} of {dt}",
                path=path, obj=obj, offset=at,
            )
        self.verify()
        a = np.ndarray(shape, dt, self._buf, self.offset)
        if a.flags.writeable:
            a.flags.writeable = False
        return a

    def equals(self, other: "Blob") -> bool:
        """Same bytes (identity short-cuts; hashes first, then a full compare)."""
        if self is other:
            return True
        if self.nbytes != other.nbytes:
            return False
        if self._hash is not None and other._hash is not None and self._hash != other._hash:
            return False
        return self.raw() == other.raw()

    def __repr__(self) -> str:
        return f"Blob({self.nbytes} bytes at {self.offset})"


def hash_blobs(
    blobs: Sequence[Blob],
    progress: Callable[[int, int], None] | None = None,
    batch_bytes: int = 32 << 20,
    *,
    release: bool = True,
) -> None:
    """Hash every blob not hashed yet, in batches on the native thread pool.

    A blob read from a file is checked against its recorded hash at the same
    time (:class:`ChecksumError` for the first that fails). With ``release``
    its pages are released after hashing, so hashing a whole file costs about
    one batch of resident memory; callers about to read the bytes keep them.
    ``progress(done, total)`` is called after each batch, in bytes.
    """
    todo = [b for b in blobs if b._hash is None]
    total = sum(b.nbytes for b in todo)
    done = 0
    start = 0
    while start < len(todo):
        end, size = start, 0
        while end < len(todo) and (end == start or size + todo[end].nbytes <= batch_bytes):
            size += todo[end].nbytes
            end += 1
        batch = todo[start:end]
        for b, h in zip(batch, hashing.hash_buffers([b.raw() for b in batch])):
            b.set_hash(int(h))
            if release:
                b.release()
        done += size
        start = end
        if progress is not None:
            progress(done, total)


def write_blobs(out: BinaryIO, blobs: Sequence[Blob], offsets: Sequence[int]) -> None:
    """Append ``blobs`` to ``out``, each at its offset (ascending, counted from
    where ``out`` is now, no overlaps), the gaps as zero bytes: runs merged by
    :func:`coalesce`, file-mapped ones copied in the kernel (:class:`BlobCopy`)."""
    with BlobCopy(blobs, offsets) as copy:
        copy.write(out)


class BlobCopy:
    """:func:`write_blobs` prepared on one thread, to run on another.

    Made on the calling thread: every blob verified, runs merged
    (:func:`coalesce`), the files of mapped runs opened. :meth:`write` then
    starts with its first system call, so a writer that builds the rest of
    its file while a worker thread runs it does not hold the worker back:
    a thread running Python only hands the GIL to a thread waiting for it
    every few milliseconds. Blobs mapped from a file are copied with
    ``copy_file_range`` where the OS has it (no page faults or resident
    memory in this process); everything else is written from memory, then
    released. The sources are closed when the ``with`` block ends.
    """

    def __init__(self, blobs: Sequence[Blob], offsets: Sequence[int]) -> None:
        self._runs = list(coalesce(blobs, offsets))
        self._sources: dict[str, int] = {}
        kernel = hasattr(os, "copy_file_range")
        try:
            for blob, _ in self._runs:
                blob.verify()
                if kernel and blob.file is not None and blob.file not in self._sources:
                    self._sources[blob.file] = os.open(blob.file, os.O_RDONLY)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "BlobCopy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._sources.values():
            os.close(fd)
        self._sources.clear()

    def write(self, out: BinaryIO) -> None:
        """Append the runs to ``out`` (see :func:`write_blobs`)."""
        pos = 0
        for blob, off in self._runs:
            if off > pos:
                out.write(bytes(off - pos))
            self._copy(blob, out)
            pos = off + blob.nbytes

    def _copy(self, blob: Blob, out: BinaryIO) -> None:
        fd = self._sources.get(blob.file) if blob.file is not None else None
        done = 0
        if fd is not None and blob.nbytes:
            out.flush()
            dst = out.fileno()
            try:
                while done < blob.nbytes:
                    n = os.copy_file_range(fd, dst, blob.nbytes - done, blob.offset + done)
                    if n == 0:
                        break  # the source file shrank: copy what is left through memory below, which raises
                    done += n
            except OSError:
                pass  # e.g. across filesystems on old kernels: copy what is left through memory
            out.seek(0, os.SEEK_END)  # the descriptor moved under the buffered writer
            if done == blob.nbytes:
                return
        out.write(blob.raw()[done:])
        blob.release()


def coalesce(blobs: Sequence[Blob], offsets: Sequence[int]) -> Iterator[tuple[Blob, int]]:
    """``(blob, offset)`` pairs to write ``blobs`` at ``offsets`` of an output
    whose gaps are zero bytes, with runs merged into one blob: consecutive
    blobs of one file mapping whose source gaps are the output's gaps and hold
    only zeros. A linked file's blobs mostly keep the layout of the file they
    come from, and one ``copy_file_range`` per run is ~20% faster than one per
    blob (fewer partial pages). Each blob of a run is verified first.
    """
    i = 0
    while i < len(blobs):
        first = blobs[i]
        j = i + 1
        while j < len(blobs) and first.file is not None:
            prev, nxt = blobs[j - 1], blobs[j]
            end = prev.offset + prev.nbytes
            gap = nxt.offset - end
            if (nxt._buf is not first._buf or gap < 0 or gap != offsets[j] - offsets[j - 1] - prev.nbytes
                    or any(memoryview(first._buf)[end : end + gap])):
                break
            j += 1
        if j == i + 1:
            yield first, offsets[i]
        else:
            for b in blobs[i:j]:
                b.verify()
            last = blobs[j - 1]
            yield Blob(first._buf, first.offset, last.offset + last.nbytes - first.offset,
                       origin=first.origin, file=first.file), offsets[i]
        i = j
