"""XXH3-64 hashing (ctxbin.hashing and the C core) against the xxhash package.

Every test that goes through the public API runs twice: on the C core and on
the pure-Python fallback (CTXBIN_NO_NATIVE=1); tests of the C core's own entry
points (SIMD variants, status codes) skip when the extension is not built.
"""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

xxhash = pytest.importorskip("xxhash")

from ctxbin import hashing  # noqa: E402
from ctxbin.errors import FormatError  # noqa: E402
from tests.native_paths import both_paths, needs_native

U64_MAX = (1 << 64) - 1
SEEDS = [0, 1, 0x9E3779B185EBCA87, U64_MAX, 0x0000000100000000]
# Every path boundary of XXH3-64: 0, 1-3, 4-8, 9-16, 17-128 (and its 32-byte
# rounds), 129-240, and > 240 around stripes (64) and blocks (1024).
BOUNDARY_SIZES = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 97, 127, 128,
    129, 143, 144, 239, 240, 241, 255, 256, 257, 1023, 1024, 1025, 1087, 1088, 1089,
    2047, 2048, 2049, 4096 + 17, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1,
]


def ref(data: bytes | memoryview, seed: int = 0) -> int:
    return xxhash.xxh3_64_intdigest(bytes(data), seed)


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# ---- single buffers ----


@pytest.mark.parametrize("seed", SEEDS)
def test_boundary_sizes(path: str, seed: int) -> None:
    for n in BOUNDARY_SIZES:
        data = random_bytes(n, n)
        assert hashing.xxh3_64(data, seed) == ref(data, seed), (n, seed)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=10_000), seed=st.integers(0, U64_MAX))
def test_random_inputs_both_paths(data: bytes, seed: int) -> None:
    expected = ref(data, seed)
    for _ in both_paths():
        assert hashing.xxh3_64(data, seed) == expected


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 10_000),
    fill=st.integers(0, 2**32 - 1),
    seed=st.integers(0, U64_MAX),
)
def test_random_sizes_all_simd_paths(size: int, fill: int, seed: int) -> None:
    """Each compiled accumulate loop (scalar, SSE2, AVX2, NEON) is bit-exact."""
    if hashing._native_core is None:
        pytest.skip("C core not built")
    data = random_bytes(size, fill)
    expected = ref(data, seed)
    for impl in available_impls():
        assert c_hash(data, seed, impl) == expected, (size, seed, impl)


def test_large_unaligned(path: str) -> None:
    data = random_bytes(5 * 1024 * 1024 + 77, 7)
    view = memoryview(data)
    for start in (0, 1, 3, 7, 61):
        part = view[start : start + 3 * 1024 * 1024 + 5]
        for seed in (0, 12345):
            assert hashing.xxh3_64(part, seed) == ref(part, seed)


def test_buffer_kinds(path: str, tmp_path) -> None:
    payload = random_bytes(4000, 3)
    arr = np.frombuffer(payload, np.float32).reshape(10, 100)
    expected = ref(payload)
    assert hashing.xxh3_64(payload) == expected
    assert hashing.xxh3_64(bytearray(payload)) == expected
    assert hashing.xxh3_64(memoryview(payload)) == expected
    assert hashing.xxh3_64(arr) == expected
    assert hashing.xxh3_64(np.float64(2.5)) == ref(np.float64(2.5).tobytes())
    f = tmp_path / "blob.bin"
    f.write_bytes(payload)
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert hashing.xxh3_64(mm) == expected
        assert list(hashing.hash_many(mm, [0, 100], [4000, 50])) == [
            expected, ref(payload[100:150])]
        # the buffer export ended with the call: the mapping can be closed
    assert mm.closed


