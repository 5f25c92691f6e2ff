"""Link the two FCN variants into one weight-shared HTP context binary, vs ONNX Runtime.

    python benchmarks/bench_compile.py [--full] [--rounds N] [--optimization N]

Same run, same machine, rounds interleaved, each side from the same two ONNX
files (FCN landscape / portrait of ``tests/models.py``; ``--full`` for the
~33M-parameter net, else the tiny one at 64x96 / 96x64), both at the same HTP
graph optimization level (default 2, the backend's default, which ONNX Runtime
uses unless told otherwise):

- ctxbin: ``compile_htp([landscape.onnx, portrait.onnx], ["landscape", "portrait"], fcn.bin)``
  with the default ``route="auto"`` (ctxbin's lowering in memory) and with
  ``route="qnn-ir"`` (the vendor's lowering, one child process for both
  models), and ``compile_htp`` from the two DLCs (link + compose only); child
  processes included;
- ONNX Runtime: one fresh process creating the two sessions with
  ``ep.context_enable`` + ``ep.share_ep_contexts`` (+ ``ep.stop_share_ep_contexts``
  on the second): the shared context binary ONNX Runtime generates.

Then one more pass, timed piece by piece: where each side's time goes.
Target: ctxbin's link ≤ 1x ONNX Runtime's. Also printed: output sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

NAMES = ("landscape", "portrait")

# prints {"phases": [[what, seconds], ...]} on its last line
_ORT_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import onnxruntime as ort, onnxruntime_qnn as oq
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
phases = [["import + register EP", time.perf_counter() - t0]]
models, out, opt = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
for i, m in enumerate(models):
    t = time.perf_counter()
    so = ort.SessionOptions(); so.log_severity_level = 3
    for k, v in {"ep.context_enable": "1", "ep.context_embed_mode": "0", "ep.share_ep_contexts": "1",
                 "ep.context_file_path": f"{out}/{i}_ctx.onnx"}.items():
        so.add_session_config_entry(k, v)
    last = i == len(models) - 1
    if last:
        so.add_session_config_entry("ep.stop_share_ep_contexts", "1")
    so.add_provider_for_devices(devs, {"backend_type": "htp", "enable_htp_fp16_precision": "1",
                                       "soc_model": "60", "htp_arch": "75",
                                       "htp_graph_finalization_optimization_mode": opt})
    ort.InferenceSession(m, so)
    phases.append([f"session {i} (ONNX -> QNN graph, finalize" + (", binary + wrappers)" if last else ")"),
                   time.perf_counter() - t])
print(json.dumps({"phases": phases}))
"""


def _ort(onnx_files: list[str], out: Path, optimization: int) -> tuple[float, list[tuple[str, float]]]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _ORT_CHILD, *onnx_files, str(out), str(optimization)],
                          check=True, capture_output=True, text=True, cwd=out, timeout=1800)
    total = time.perf_counter() - t0
    phases = [(str(k), float(v)) for k, v in json.loads(proc.stdout.strip().splitlines()[-1])["phases"]]
    return total, phases


