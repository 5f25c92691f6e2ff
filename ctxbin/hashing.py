"""XXH3-64 content hashes of tensor bytes: one buffer, many ranges of one
buffer (tensors inside one mapped file), or many separate buffers; and the
CRC-32 of ZIP entries (zlib's), alone or in the same pass as XXH3.

The work is done by the C core (``ctxbin._native_core``) when it is built; the
batch calls then run on a few threads without the GIL. Without it (a source
checkout that was never built, or ``CTXBIN_NO_NATIVE=1`` in the environment)
the ``xxhash`` package and :mod:`zlib` compute the same values, one call per
tensor. A single buffer under 64 KiB is always hashed by ``xxhash``: its call
costs ~0.1 µs against ~2 µs for crossing into the C core.

Buffers are anything exporting the buffer protocol (``bytes``, ``memoryview``,
``mmap``, numpy arrays); they must be C-contiguous, and are hashed as their raw
bytes.
"""

from __future__ import annotations

import mmap
import operator
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import xxhash

from .errors import FormatError

try:
    from . import _native_core
except ImportError:  # not built: the xxhash fallback below takes over
    _native_core = None

__all__ = [
    "native_available", "simd_impl", "crc32_impl", "xxh3_64", "hash_many", "hash_buffers",
    "crc32", "crc32_combine", "hash_and_crc", "crc32_many",
]

_CRC_POLY = 0xEDB88320  # reflected CRC-32 polynomial of ZIP and zlib
_MAX_THREADS = 64
#: single buffers shorter than this go to the xxhash package (see the module docstring)
_SMALL = 64 << 10
#: and CRC-32s of buffers shorter than this to zlib (measured: zlib is faster below ~8 KiB,
#: the C core 1.8x faster at 25 KiB)
_SMALL_CRC = 8 << 10


def native_core() -> Any:
    """The C core's cffi module (``.ffi``, ``.lib``), or None when it is missing
    or disabled by the environment. For ctxbin's own modules."""
    if _native_core is None or os.environ.get("CTXBIN_NO_NATIVE", "") not in ("", "0"):
        return None
    return _native_core


def native_available() -> bool:
    """True when hashing and dedup run in the C core (built, and not disabled
    with ``CTXBIN_NO_NATIVE=1``)."""
    return native_core() is not None


def simd_impl() -> str:
    """The accumulate loop used for inputs over 240 bytes: ``avx2``, ``sse2``,
    ``neon``, ``scalar``, ``avx2+avx512`` (AVX-512 up to 16 KiB, where it is
    ahead in cache, AVX2 beyond, where it is ahead streaming from memory), or
    ``python`` when the C core is not in use."""
    core = native_core()
    if core is None:
        return "python"
    return core.ffi.string(core.lib.ctxbin_impl_name(core.lib.CTXBIN_IMPL_AUTO)).decode()


def crc32_impl() -> str:
    """The CRC-32 implementation in use: ``pclmul``, ``armv8``, ``table``
    (portable C), or ``zlib`` when the C core is not in use."""
    core = native_core()
    if core is None:
        return "zlib"
    return core.ffi.string(core.lib.ctxbin_crc32_impl_name(core.lib.CTXBIN_CRC_AUTO)).decode()


def check_status(status: int) -> None:
    """Raise for a non-zero C core status (``MemoryError`` or ``ValueError``)."""
    if status == 0:
        return
    lib = _native_core.lib
    message = _native_core.ffi.string(lib.ctxbin_strerror(status)).decode()
    if status == lib.CTXBIN_ENOMEM:
        raise MemoryError(message)
    raise ValueError(f"ctxbin C core: {message}")


def _unsigned(value: int, bits: int, what: str) -> int:
    """``value`` as an int in [0, 2**bits): ints and numpy integers, not bools,
    floats or strings; a ValueError naming ``what`` otherwise."""
    try:
        v = operator.index(value)
    except TypeError:
        v = -1
    if isinstance(value, bool) or not 0 <= v < 1 << bits:
        raise ValueError(f"{what} must be an integer in [0, 2**{bits}), got {value!r}")
    return v


def _seed(seed: int) -> int:
    return _unsigned(seed, 64, "seed")


def _threads(threads: int | None) -> int:
    if threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on every platform
            cores = os.cpu_count() or 1
        return max(1, min(cores, 8))
    try:
        value = operator.index(threads)
    except TypeError:
        value = 0
    if isinstance(threads, bool) or value < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return min(value, _MAX_THREADS)


