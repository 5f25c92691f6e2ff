"""Hashing throughput: ctxbin's C core against its peers, measured in one run.

1. One large tensor: ctxbin.hashing.xxh3_64 (and each compiled SIMD loop) vs
   python-xxhash's xxh3_64 vs the memory read rate (numpy sum of the same
   buffer viewed as uint64).
2. Many small tensors in one buffer: ctxbin.hashing.hash_many (one call, C
   thread pool) vs a Python loop of xxhash.xxh3_64_intdigest over numpy views,
   with the read rate of the buffer (numpy sum, one thread) for scale: when
   hash_many takes about as long as reading its bytes it is memory bound.
3. The dedup plan for the same small tensors: C core vs the Python fallback.
4. CRC-32 of the large tensor: ctxbin.hashing.crc32 (and each compiled
   implementation) vs zlib.crc32 (the CRC of ZIP entries, e.g. DLC weights),
   and XXH3 + CRC-32 in one pass (hashing.hash_and_crc, one thread) vs the
   two in turn.

Rounds interleave the contenders so that load from other processes hits them
alike; the best and the median of the rounds are printed, with ratios. No
pass/fail: this prints numbers.

    PYTHONPATH=. python benchmarks/bench_hash.py [--size-mb 256] [--count 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable

import numpy as np
import xxhash

from ctxbin import dedup, hashing

Timings = dict[str, list[tuple[float, float]]]


def run_rounds(contenders: dict[str, Callable[[], object]], rounds: int) -> Timings:
    """Per contender: ``(wall, cpu)`` seconds of each round. CPU time (all
    threads of this process) is not stretched when other processes take the
    cores, so it tells contention apart from real cost on a shared machine."""
    times: Timings = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def report(title: str, times: Timings, nbytes: int, baseline: str) -> None:
    """Best and median wall time, best CPU time, throughput, ratio to ``baseline``
    (all from the best wall time)."""
    print(f"\n## {title}")
    print(f"{'contender':<36}{'best ms':>9}{'median ms':>11}{'best CPU ms':>13}"
          f"{'GB/s':>8}  x {baseline}")
    base_best = min(w for w, _ in times[baseline])
    for name, ts in times.items():
        walls = [w for w, _ in ts]
        best = min(walls)
        print(
            f"{name:<36}{best * 1e3:>9.2f}{statistics.median(walls) * 1e3:>11.2f}"
            f"{min(c for _, c in ts) * 1e3:>13.2f}{nbytes / best / 1e9:>8.2f}  {base_best / best:.2f}"
        )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_large(size_mb: int, rounds: int) -> None:
    words = np.random.default_rng(0).integers(0, 2**63, (size_mb << 20) // 8, dtype=np.uint64)
    data = words.view(np.uint8)
    contenders: dict[str, Callable[[], object]] = {
        "numpy add.reduce (memory read)": lambda: np.add.reduce(words),
        "python-xxhash xxh3_64": lambda: xxhash.xxh3_64_intdigest(data),
        f"ctxbin xxh3_64 ({hashing.simd_impl()})": lambda: hashing.xxh3_64(data),
    }
    core = hashing.native_core()
    if core is not None:
        ffi, lib = core.ffi, core.lib
        ptr, out = ffi.from_buffer(data), ffi.new("uint64_t *")
        mask = lib.ctxbin_impls_available()
        for impl in range(1, 6):
            if mask & (1 << impl):
                name = ffi.string(lib.ctxbin_impl_name(impl)).decode()
                contenders[f"ctxbin C loop: {name}"] = (
                    lambda impl=impl: lib.ctxbin_xxh3_64_impl(ptr, data.nbytes, 0, impl, out))
    assert hashing.xxh3_64(data) == xxhash.xxh3_64_intdigest(data)
    times = run_rounds(contenders, rounds)
    report(f"One {size_mb} MiB tensor", times, data.nbytes, "python-xxhash xxh3_64")
    ours = min(times[f"ctxbin xxh3_64 ({hashing.simd_impl()})"])
    print(f"ctxbin / python-xxhash throughput: {min(times['python-xxhash xxh3_64'])[0] / ours[0]:.2f}x")
    print(f"ctxbin / memory read rate:         {min(times['numpy add.reduce (memory read)'])[0] / ours[0]:.2f}x")


def bench_crc(size_mb: int, rounds: int) -> None:
    data = np.random.default_rng(1).integers(0, 256, size_mb << 20, dtype=np.uint8)
    contenders: dict[str, Callable[[], object]] = {
        "zlib.crc32": lambda: zlib.crc32(data),
        f"ctxbin crc32 ({hashing.crc32_impl()})": lambda: hashing.crc32(data),
        "xxh3_64 then crc32 (ctxbin)": lambda: (hashing.xxh3_64(data), hashing.crc32(data)),
        "hash_and_crc (one pass, 1 thread)": lambda: hashing.hash_and_crc([data], threads=1),
    }
    core = hashing.native_core()
    if core is not None:
        ffi, lib = core.ffi, core.lib
        ptr, out = ffi.from_buffer(data), ffi.new("uint32_t *")
        mask = lib.ctxbin_crc32_impls_available()
        for impl in range(1, 4):
            if mask & (1 << impl):
                name = ffi.string(lib.ctxbin_crc32_impl_name(impl)).decode()
                contenders[f"ctxbin C CRC: {name}"] = (
                    lambda impl=impl: lib.ctxbin_crc32_impl(0, ptr, data.nbytes, impl, out))
    assert hashing.crc32(data) == zlib.crc32(data)
    times = run_rounds(contenders, rounds)
    report(f"CRC-32 of one {size_mb} MiB tensor", times, data.nbytes, "zlib.crc32")
    ours = min(times[f"ctxbin crc32 ({hashing.crc32_impl()})"])
    print(f"ctxbin / zlib.crc32 throughput: {min(times['zlib.crc32'])[0] / ours[0]:.2f}x")


def bench_small(count: int, max_len: int, rounds: int, threads: int) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, max_len + 1, count).astype(np.uint64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.uint64)
    base = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
    pairs = list(zip(offsets.tolist(), lengths.tolist()))

    def python_loop() -> list[int]:
        return [xxhash.xxh3_64_intdigest(base[o : o + n]) for o, n in pairs]

    expected = np.array(python_loop(), np.uint64)
    np.testing.assert_array_equal(hashing.hash_many(base, offsets, lengths), expected)
    words = base[: base.size // 8 * 8].view(np.uint64)
    contenders: dict[str, Callable[[], object]] = {
        "python loop xxhash on numpy views": python_loop,
        "numpy add.reduce (memory read)": lambda: np.add.reduce(words),
        "ctxbin hash_many, 1 thread": lambda: hashing.hash_many(base, offsets, lengths, threads=1),
        f"ctxbin hash_many, {threads} threads": lambda: hashing.hash_many(base, offsets, lengths, threads=threads),
    }
    times = run_rounds(contenders, 3 * rounds)  # cheap rounds: more of them beat the noise
    report(f"{count} tensors of 0..{max_len} bytes in one buffer", times, base.nbytes,
           "python loop xxhash on numpy views")

    views = [base[o : o + n] for o, n in pairs]
    names = [f"t{i % 1000}" for i in range(count)]
    hashes = hashing.hash_many(base, offsets, lengths)

    def python_plan() -> object:
        os.environ["CTXBIN_NO_NATIVE"] = "1"
        try:
            return dedup.plan(names, views, hashes)
        finally:
            del os.environ["CTXBIN_NO_NATIVE"]

    plan_contenders: dict[str, Callable[[], object]] = {
        "dedup plan, python fallback": python_plan,
        "dedup plan, C core": lambda: dedup.plan(names, views, hashes),
        "dedup plan + hashing, C core": lambda: dedup.plan(names, views),
    }
    np.testing.assert_array_equal(python_plan(), dedup.plan(names, views, hashes))
    times = run_rounds(plan_contenders, max(3, rounds // 2))
    report(f"dedup plan over the same {count} tensors (name+content)", times, base.nbytes,
           "dedup plan, python fallback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=256, help="large tensor size (MiB)")
    parser.add_argument("--count", type=int, default=100_000, help="number of small tensors")
    parser.add_argument("--max-len", type=int, default=1024, help="largest small tensor (bytes)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per contender")
    parser.add_argument("--threads", type=int, default=None, help="hash_many threads (default: cores)")
    args = parser.parse_args()
    threads = args.threads or max(1, min(len(os.sched_getaffinity(0)), 8))
    print(f"# ctxbin hashing benchmark\ncpu: {cpu_name()}, {os.cpu_count()} logical cores; "
          f"python {platform.python_version()}, numpy {np.__version__}, xxhash {xxhash.VERSION}; "
          f"ctxbin C core: {'yes' if hashing.native_available() else 'NO (fallback)'}, "
          f"SIMD: {hashing.simd_impl()}, CRC-32: {hashing.crc32_impl()}, zlib {zlib.ZLIB_RUNTIME_VERSION}")
    bench_large(args.size_mb, args.rounds)
    bench_small(args.count, args.max_len, args.rounds, threads)
    bench_crc(args.size_mb, args.rounds)


if __name__ == "__main__":
    main()
