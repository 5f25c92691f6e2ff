"""Open a .ctxbin and select a graph vs safetensors, at 10 MB and 1 GB of weights.

    python benchmarks/bench_open.py [--big-mb 1024]

Prints, per size: ctxbin load + graph(name) vs ``safe_open(...).keys()``, and
all weights as numpy (ctxbin: zero-copy views) vs safetensors ``load_file``.
Targets: open+select <= 3x safe_open keys at every size, about equal cost for
10 MB and 1 GB; all weights as views >= 10x faster than load_file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks._common import best_of, graph_of, synthetic_weights  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mb", type=int, default=1024)
    args = ap.parse_args()
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    import ctxbin
    from ctxbin.ir import Container

    with tempfile.TemporaryDirectory(dir=os.environ.get("CTXBIN_BENCH_DIR")) as d:
        for mb in (10, args.big_mb):
            w = synthetic_weights(mb << 20)
            cpath = os.path.join(d, f"w{mb}.ctxbin")
            spath = os.path.join(d, f"w{mb}.safetensors")
            ctxbin.save(Container((graph_of(w, "main"),)), cpath)
            save_file(w, spath)
            del w

            def ct_open() -> object:
                return ctxbin.load(cpath).graph("main")

            def st_keys() -> object:
                with safe_open(spath, framework="numpy") as f:
                    return list(f.keys())

            def ct_all() -> object:
                g = ctxbin.load(cpath).graph("main")
                return [t.numpy() for t in g.weights]

            def st_all() -> object:
                return load_file(spath)

            t_open = best_of(ct_open, repeat=7)
            t_keys = best_of(st_keys, repeat=7)
            t_all = best_of(ct_all, repeat=3)
            t_load = best_of(st_all, repeat=3)
            print(f"{mb:>6} MB  open+select {t_open * 1e3:8.3f} ms  safe_open.keys {t_keys * 1e3:8.3f} ms  "
                  f"ratio {t_open / t_keys:5.2f}x (target <= 3)")
            print(f"{mb:>6} MB  all weights (views, checksums on first touch) {t_all * 1e3:8.2f} ms  "
                  f"load_file {t_load * 1e3:8.2f} ms  speedup {t_load / t_all:6.1f}x (target >= 10)")
            os.unlink(cpath)
            os.unlink(spath)


if __name__ == "__main__":
    main()
