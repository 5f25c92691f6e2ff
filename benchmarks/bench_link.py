"""Link the two FCN variants (same ~130 MB of weights, two input shapes) into one .ctxbin.

    python benchmarks/bench_link.py [--rounds N]

For inputs given as ONNX with external data and as .ctxbin, each link runs in
a fresh child process (load both, link by name+content, save) and is compared
in the same run with ``shutil.copyfile`` of the output file (rounds
interleave the two; best and median are printed). fsync is left out of both
(the benchmark replaces ``os.fsync`` with a no-op in the child). Importing
the format modules (``onnx`` among them) happens before the clock starts and
is printed separately: it is the interpreter's start-up, not linking.
Targets: output <= 1.01x the unique weight bytes; link <= 1.5x the copy;
peak RSS growth <= largest tensor + 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
    t0 = time.perf_counter()
    import ctxbin
    import ctxbin.formats

    for fmt in ctxbin.formats.FORMATS:
        ctxbin.formats.module(fmt)
    imports = time.perf_counter() - t0

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    inputs = [ctxbin.load(a), ctxbin.load(b)]
    t1 = time.perf_counter()
    c, report = ctxbin.link(inputs, names=["landscape", "portrait"])
    t2 = time.perf_counter()
    ctxbin.save(c, out)
    t3 = time.perf_counter()
    peak = _status_mb("VmHWM")
    largest = max(t.nbytes for g in c.graphs for t in g.weights)
    print(json.dumps({"seconds": t3 - t0, "load": t1 - t0, "link": t2 - t1, "save": t3 - t2, "imports": imports,
                      "rss_base_mb": base, "rss_peak_mb": peak, "largest_tensor": largest,
                      "unique_bytes": report.bytes_after, "before_bytes": report.bytes_before}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

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
            runs, copies = [], []
            for r in range(args.rounds):
                out = os.path.join(d, f"linked_from_{kind}_{r}.ctxbin")
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", srcs["landscape"][idx], srcs["portrait"][idx], out],
                    check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
                )
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                t0 = time.perf_counter()
                shutil.copyfile(out, out + ".copy")
                copies.append(time.perf_counter() - t0)
                os.unlink(out + ".copy")
                size = os.path.getsize(out)
                os.unlink(out)
            m = min(runs, key=lambda x: x["seconds"])
            link_t = [x["seconds"] for x in runs]
            best, med = min(link_t), statistics.median(link_t)
            cbest, cmed = min(copies), statistics.median(copies)
            growth = max(x["rss_peak_mb"] - x["rss_base_mb"] for x in runs)
            budget = m["largest_tensor"] / 2**20 + 64
            print(f"from {kind:6}: output {size / 2**20:7.1f} MiB = {size / m['unique_bytes']:.4f}x unique weights "
                  f"(target <= 1.01); link best/median {best:.3f}/{med:.3f} s vs copyfile {cbest:.3f}/{cmed:.3f} s "
                  f"= {best / cbest:.2f}x/{med / cmed:.2f}x (target <= 1.5); best run: load {m['load'] * 1e3:.0f} ms, "
                  f"link {m['link'] * 1e3:.0f} ms, save {m['save'] * 1e3:.0f} ms (+ {m['imports'] * 1e3:.0f} ms "
                  f"importing format modules, not counted); peak RSS growth {growth:.0f} MiB vs budget "
                  f"{budget:.0f} MiB (largest tensor + 64 MiB); weights before link {m['before_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