def test_bad_arguments(path: str) -> None:
    with pytest.raises(TypeError, match="buffer protocol"):
        hashing.xxh3_64("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contiguous"):
        hashing.xxh3_64(np.arange(10, dtype=np.int32)[::2])
    assert hashing.xxh3_64(b"abc", np.uint64(U64_MAX)) == ref(b"abc", U64_MAX)
    for seed in (-1, 1 << 64, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            hashing.xxh3_64(b"abc", seed)  # type: ignore[arg-type]


# ---- batches ----


def layout(n: int, max_len: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """n ranges with unaligned starts and gaps inside one buffer."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, max_len + 1, n)
    gaps = rng.integers(0, 5, n)
    offs = np.cumsum(gaps + np.concatenate([[0], lens[:-1]]))
    base = random_bytes(int(offs[-1] + lens[-1]) + 3, seed) if n else b""
    return offs, lens, base


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_hash_many_matches_items(path: str, threads: int) -> None:
    offs, lens, base = layout(3000, 2500, threads)  # ~3.7 MB: enough to use the threads
    for seed in (0, U64_MAX):
        got = hashing.hash_many(base, offs, lens, seed=seed, threads=threads)
        assert got.dtype == np.uint64 and got.shape == (3000,)
        expected = [ref(base[o : o + n], seed) for o, n in zip(offs, lens)]
        assert got.tolist() == expected


def test_hash_many_few_large_items_threads(path: str) -> None:
    base = random_bytes(6 * 1024 * 1024, 11)
    offs = [0, 1, 2 * 1024 * 1024 + 3, 5 * 1024 * 1024]
    lens = [2 * 1024 * 1024, 2 * 1024 * 1024 + 1, 1024 * 1024 + 7, 1024 * 1024]
    got = hashing.hash_many(base, np.array(offs, np.uint64), np.array(lens, np.int32), threads=4)
    assert got.tolist() == [ref(base[o : o + n]) for o, n in zip(offs, lens)]


def test_hash_many_edge_cases(path: str) -> None:
    assert hashing.hash_many(b"", [], []).shape == (0,)
    assert hashing.hash_many(b"", [0], [0]).tolist() == [ref(b"")]
    data = random_bytes(300)
    assert hashing.hash_many(data, [300, 0], [0, 300]).tolist() == [ref(b""), ref(data)]


@pytest.mark.parametrize(
    ("offsets", "lengths", "offset"),
    [
        ([0, 10], [10, 91], 10),  # one byte past the end
        ([101], [0], 101),  # starts past the end
        ([5], [U64_MAX], 5),  # a hostile declared size
        ([U64_MAX], [1], U64_MAX),
    ],
)
def test_hash_many_rejects_out_of_range(path: str, offsets, lengths, offset: int) -> None:
    offs = np.array(offsets, np.uint64)
    lens = np.array(lengths, np.uint64)
    with pytest.raises(FormatError) as err:
        hashing.hash_many(bytes(100), offs, lens)
    assert err.value.offset == offset
    assert "100-byte buffer" in str(err.value)


def test_hash_many_rejects_bad_columns(path: str) -> None:
    with pytest.raises(FormatError, match="negative offset"):
        hashing.hash_many(bytes(10), [-1], [1])
    with pytest.raises(FormatError, match="negative length"):
        hashing.hash_many(bytes(10), [0], [-5])
    with pytest.raises(ValueError, match="2 offsets but 1 lengths"):
        hashing.hash_many(bytes(10), [0, 1], [1])
    with pytest.raises(ValueError, match="integers"):
        hashing.hash_many(bytes(10), [0.5], [1])
    with pytest.raises(ValueError, match="one-dimensional"):
        hashing.hash_many(bytes(10), [[0]], [[1]])
    for threads in (0, 1.5, "2"):
        with pytest.raises(ValueError, match="threads"):
            hashing.hash_many(bytes(10), [0], [1], threads=threads)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_hash_buffers(path: str, threads: int) -> None:
    rng = np.random.default_rng(threads)
    buffers = [random_bytes(int(n), i) for i, n in enumerate(rng.integers(0, 5000, 600))]
    buffers += [np.arange(1000, dtype=np.float32), bytearray(b"xyz"), memoryview(b""), b""]
    got = hashing.hash_buffers(buffers, seed=99, threads=threads)
    assert got.tolist() == [ref(memoryview(b).cast("B"), 99) for b in buffers]
    assert hashing.hash_buffers([]).shape == (0,)


@needs_native
def test_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C core and the fallback give identical arrays for the same batch."""
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    offs, lens, base = layout(500, 3000, 5)
    native = hashing.hash_many(base, offs, lens, seed=3)
    monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
    np.testing.assert_array_equal(hashing.hash_many(base, offs, lens, seed=3), native)


@pytest.mark.parametrize("seed", [0, 0x9E3779B185EBCA87])
def test_hash_many_boundary_lengths(path: str, seed: int) -> None:
    """Every path boundary inside one batch (the batch picks its own SIMD loop
    for inputs up to 16 KiB), items back to back at odd offsets, then again in
    reverse order and overlapping: the batch asks for bytes ahead assuming
    items in order, which must not change any hash."""
    lens = np.array(BOUNDARY_SIZES * 3, np.uint64)
    offs = np.concatenate([[1], 1 + np.cumsum(lens[:-1])]).astype(np.uint64)
    base = random_bytes(int(offs[-1] + lens[-1]) + 1, seed & 0xFF)
    expected = [ref(base[o : o + n], seed) for o, n in zip(offs.tolist(), lens.tolist())]
    for threads in (1, 2):
        assert hashing.hash_many(base, offs, lens, seed=seed, threads=threads).tolist() == expected
    back = offs[::-1] // 2  # reversed, and overlapping each other
    expected = [ref(base[o : o + n], seed) for o, n in zip(back.tolist(), lens[::-1].tolist())]
    assert hashing.hash_many(base, back, lens[::-1], seed=seed).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 1100)), max_size=60),
    seed=st.integers(0, U64_MAX),
    threads=st.integers(1, 3),
)
def test_hash_many_any_layout(items: list[tuple[int, int]], seed: int, threads: int) -> None:
    """Arbitrary (offset, length) pairs inside one buffer, any order."""
    base = random_bytes(6200, len(items))
    offs = np.array([o for o, _ in items], np.uint64)
    lens = np.array([n for _, n in items], np.uint64)
    expected = [ref(base[o : o + n], seed) for o, n in items]
    for _ in both_paths():
        assert hashing.hash_many(base, offs, lens, seed=seed, threads=threads).tolist() == expected