def _breakdown(onnx_files: list[str], dlc_files: list[str], d: Path, optimization: int) -> None:
    """One pass of each ctxbin route and of ONNX Runtime, timed piece by piece."""
    from ctxbin.convert import convert_many
    from ctxbin.formats import dlc, load
    from ctxbin.link import link
    from ctxbin.runtime.qnn_compose import ComposeOptions, compose_dlc

    opts = ComposeOptions(60, 75, optimization=optimization)
    rows: list[tuple[str, str, float]] = []
    for label, route in (("from ONNX, auto (ctxbin lowering)", "ctxbin"), ("from ONNX, qnn-ir", "qnn-ir"),
                         ("from DLC", None)):
        work = Path(tempfile.mkdtemp(dir=d))
        t0 = time.perf_counter()
        if route is None:
            containers = [load(p) for p in dlc_files]
            rows.append((label, "read the DLCs", time.perf_counter() - t0))
        else:
            containers = convert_many(onnx_files, list(NAMES), work, route=route)
            rows.append((label, f"ONNX -> qnn graphs ({route})", time.perf_counter() - t0))
        t0 = time.perf_counter()
        linked, _ = link(containers, names=list(NAMES))
        dlc.write(linked, work / "linked.dlc")
        rows.append((label, "link + write linked DLC", time.perf_counter() - t0))
        t0 = time.perf_counter()
        r = compose_dlc(work / "linked.dlc", work / "fcn.bin", graphs=list(NAMES), options=opts)
        total = time.perf_counter() - t0
        rows.append((label, "compose child: start + imports + exit", total - sum(s for _, s in r.phases)))
        rows += [(label, f"compose child: {k}", s) for k, s in r.phases]
    ort_dir = Path(tempfile.mkdtemp(dir=d))
    total, phases = _ort(onnx_files, ort_dir, optimization)
    rows.append(("onnxruntime", "child start + exit", total - sum(s for _, s in phases)))
    rows += [("onnxruntime", k, s) for k, s in phases]
    print("\n| side | step | s |\n|---|---|---:|")
    for side, step, s in rows:
        print(f"| {side} | {step} | {s:.2f} |")
    for side in dict.fromkeys(r[0] for r in rows):
        print(f"| {side} | **total** | **{sum(s for x, _, s in rows if x == side):.2f}** |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the ~33M-parameter FCN (default: tiny)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--optimization", type=int, default=2, choices=(1, 2, 3),
                    help="HTP graph optimization level, both sides")
    args = ap.parse_args()

    import onnx

    from ctxbin.compile import compile_htp
    from ctxbin.convert import convert
    from tests.models import build_fcn

    shapes = {"landscape": (256, 384), "portrait": (384, 256)} if args.full else {
        "landscape": (64, 96), "portrait": (96, 64)}
    opt = args.optimization
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        d = Path(tmp)
        onnx_files, dlc_files = [], []
        for name in NAMES:
            m = build_fcn(*shapes[name], tiny=not args.full)
            m.ir_version = 8
            onnx.save(m, d / f"{name}.onnx")
            onnx_files.append(str(d / f"{name}.onnx"))
            convert(d / f"{name}.onnx", d / f"{name}.dlc", name=name)
            dlc_files.append(str(d / f"{name}.dlc"))

        times: dict[str, list[float]] = {"ctxbin from ONNX (auto)": [], "ctxbin from ONNX (qnn-ir)": [],
                                         "ctxbin from DLC": [], "onnxruntime shared": []}
        sizes: dict[str, int] = {}
        for r in range(args.rounds):
            out = d / f"r{r}"
            out.mkdir()
            runs = {"ctxbin from ONNX (auto)": (onnx_files, "auto"), "ctxbin from ONNX (qnn-ir)": (onnx_files, "qnn-ir"),
                    "ctxbin from DLC": (dlc_files, "auto")}
            for i, (key, (inputs, route)) in enumerate(runs.items()):
                t0 = time.perf_counter()
                compile_htp(inputs, list(NAMES), out / f"{i}.bin", soc_model=60, htp_arch=75, route=route,
                            optimization=opt)
                times[key].append(time.perf_counter() - t0)
            ort_dir = out / "ort"
            ort_dir.mkdir()
            times["onnxruntime shared"].append(_ort(onnx_files, ort_dir, opt)[0])
            sizes = {**{k: (out / f"{i}.bin").stat().st_size for i, k in enumerate(runs)},
                     "onnxruntime": sum(p.stat().st_size for p in ort_dir.glob("*.bin"))}

        ref = times["onnxruntime shared"]
        print(f"FCN {'full' if args.full else 'tiny'} {shapes['landscape']} + {shapes['portrait']}, "
              f"{args.rounds} rounds, HTP optimization level {opt}")
        print("| link into one HTP binary | best s | median s | ratio best / median vs onnxruntime |")
        print("|---|---:|---:|---:|")
        for k, v in times.items():
            print(f"| {k} | {min(v):.2f} | {statistics.median(v):.2f} | "
                  f"{min(v) / min(ref):.2f}x / {statistics.median(v) / statistics.median(ref):.2f}x |")
        print("binary bytes: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
        _breakdown(onnx_files, dlc_files, d, opt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
