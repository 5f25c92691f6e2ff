"""CRC-32 (ctxbin.hashing and the C core) against zlib, and XXH3 + CRC-32 in
one pass (``hash_and_crc``) against xxhash and zlib.

Public API tests run on the C core and on the fallback (CTXBIN_NO_NATIVE=1);
every C implementation (table, PCLMUL, ARMv8) is forced in turn where the CPU
has it, and the aarch64 build runs under qemu where a cross compiler exists.
"""

from __future__ import annotations

import mmap
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

xxhash = pytest.importorskip("xxhash")

from ctxbin import hashing  # noqa: E402
from tests.native_paths import both_paths, needs_native

U32_MAX = (1 << 32) - 1
STARTS = [0, 1, 0xFFFFFFFF, 0x12345678, 0x80000000]
# Around the table path's 8-byte steps and alignment, and the folding path's
# 16-byte and 64-byte steps (it starts at 64 bytes).
SIZES = [*range(0, 80), 95, 96, 127, 128, 129, 143, 144, 255, 256, 257, 1023, 1024, 1025, 4096 + 15, 65_536 + 7]


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def c_impls() -> list[int]:
    lib = hashing._native_core.lib
    mask = lib.ctxbin_crc32_impls_available()
    return [i for i in (lib.CTXBIN_CRC_TABLE, lib.CTXBIN_CRC_PCLMUL, lib.CTXBIN_CRC_ARMV8) if mask & (1 << i)]


def c_crc(data: bytes | memoryview, start: int, impl: int) -> int:
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    out = ffi.new("uint32_t *")
    assert lib.ctxbin_crc32_impl(start, ffi.from_buffer(data), len(data), impl, out) == lib.CTXBIN_OK
    return int(out[0])


# ---- crc32 ----


@pytest.mark.parametrize("start", STARTS)
def test_boundary_sizes_and_offsets(path: str, start: int) -> None:
    base = random_bytes(70_000, start & 0xFF)
    for n in SIZES:
        for off in (0, 1, 3, 7):  # unaligned starts
            view = memoryview(base)[off : off + n]
            assert hashing.crc32(view, start) == zlib.crc32(view, start), (n, off)


@needs_native
@pytest.mark.parametrize("start", STARTS)
def test_every_c_implementation_at_boundaries(start: int) -> None:
    impls = c_impls()
    assert hashing._native_core.lib.CTXBIN_CRC_TABLE in impls
    base = random_bytes(70_000, 5)
    for n in SIZES:
        for off in (0, 5):
            view = memoryview(base)[off : off + n]
            for impl in impls:
                assert c_crc(view, start, impl) == zlib.crc32(view, start), (n, off, impl)


@needs_native
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), start=st.integers(0, U32_MAX), cut=st.integers(0, 3000))
def test_random_inputs_every_path(data: bytes, start: int, cut: int) -> None:
    expected = zlib.crc32(data, start)
    for impl in c_impls():
        assert c_crc(data, start, impl) == expected, impl
    # continuing from a CRC is the same as one call over the whole
    cut = min(cut, len(data))
    assert hashing.crc32(data[cut:], hashing.crc32(data[:cut], start)) == expected
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXBIN_NO_NATIVE", "1")
        assert hashing.crc32(data, start) == expected


def test_large_unaligned(path: str) -> None:
    data = random_bytes((8 << 20) + 13, 9)
    view = memoryview(data)[5:]
    assert hashing.crc32(view) == zlib.crc32(view)
    assert hashing.crc32(np.frombuffer(data, np.uint8)[3:].view(np.uint8)) == zlib.crc32(data[3:])