def test_hash_many_at_the_end_of_a_mapping(path: str) -> None:
    """Items that end with the last byte of a mapping (the page after it is not
    mapped): looking ahead past it must not fault."""
    page = mmap.PAGESIZE
    with mmap.mmap(-1, 3 * page) as mm:
        mm[:] = random_bytes(3 * page, 5)
        data = bytes(mm)
        lens = [1, 16, 17, 129, 241, 1024, 1025, 2 * page + 7]
        offs = [len(data) - n for n in lens]
        got = hashing.hash_many(mm, offs, lens)
        assert got.tolist() == [ref(data[o:]) for o in offs]


# ---- the C core's own entry points ----


def available_impls() -> list[int]:
    lib = hashing._native_core.lib
    mask = lib.ctxbin_impls_available()
    return [i for i in range(1, 6) if mask & (1 << i)]


def c_hash(data: bytes, seed: int, impl: int) -> int:
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    out = ffi.new("uint64_t *")
    assert lib.ctxbin_xxh3_64_impl(data, len(data), seed, impl, out) == lib.CTXBIN_OK
    return int(out[0])


@needs_native
@pytest.mark.parametrize("seed", SEEDS)
def test_each_simd_path_at_boundaries(seed: int) -> None:
    impls = available_impls()
    assert 1 in impls  # scalar always exists
    for n in BOUNDARY_SIZES + [100_003]:
        data = random_bytes(n, n + 1)
        expected = ref(data, seed)
        for impl in impls:
            assert c_hash(data, seed, impl) == expected, (n, seed, impl)