def byte_view(data: Any, what: str = "buffer") -> memoryview:
    """``data``'s bytes as a flat, C-contiguous ``memoryview`` of format ``B``
    (no copy); ``TypeError`` for non-buffers, ``ValueError`` if not contiguous."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"{what} must support the buffer protocol, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ValueError(f"{what} is not C-contiguous; hash a contiguous copy")
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.ndim else view.cast("B", (view.nbytes,))


def xxh3_64(data: Any, seed: int = 0) -> int:
    """XXH3-64 of ``data``'s bytes (equal to ``xxhash.xxh3_64_intdigest``)."""
    seed = _seed(seed)
    view = byte_view(data)
    core = None if view.nbytes < _SMALL else native_core()
    if core is None:
        return xxhash.xxh3_64_intdigest(view, seed)
    with core.ffi.from_buffer(view) as ptr:  # long inputs: the C core's SIMD loop, without the GIL
        return int(core.lib.ctxbin_xxh3_64(ptr, view.nbytes, seed))


def _u64_column(values: Any, what: str) -> np.ndarray:
    """A 1-D uint64 copy of non-negative integers, checked before any cast."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.uint64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        i = int(np.argmax(arr < 0))
        raise FormatError(f"negative {what[:-1]} {int(arr[i])}", obj=f"range {i}")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def hash_many(
    base: Any,
    offsets: Sequence[int] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    seed: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """``out[i] = xxh3_64(base[offsets[i] : offsets[i] + lengths[i]], seed)``,
    offsets and lengths in bytes of ``base``'s raw memory.

    Every range is checked against ``base``'s size first: one outside it is a
    :class:`~ctxbin.errors.FormatError` naming the range and its offset.
    """
    seed = _seed(seed)
    nthreads = _threads(threads)
    view = byte_view(base, "base buffer")
    offs = _u64_column(offsets, "offsets")
    lens = _u64_column(lengths, "lengths")
    if offs.shape != lens.shape:
        raise ValueError(f"{offs.size} offsets but {lens.size} lengths")
    size = view.nbytes
    core = native_core()
    if core is None:
        _check_ranges(offs, lens, size)
        return np.fromiter(
            (xxhash.xxh3_64_intdigest(view[o : o + n], seed)
             for o, n in zip(offs.tolist(), lens.tolist())),
            np.uint64, offs.size,
        )
    out = np.empty(offs.size, np.uint64)
    if offs.size == 0:
        return out
    ffi = core.ffi
    with ffi.from_buffer(view) as ptr:
        status = core.lib.ctxbin_hash_many(
            ptr, size,
            ffi.from_buffer("uint64_t[]", offs), ffi.from_buffer("uint64_t[]", lens),
            offs.size, seed, ffi.from_buffer("uint64_t[]", out), nthreads,
        )
    if status == core.lib.CTXBIN_ERANGE:
        _check_ranges(offs, lens, size)  # the C core checked first; name the culprit
    check_status(status)
    return out


def _check_ranges(offs: np.ndarray, lens: np.ndarray, size: int) -> None:
    """FormatError for the first (offset, length) reaching past ``size`` bytes."""
    # offs <= size is tested first, so size - offs cannot wrap around
    bad = (offs > size) | (lens > np.uint64(size) - np.minimum(offs, np.uint64(size)))
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(
            f"{int(lens[i])} bytes at offset {int(offs[i])} run past the end of the "
            f"{size}-byte buffer",
            obj=f"range {i}",
            offset=int(offs[i]),
        )


@contextmanager
def pinned(buffers: Sequence[Any]) -> Iterator[tuple[Any, np.ndarray]]:
    """``(pointers, lengths)``: a C array of pointers to the buffers' bytes and
    their sizes in bytes, valid inside the ``with``. The buffers stay exported
    until it ends (an mmap cannot be closed meanwhile). Needs the C core."""
    ffi = _native_core.ffi
    held: list[Any] = []
    export = ffi.from_buffer
    add = held.append
    try:
        try:
            for buf in buffers:
                add(export(buf))
        except (TypeError, ValueError, BufferError):
            i = len(held)
            byte_view(buffers[i], f"buffer {i}")  # raises the same error, worded like the fallback's
            raise
        lengths = np.fromiter(map(len, held), np.uint64, len(held))
        yield ffi.new("const void *[]", held), lengths
    finally:
        for cdata in held:
            ffi.release(cdata)


def hash_pinned(pointers: Any, lengths: np.ndarray, seed: int = 0, threads: int | None = None) -> np.ndarray:
    """:func:`hash_buffers` over what :func:`pinned` yields (C core only)."""
    seed = _seed(seed)
    nthreads = _threads(threads)
    ffi, lib = _native_core.ffi, _native_core.lib
    out = np.empty(lengths.size, np.uint64)
    if lengths.size:
        check_status(lib.ctxbin_hash_ptrs(
            pointers, ffi.from_buffer("uint64_t[]", lengths), lengths.size, seed,
            ffi.from_buffer("uint64_t[]", out), nthreads,
        ))
    return out


def hash_buffers(buffers: Sequence[Any], seed: int = 0, threads: int | None = None) -> np.ndarray:
    """``out[i] = xxh3_64(buffers[i], seed)`` for tensors living in different buffers."""
    seed = _seed(seed)
    nthreads = _threads(threads)
    if native_core() is None:
        views = [byte_view(b, f"buffer {i}") for i, b in enumerate(buffers)]
        return np.fromiter((xxhash.xxh3_64_intdigest(v, seed) for v in views), np.uint64, len(views))
    with pinned(buffers) as (pointers, lengths):
        return hash_pinned(pointers, lengths, seed, nthreads)


def crc32(data: Any, value: int = 0) -> int:
    """CRC-32 of ``data``'s bytes continuing from ``value`` (equal to
    ``zlib.crc32(data, value)``)."""
    view = byte_view(data)
    return crc32_view(view, None if view.nbytes < _SMALL_CRC else native_core(), _unsigned(value, 32, "value"))


def crc32_view(view: memoryview, core: Any, value: int = 0) -> int:
    """:func:`crc32` of a flat byte view with the C core ``core`` already
    chosen (None: zlib), for ctxbin's readers: zlib below ``_SMALL_CRC``."""
    if core is None or view.nbytes < _SMALL_CRC:
        return zlib.crc32(view, value)
    with core.ffi.from_buffer(view) as ptr:
        return int(core.lib.ctxbin_crc32(value, ptr, view.nbytes))