def test_buffer_kinds(path: str, tmp_path) -> None:
    data = random_bytes(10_000, 4)
    arr = np.frombuffer(data, np.float32).reshape(50, 50)
    assert hashing.crc32(arr) == zlib.crc32(data)
    assert hashing.crc32(bytearray(data)) == zlib.crc32(data)
    f = tmp_path / "x.bin"
    f.write_bytes(data)
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert hashing.crc32(m) == zlib.crc32(data)
    with pytest.raises(ValueError, match="contiguous"):
        hashing.crc32(arr[:, ::2])
    with pytest.raises(TypeError):
        hashing.crc32("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1 << 32, 1.5, True, "0"])
def test_bad_start_values(path: str, bad) -> None:
    with pytest.raises(ValueError, match="value"):
        hashing.crc32(b"x", bad)


@needs_native
def test_c_status_codes() -> None:
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    out = ffi.new("uint32_t *")
    assert lib.ctxbin_crc32_impl(0, ffi.NULL, 4, lib.CTXBIN_CRC_TABLE, out) == lib.CTXBIN_EINVAL
    assert lib.ctxbin_crc32_impl(0, b"abcd", 4, lib.CTXBIN_CRC_TABLE, ffi.NULL) == lib.CTXBIN_EINVAL
    assert lib.ctxbin_crc32_impl(0, b"abcd", 4, 99, out) == lib.CTXBIN_EUNSUPPORTED
    assert lib.ctxbin_crc32_impl(7, ffi.NULL, 0, lib.CTXBIN_CRC_AUTO, out) == lib.CTXBIN_OK and out[0] == 7
    missing = {lib.CTXBIN_CRC_PCLMUL, lib.CTXBIN_CRC_ARMV8} - set(c_impls())
    for impl in missing:
        assert lib.ctxbin_crc32_impl(0, b"abcd", 4, impl, out) == lib.CTXBIN_EUNSUPPORTED
    assert lib.ctxbin_crc32(0, ffi.NULL, 0) == 0
    assert ffi.string(lib.ctxbin_crc32_impl_name(lib.CTXBIN_CRC_TABLE)) == b"table"


# ---- crc32_combine ----


@settings(max_examples=150, deadline=None)
@given(a=st.binary(max_size=600), b=st.binary(max_size=600), start=st.integers(0, U32_MAX))
def test_combine_matches_one_pass(a: bytes, b: bytes, start: int) -> None:
    expected = zlib.crc32(a + b, start)
    for _ in both_paths():
        assert hashing.crc32_combine(zlib.crc32(a, start), zlib.crc32(b), len(b)) == expected


def test_combine_over_zero_runs_and_huge_lengths(path: str) -> None:
    a = random_bytes(1000, 1)
    for n in (0, 1, 63, 64, 1 << 20, (1 << 20) + 3):
        zeros = bytes(n)
        assert hashing.crc32_combine(zlib.crc32(a), zlib.crc32(zeros), n) == zlib.crc32(a + zeros), n
    one = zlib.crc32(b"\0")
    assert hashing.crc32_combine(zlib.crc32(b"abc"), one, 1) == zlib.crc32(b"abc\0")
    # lengths past 4 GiB (ZIP64 entries): combining is associative, as
    # concatenation is: (A + B) + C == A + (B + C)
    a_, b_, c_ = 0x1234, 0xCAFEBABE, 0x0BADF00D
    n1, n2 = 5 << 30, (3 << 32) + 7
    left = hashing.crc32_combine(hashing.crc32_combine(a_, b_, n1), c_, n2)
    right = hashing.crc32_combine(a_, hashing.crc32_combine(b_, c_, n2), n1 + n2)
    assert left == right


def test_combine_paths_agree_on_large_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    if hashing._native_core is None:
        pytest.skip("C core not built")
    cases = [(0xDEADBEEF, 0x01234567, n) for n in (1 << 32, (1 << 40) + 17, (1 << 64) - 1)]
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    native = [hashing.crc32_combine(*c) for c in cases]
    monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
    assert [hashing.crc32_combine(*c) for c in cases] == native


@pytest.mark.parametrize("args", [(-1, 0, 0), (0, 1 << 32, 0), (0, 0, -1), (0, 0, 1 << 64), (0, 0, 1.0)])
def test_combine_bad_arguments(path: str, args) -> None:
    with pytest.raises(ValueError):
        hashing.crc32_combine(*args)


# ---- XXH3 + CRC-32 in one pass ----


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_hash_and_crc(path: str, threads: int) -> None:
    sizes = [0, 1, 17, 240, 241, 1024, 1025, 256 * 1024 + 1, (1 << 20) + 1000, 5 << 20, 3]
    bufs = [random_bytes(n, n) for n in sizes]
    hashes, crcs = hashing.hash_and_crc(bufs, threads=threads)
    assert hashes.dtype == np.uint64 and crcs.dtype == np.uint32
    assert hashes.tolist() == [xxhash.xxh3_64_intdigest(b) for b in bufs]
    assert crcs.tolist() == [zlib.crc32(b) for b in bufs]
    empty_h, empty_c = hashing.hash_and_crc([])
    assert empty_h.size == 0 and empty_c.size == 0


def test_hash_and_crc_releases_only_mapped_pages(path: str, tmp_path) -> None:
    """The one-pass XXH3+CRC and the CRC-only pass agree with the references and
    drop pages of file mappings only (ordinary memory would be erased)."""
    data = random_bytes(9 << 20, 2)
    f = tmp_path / "w.bin"
    f.write_bytes(data)
    own = bytearray(data[: 1 << 20])
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        views = [memoryview(m)[100 : 100 + (8 << 20)], own, memoryview(m)[5:9]]
        hashes, crcs = hashing.hash_and_crc(views, release=[True, True, True])
        expected = [bytes(views[0]), bytes(own), data[5:9]]
        assert crcs.tolist() == [zlib.crc32(b) for b in expected]
        assert hashes.tolist() == [xxhash.xxh3_64_intdigest(b) for b in expected]
        for threads in (1, 2):
            only = hashing.crc32_many(views + [b""], release=[True] * 4, threads=threads)
            assert only.dtype == np.uint32 and only.tolist() == [zlib.crc32(b) for b in expected + [b""]]
        assert bytes(memoryview(m)[100:200]) == data[100:200]  # dropped pages come back from the file
        del views
    assert bytes(own) == data[: 1 << 20]  # ordinary memory is never dropped
    with pytest.raises(ValueError, match="release flags"):
        hashing.hash_and_crc([b"x"], release=[True, False])
    assert hashing.crc32_many([]).size == 0


# ---- the C sources built as a plain program: aarch64 under qemu ----

DRIVER = r"""
#include "ctxbin_core.h"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    unsigned long long len, start;
    while (scanf("%llu %llu", &len, &start) == 2) {
        unsigned char *buf = malloc(len + 8);
        for (unsigned long long i = 0; i < len + 8; i++) buf[i] = (unsigned char)((i * 151u + len * 3u) & 255u);
        unsigned mask = ctxbin_crc32_impls_available();
        for (int impl = 1; impl <= 3; impl++) {
            uint32_t c;
            if ((mask & (1u << impl)) && ctxbin_crc32_impl((uint32_t)start, buf + 3, len, impl, &c) == CTXBIN_OK)
                printf("%d:%lu ", impl, (unsigned long)c);
        }
        const void *ptrs[1] = {buf + 3};
        uint64_t lens[1] = {len}, h;
        uint32_t c;
        if (start == 0 && ctxbin_hash_crc_ptrs(ptrs, lens, 1, NULL, &h, &c, 1) == CTXBIN_OK)
            printf("0:%lu ", (unsigned long)c);
        printf("\n");
        free(buf);
    }
    return 0;
}
"""


def test_armv8_crc_under_qemu(tmp_path) -> None:
    """The aarch64 build (CRC32 instructions) is bit-exact; runs where a cross
    compiler and qemu-user exist (apt: gcc-aarch64-linux-gnu qemu-user)."""
    import shutil
    import subprocess
    from pathlib import Path

    cc, runner = "aarch64-linux-gnu-gcc", "qemu-aarch64"
    if shutil.which(cc) is None or shutil.which(runner) is None:
        pytest.skip(f"needs {cc} and {runner} on PATH")
    native = Path(__file__).resolve().parent.parent / "native"
    src = tmp_path / "driver.c"
    src.write_text(DRIVER)
    exe = tmp_path / "driver"
    sources = [str(native / f) for f in ("xxh3.c", "batch.c", "threadpool.c", "crc32.c")]
    subprocess.run([cc, "-static", "-O2", "-I", str(native), str(src), *sources, "-o", str(exe), "-lpthread"],
                   check=True, capture_output=True, timeout=120)
    cases = [(n, s) for n in [*range(0, 40), 63, 64, 65, 1000, 100_003] for s in (0, 0xFFFFFFFF)]
    out = subprocess.run([runner, str(exe)], input="".join(f"{n} {s}\n" for n, s in cases),
                         capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert len(out) == len(cases)
    for (n, s), line in zip(cases, out):
        data = bytes((i * 151 + n * 3) & 255 for i in range(n + 8))[3 : 3 + n]
        results = dict(item.split(":") for item in line.split())
        assert {"1", "3"} <= set(results), (n, line)  # table and the CRC32 instructions
        for impl, c in results.items():
            assert int(c) == zlib.crc32(data, s), (n, s, impl)
