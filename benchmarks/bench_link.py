"""Link the two FCN variants (same ~130 MB of weights, two input shapes) into one .ctxbin.

    python benchmarks/bench_link.py

For inputs given as ONNX with external data and as .ctxbin, each link runs in
a fresh child process (load both, link by name+content, save) and is compared
in the same run with ``shutil.copyfile`` of the output file. fsync is left out
of both (the benchmark replaces ``os.fsync`` with a no-op in the child).
Targets: output <= 1.01x the unique weight bytes; link <= 1.5x the copy;
peak RSS growth <= largest tensor + 64 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def _status_mb(field: str) -> float:
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its
    # parent's RSS at fork, VmHWM belongs to the exec'd process alone
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(a: str, b: str, out: str) -> None:
    os.fsync = lambda fd: None  # the target excludes fsync
    import ctxbin

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    c, report = ctxbin.link([ctxbin.load(a), ctxbin.load(b)], names=["landscape", "portrait"])
    ctxbin.save(c, out)
    dt = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    largest = max(t.nbytes for g in c.graphs for t in g.weights)
    print(json.dumps({"seconds": dt, "rss_base_mb": base, "rss_peak_mb": peak, "largest_tensor": largest,
                      "unique_bytes": report.bytes_after, "before_bytes": report.bytes_before}))


def main() -> None:
    from tests.models import build_fcn, save_with_external_data

    import ctxbin

    with tempfile.TemporaryDirectory(dir=os.environ.get("CTXBIN_BENCH_DIR")) as d:
        srcs = {}
        for name, (h, w) in {"landscape": (256, 384), "portrait": (384, 256)}.items():
            p = os.path.join(d, f"fcn_{name}.onnx")
            save_with_external_data(build_fcn(h, w), p)
            cp = os.path.join(d, f"fcn_{name}.ctxbin")
            ctxbin.save(ctxbin.from_onnx(p, name=name), cp)
            srcs[name] = (p, cp)
        for kind, idx in (("onnx", 0), ("ctxbin", 1)):
            out = os.path.join(d, f"linked_from_{kind}.ctxbin")
            r = subprocess.run(
                [sys.executable, __file__, "--child", srcs["landscape"][idx], srcs["portrait"][idx], out],
                check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
            )
            m = json.loads(r.stdout.strip().splitlines()[-1])
            copy_t = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                shutil.copyfile(out, out + ".copy")
                copy_t = min(copy_t, time.perf_counter() - t0)
                os.unlink(out + ".copy")
            size = os.path.getsize(out)
            growth = m["rss_peak_mb"] - m["rss_base_mb"]
            budget = m["largest_tensor"] / 2**20 + 64
            print(f"from {kind:6}: output {size / 2**20:7.1f} MiB = {size / m['unique_bytes']:.4f}x unique weights "
                  f"(target <= 1.01); link {m['seconds']:.3f} s vs copyfile {copy_t:.3f} s = "
                  f"{m['seconds'] / copy_t:.2f}x (target <= 1.5); peak RSS growth {growth:.0f} MiB vs budget "
                  f"{budget:.0f} MiB (largest tensor + 64 MiB); weights before link {m['before_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