@needs_native
def test_simd_dispatch_and_status_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    assert hashing.simd_impl() in {"scalar", "sse2", "avx2", "avx2+avx512", "neon"}
    out = ffi.new("uint64_t *")
    missing = [i for i in range(1, 6) if i not in available_impls()]
    for impl in missing:  # e.g. NEON on x86_64
        assert lib.ctxbin_xxh3_64_impl(b"x" * 300, 300, 0, impl, out) == lib.CTXBIN_EUNSUPPORTED
    assert lib.ctxbin_xxh3_64_impl(b"x", 1, 0, 99, out) == lib.CTXBIN_EINVAL
    assert lib.ctxbin_xxh3_64_impl(ffi.NULL, 5, 0, 0, out) == lib.CTXBIN_EINVAL
    for code in (lib.CTXBIN_OK, lib.CTXBIN_EINVAL, lib.CTXBIN_ERANGE, lib.CTXBIN_ENOMEM,
                 lib.CTXBIN_EUNSUPPORTED, 12345):
        assert ffi.string(lib.ctxbin_strerror(code))


@needs_native
@needs_native
@settings(max_examples=60, deadline=None)
@given(
    size=st.sampled_from([0, 17, 240, 241, 1023, 1024, 1025, 262_144, 262_145, 263_169, 600_001]),
    seed=st.sampled_from([0, 1, 77, U64_MAX]),
    flips=st.lists(st.floats(0, 1, exclude_max=True), max_size=3),
)
def test_c_hash_groups_streaming_is_bit_exact(size: int, seed: int, flips: list[float]) -> None:
    """The one-pass group hash (state resumed chunk by chunk, copied where a
    member diverges) equals xxhash for every member, at chunk and block
    boundaries and with seeds; copies are found by their bytes."""
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    base = bytes((i * 131 + size) & 255 for i in range(size))
    members = [base, base]
    for f in flips:  # one member differing at one position each
        if size:
            at = int(f * size)
            members.append(base[:at] + bytes([base[at] ^ 0x5A]) + base[at + 1 :])
    members.append(members[-1])
    n = len(members)
    held = [ffi.from_buffer(m) for m in members]
    hashes, canon = ffi.new("uint64_t[]", n), ffi.new("int64_t[]", n)
    status = lib.ctxbin_hash_groups(n, ffi.new("const void *[]", held), ffi.new("uint64_t[]", [size] * n),
                                    ffi.new("uint64_t[]", list(range(n))), n, ffi.new("uint64_t[]", [0, n]), 1,
                                    ffi.NULL, seed, hashes, canon, 2)
    assert status == lib.CTXBIN_OK
    assert [hashes[i] for i in range(n)] == [ref(m, seed) for m in members]
    assert [canon[i] for i in range(n)] == [members.index(m) for m in members]


def test_c_hash_many_checks_ranges_itself() -> None:
    """The C entry point refuses ranges past the buffer even if the caller did not check."""
    ffi, lib = hashing._native_core.ffi, hashing._native_core.lib
    offs = ffi.new("uint64_t[]", [0, 1 << 63])
    lens = ffi.new("uint64_t[]", [4, (1 << 63) + 10])
    out = ffi.new("uint64_t[]", 2)
    assert lib.ctxbin_hash_many(b"abcdefgh", 8, offs, lens, 2, 0, out, 2) == lib.CTXBIN_ERANGE
    assert lib.ctxbin_hash_many(ffi.NULL, 8, offs, lens, 1, 0, out, 1) == lib.CTXBIN_EINVAL


# ---- the C sources built as a plain program: other ISAs and compilers ----