def _mulmod(a: int, b: int) -> int:
    """``a * b`` modulo the CRC polynomial, both bit-reflected (bit 31 is x^0)."""
    r = 0
    m = 1 << 31
    while m:
        if a & m:
            r ^= b
        b = (b >> 1) ^ (_CRC_POLY if b & 1 else 0)
        m >>= 1
    return r


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc1 = crc32(A)``, ``crc2 = crc32(B)`` and
    ``len2 = len(B)``, without the bytes (``crc1`` times x^(8 len2) mod the
    polynomial, plus ``crc2``)."""
    crc1, crc2 = _unsigned(crc1, 32, "crc1"), _unsigned(crc2, 32, "crc2")
    n = _unsigned(len2, 64, "len2")
    core = native_core()
    if core is not None:
        return int(core.lib.ctxbin_crc32_combine(crc1, crc2, n))
    power, shift = 1 << 23, 1 << 31  # x^8 and x^0, reflected
    while n:
        if n & 1:
            shift = _mulmod(shift, power)
        power = _mulmod(power, power)
        n >>= 1
    return _mulmod(crc1, shift) ^ crc2


def hash_and_crc(
    buffers: Sequence[Any], release: Sequence[bool] | None = None, threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, crcs)``: XXH3-64 (seed 0, ``uint64``) and CRC-32 (``uint32``)
    of every buffer, each buffer read once.

    ``release[i]`` true lets the pages of buffer ``i`` be dropped from this
    process's resident memory behind the read position when it is a view of
    an ``mmap`` (they come back from the file), so a pass over a whole mapped
    file stays at a few MiB of resident memory.
    """
    return _hash_crc(buffers, release, threads, True)  # type: ignore[return-value]


def crc32_many(buffers: Sequence[Any], release: Sequence[bool] | None = None, threads: int | None = None) -> np.ndarray:
    """CRC-32 (``uint32``) of every buffer in one call (no GIL, up to
    ``threads`` threads); ``release`` as in :func:`hash_and_crc`."""
    return _hash_crc(buffers, release, threads, False)[1]


def _hash_crc(
    buffers: Sequence[Any], release: Sequence[bool] | None, threads: int | None, with_hashes: bool,
) -> tuple[np.ndarray | None, np.ndarray]:
    nthreads = _threads(threads)
    n = len(buffers)
    if release is not None and len(release) != n:
        raise ValueError(f"{len(release)} release flags for {n} buffers")
    core = native_core()
    if core is None:
        views = [byte_view(b, f"buffer {i}") for i, b in enumerate(buffers)]
        crcs = np.fromiter((zlib.crc32(v) for v in views), np.uint32, n)
        if not with_hashes:
            return None, crcs
        return np.fromiter((xxhash.xxh3_64_intdigest(v) for v in views), np.uint64, n), crcs
    hashes = np.empty(n, np.uint64) if with_hashes else None
    crcs = np.empty(n, np.uint32)
    if n == 0:
        return hashes, crcs
    # only views into an mmap are ever released: dropping pages of ordinary
    # memory would lose its contents
    flags = None if release is None else np.fromiter(
        (bool(r) and isinstance(memoryview(b).obj, mmap.mmap) for r, b in zip(release, buffers)), np.uint8, n)
    ffi = core.ffi
    with pinned(buffers) as (pointers, lengths):
        check_status(core.lib.ctxbin_hash_crc_ptrs(
            pointers, ffi.from_buffer("uint64_t[]", lengths), n,
            ffi.NULL if flags is None else ffi.from_buffer("uint8_t[]", flags),
            ffi.NULL if hashes is None else ffi.from_buffer("uint64_t[]", hashes),
            ffi.from_buffer("uint32_t[]", crcs), nthreads,
        ))
    return hashes, crcs
