"""Link the two FCN variants (same ~130 MB of weights, two input shapes) into one .ctxbin.

    python benchmarks/bench_link.py [--rounds N]

For inputs given as ONNX with external data and as .ctxbin, each link runs in
a fresh child process (load both, link by name+content, write) and is
compared in the same run with ``shutil.copyfile`` of the output file (rounds
interleave them; best and median are printed). Two ways of linking are
timed: ``link_to_file`` (what ``ctxbin link -o out.ctxbin`` runs: compare,
hash and write in one pass) and ``link`` then ``save`` (the two-pass path);
both outputs must be byte-identical. fsync is left out of both
(the benchmark replaces ``os.fsync`` with a no-op in the child). Importing
the format modules (``onnx`` among them) happens before
the clock starts and is printed separately: it is the interpreter's
start-up, not linking. The CPU time the timed part used (all threads) is
printed too: on a busy machine it tells waiting for a core from work.
Targets: output <= 1.01x the unique weight bytes; link <= 1.5x the copy;
peak RSS growth <= largest tensor + 64 MB.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

#: the CLI's path (the copy is timed on its output) and the two-pass one
WAYS = ("one-pass", "two-pass")


def _status_mb(field: str) -> float:
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its
    # parent's RSS at fork, VmHWM belongs to the exec'd process alone
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(way: str, a: str, b: str, out: str) -> None:
    os.fsync = lambda fd: None  # the target excludes fsync
    t0 = time.perf_counter()
    import ctxbin
    import ctxbin.formats

    for fmt in ctxbin.formats.FORMATS:
        ctxbin.formats.module(fmt)
    imports = time.perf_counter() - t0

    base = _status_mb("VmRSS")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    inputs = [ctxbin.load(a), ctxbin.load(b)]
    t1 = time.perf_counter()
    if way == "one-pass":
        report = ctxbin.link_to_file(inputs, out, names=["landscape", "portrait"])
        t2 = t3 = time.perf_counter()
    else:
        c, report = ctxbin.link(inputs, names=["landscape", "portrait"])
        t2 = time.perf_counter()
        ctxbin.save(c, out)
        t3 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime  # every thread's
    peak = _status_mb("VmHWM")
    largest = max(t.nbytes for c in inputs for g in c.graphs for t in g.weights)
    print(json.dumps({"seconds": t3 - t0, "cpu": cpu, "load": t1 - t0, "link": t2 - t1, "save": t3 - t2,
                      "imports": imports,
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
            runs: dict[str, list[dict]] = {way: [] for way in WAYS}
            copies = []
            for r in range(args.rounds):
                outs = {}
                for way in WAYS if r % 2 == 0 else WAYS[::-1]:  # neither always runs first
                    out = outs[way] = os.path.join(d, f"linked_from_{kind}_{way}_{r}.ctxbin")
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", way, srcs["landscape"][idx], srcs["portrait"][idx], out],
                        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
                    )
                    runs[way].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                out = outs[WAYS[0]]
                t0 = time.perf_counter()
                shutil.copyfile(out, out + ".copy")
                copies.append(time.perf_counter() - t0)
                os.unlink(out + ".copy")
                size = os.path.getsize(out)
                if not filecmp.cmp(out, outs[WAYS[1]], shallow=False):
                    raise SystemExit(f"from {kind}: the two ways of linking wrote different bytes")
                for o in outs.values():
                    os.unlink(o)
            cbest, cmed = min(copies), statistics.median(copies)
            print(f"from {kind}: copyfile of the output best/median {cbest * 1e3:.0f}/{cmed * 1e3:.0f} ms")
            for way in WAYS:
                m = min(runs[way], key=lambda x: x["seconds"])
                link_t = [x["seconds"] for x in runs[way]]
                cpu = [x["cpu"] for x in runs[way]]
                best, med = min(link_t), statistics.median(link_t)
                growth = max(x["rss_peak_mb"] - x["rss_base_mb"] for x in runs[way])
                budget = m["largest_tensor"] / 2**20 + 64
                steps = (f"link+write {m['link'] * 1e3:.0f} ms" if way == "one-pass"
                         else f"link {m['link'] * 1e3:.0f} ms, save {m['save'] * 1e3:.0f} ms")
                print(f"  {way:9}: output {size / 2**20:.1f} MiB = {size / m['unique_bytes']:.4f}x unique weights "
                      f"(target <= 1.01); best/median {best * 1e3:.0f}/{med * 1e3:.0f} ms = {best / cbest:.2f}x/"
                      f"{med / cmed:.2f}x copyfile (target <= 1.5); best run: load {m['load'] * 1e3:.0f} ms, "
                      f"{steps} (+ {m['imports'] * 1e3:.0f} ms importing format modules, not counted); "
                      f"CPU time (all threads) best/median {min(cpu) * 1e3:.0f}/{statistics.median(cpu) * 1e3:.0f} ms; "
                      f"peak RSS growth {growth:.0f} MiB vs budget {budget:.0f} MiB (largest tensor + 64 MiB); "
                      f"weights before link {m['before_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