DRIVER = r"""
#include "ctxbin_core.h"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    unsigned long long len, seed;
    while (scanf("%llu %llu", &len, &seed) == 2) {
        unsigned char *buf = malloc(len + 1);
        for (unsigned long long i = 0; i < len; i++) buf[i] = (unsigned char)((i * 131u + len * 7u) & 255u);
        unsigned mask = ctxbin_impls_available();
        for (int impl = 1; impl <= 5; impl++) {
            uint64_t h;
            if ((mask & (1u << impl)) && ctxbin_xxh3_64_impl(buf, len, seed, impl, &h) == CTXBIN_OK)
                printf("%d:%llu ", impl, (unsigned long long)h);
        }
        /* the streaming hash of ctxbin_hash_groups (best implementation), as "0" */
        const void *ptrs[2] = {buf, buf};
        uint64_t lens[2] = {len, len}, members[2] = {1, 0}, groups[2] = {0, 2}, hs[2];
        int64_t canon[2];
        if (ctxbin_hash_groups(2, ptrs, lens, members, 2, groups, 1, NULL, seed, hs, canon, 2) == CTXBIN_OK &&
            hs[1] == hs[0] && canon[0] == 1 && canon[1] == 1)
            printf("0:%llu ", (unsigned long long)hs[0]);
        printf("\n");
        free(buf);
    }
    return 0;
}
"""


def driver_data(n: int) -> bytes:
    return bytes((i * 131 + n * 7) & 255 for i in range(n))


def run_driver(tmp_path, cc: list[str], runner: list[str], extra: list[str]) -> dict[int, set[int]]:
    """Compile the C core with a tiny driver, hash every boundary size, check all
    results against xxhash; return {size: implementations seen}."""
    import shutil
    import subprocess
    from pathlib import Path

    native = Path(__file__).resolve().parent.parent / "native"
    if shutil.which(cc[0]) is None or (runner and shutil.which(runner[0]) is None):
        pytest.skip(f"needs {cc[0]}{' and ' + runner[0] if runner else ''} on PATH")
    src = tmp_path / "driver.c"
    src.write_text(DRIVER)
    exe = tmp_path / "driver"
    sources = [str(native / f) for f in ("xxh3.c", "batch.c", "threadpool.c", "dedup.c", "groups.c", "crc32.c")]
    subprocess.run(
        [*cc, "-O2", "-I", str(native), *extra, str(src), *sources, "-o", str(exe), "-lpthread"],
        check=True, capture_output=True, timeout=120,
    )
    cases = [(n, s) for n in BOUNDARY_SIZES + [100_003] for s in (0, 77, U64_MAX)]
    stdin = "".join(f"{n} {s}\n" for n, s in cases)
    out = subprocess.run([*runner, str(exe)], input=stdin, capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    seen: dict[int, set[int]] = {}
    assert len(out) == len(cases)
    for (n, s), line in zip(cases, out):
        results = dict(item.split(":") for item in line.split())
        assert results, (n, s)
        for impl, h in results.items():
            assert int(h) == ref(driver_data(n), s), (n, s, impl)
        seen.setdefault(n, set()).update(int(i) for i in results)
    return seen


def test_portable_128bit_multiply(tmp_path) -> None:
    """Without a 128-bit integer type (e.g. 32-bit targets) the portable
    multiply runs instead; it must give the same hashes."""
    seen = run_driver(tmp_path, ["cc"], [], ["-U__SIZEOF_INT128__", "-Wno-builtin-macro-redefined"])
    assert all({0, 1} <= impls for impls in seen.values())


def test_neon_under_qemu(tmp_path) -> None:
    """The aarch64 build (NEON loop) is bit-exact; runs where a cross compiler
    and qemu-user exist (apt: gcc-aarch64-linux-gnu qemu-user)."""
    seen = run_driver(tmp_path, ["aarch64-linux-gnu-gcc", "-static"], ["qemu-aarch64"], [])
    assert all(impls == {0, 1, 4} for impls in seen.values())  # streaming, scalar, NEON


@needs_native
def test_batch_call_releases_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other Python threads keep running while the C core hashes."""
    import threading

    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    base = bytes(16 << 20)
    ticks = [0]
    during: list[int] = []
    done = threading.Event()

    def worker() -> None:
        before = ticks[0]
        hashing.hash_many(base, [0] * 16, [len(base)] * 16, threads=1)  # ~256 MB of work
        during.append(ticks[0] - before)
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        ticks[0] += 1
    t.join()
    assert during[0] > 0  # the main thread advanced while the worker was in C
