"""Inspect a real QNN context binary: ctxbin vs libQnnSystem (issue 4 target).

    python benchmarks/bench_qnn_inspect.py [--rounds N] [--warm N]

Two real HTP context binaries are made in a temp dir (the tiny and the full
FCN of ``tests/models.py``, lowered by ctxbin and compiled by
``ctxbin.compile.compile_htp`` through libQnnSystem / libQnnHtp; soc_model 60,
htp_arch 75): same graph I/O, binaries of ~0.4 MB and ~67 MB (fp16 weights).

Each side runs in a fresh child process per round (rounds interleaved), timed
inside the child from before its first import to the answer (graphs + I/O
tensors), so the vendor side pays its library load, and ctxbin its imports:

- ``ctxbin read_info``: ``ctxbin.formats.qnn.read_info(path)``;
- ``ctxbin inspect``: ``ctxbin.inspect(path)`` (the CLI's summary);
- ``libQnnSystem``: ``ctxbin.runtime.qnn_system.QnnSystem()`` (cffi import,
  dlopen, ``QnnSystemInterface_getProviders``) then ``binary_info(bytes)``
  (``systemContextCreate``, ``systemContextGetBinaryInfo``, result to Python,
  ``systemContextFree``), the file read into memory as that binding does;
- ``libQnnSystem (mmap)``: the same on a read-only mmap of the file (no read).

Each child then repeats its call ``--warm`` times in the same process (library
loaded, modules imported): the warm numbers. Target: ctxbin <= 1x the vendor
call including its library load, and independent of weight size. Skips, with the reason, when
onnxruntime-qnn is missing.
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

SIDES = ("ctxbin read_info", "ctxbin inspect", "libQnnSystem", "libQnnSystem (mmap)")


def child(side: str, path: str, warm: int) -> None:
    """One side, cold then ``warm`` times; prints JSON (times and what was found).

    Cold time is split: ``base`` (``import ctxbin``: Python packages both sides
    need, numpy included), ``load`` (this side's own modules, and for the
    vendor side cffi, dlopen and the provider table), ``first`` (first call)."""
    t0 = time.perf_counter()
    import ctxbin

    t_base = time.perf_counter()
    if side.startswith("ctxbin"):
        from ctxbin.formats import qnn

        def call() -> object:
            return ctxbin.inspect(path) if side == "ctxbin inspect" else qnn.read_info(path)
    else:
        import mmap
        from pathlib import Path

        from ctxbin.runtime.qnn_system import QnnSystem

        system = QnnSystem()

        def call() -> object:
            if side.endswith("(mmap)"):
                with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    return system.binary_info(m)
            return system.binary_info(Path(path).read_bytes())
    t_load = time.perf_counter()
    result = call()
    t_first = time.perf_counter()
    warm_times = []
    for _ in range(warm):
        t1 = time.perf_counter()
        call()
        warm_times.append(time.perf_counter() - t1)
    if isinstance(result, dict):  # ctxbin.inspect: JSON-able summary
        found = [[g["name"], [[t["name"], t["shape"]] for t in g["inputs"]], [[t["name"], t["shape"]] for t in g["outputs"]]]
                 for g in result["graphs"]]
    else:
        found = [[g.name, [[t.name, list(t.shape)] for t in g.inputs], [[t.name, list(t.shape)] for t in g.outputs]]
                 for g in result.graphs]  # type: ignore[attr-defined]
    print(json.dumps({"cold": t_first - t0, "base": t_base - t0, "load": t_load - t_base, "first": t_first - t_load,
                      "warm": warm_times, "found": found}))


def make_binaries(d: str) -> dict[str, str]:
    from ctxbin.compile import compile_htp
    from ctxbin.convert import convert
    from tests.models import build_fcn, save_with_external_data

    out = {}
    for key, tiny in (("small", True), ("large", False)):
        onnx_path = os.path.join(d, f"fcn_{key}.onnx")
        save_with_external_data(build_fcn(256, 384, tiny=tiny), onnx_path)
        dlc_path = os.path.join(d, f"fcn_{key}.dlc")
        convert(onnx_path, dlc_path, name="fcn", route="ctxbin")
        out[key] = os.path.join(d, f"fcn_{key}.bin")
        compile_htp([dlc_path], ["fcn"], out[key], soc_model=60, htp_arch=75)
    return out


def main() -> int:
    import argparse
    import statistics
    import subprocess
    import tempfile

    sys.path.insert(0, ROOT)
    from tests.dlc_oracle import qnn_missing_reason

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7, help="fresh child processes per side and file")
    ap.add_argument("--warm", type=int, default=20, help="in-process repeats inside each child")
    args = ap.parse_args()
    reason = qnn_missing_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-qnn-inspect-", dir=os.environ.get("CTXBIN_BENCH_DIR")) as d:
        bins = make_binaries(d)
        env = {**os.environ, "PYTHONPATH": ROOT}
        cold: dict[tuple[str, str], list[float]] = {}  # in the child: imports + load + first call
        own: dict[tuple[str, str], list[float]] = {}  # load + first call (without `import ctxbin`)
        base: list[float] = []
        warm: dict[tuple[str, str], list[float]] = {}
        found: dict[tuple[str, str], object] = {}
        for _ in range(args.rounds):
            for key, path in bins.items():
                for side in SIDES:
                    r = subprocess.run([sys.executable, __file__, "--child", side, path, str(args.warm)],
                                       check=True, capture_output=True, text=True, env=env, timeout=300)
                    m = json.loads(r.stdout.strip().splitlines()[-1])
                    cold.setdefault((key, side), []).append(m["cold"])
                    own.setdefault((key, side), []).append(m["load"] + m["first"])
                    base.append(m["base"])
                    warm.setdefault((key, side), []).extend(m["warm"])
                    found[(key, side)] = m["found"]

        def ms(ts: list[float]) -> str:
            return f"{min(ts) * 1e3:.2f} / {statistics.median(ts) * 1e3:.2f}"

        def ratio(ts: list[float], ref: list[float]) -> str:
            return f"{min(ts) / min(ref):.2f}x / {statistics.median(ts) / statistics.median(ref):.2f}x"

        print(f"{args.rounds} rounds (fresh child per side and round), {args.warm} warm repeats per child; "
              f"best / median ms; `import ctxbin` (numpy included, both sides) took {ms(base)} ms")
        print("| binary | bytes | side | cold: import ctxbin + load + first call | load + first call | "
              "warm call | x libQnnSystem: cold / load+call / warm (best) |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for key, path in bins.items():
            ref = (key, "libQnnSystem")
            for side in SIDES:
                k = (key, side)
                print(f"| {key} | {os.path.getsize(path):,} | {side} | {ms(cold[k])} | {ms(own[k])} | "
                      f"{ms(warm[k])} | {min(cold[k]) / min(cold[ref]):.2f}x / {min(own[k]) / min(own[ref]):.2f}x / "
                      f"{min(warm[k]) / min(warm[ref]):.2f}x |")
        agree = all(found[(k, s)] == found[(k, "libQnnSystem")] for k in bins for s in SIDES)
        print(f"graphs and I/O (names, shapes) agree between ctxbin and libQnnSystem: {agree}")
        for side in SIDES:
            print(f"{side}: large / small binary (best / median): cold {ratio(cold[('large', side)], cold[('small', side)])}, "
                  f"load + first call {ratio(own[('large', side)], own[('small', side)])}, "
                  f"warm {ratio(warm[('large', side)], warm[('small', side)])}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
