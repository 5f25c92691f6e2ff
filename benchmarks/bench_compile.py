"""Link the two FCN variants into one weight-shared HTP context binary, vs ONNX Runtime.

    python benchmarks/bench_compile.py [--full] [--rounds N]

Same run, same machine, rounds interleaved, each side from the same two ONNX
files (FCN landscape / portrait of ``tests/models.py``; ``--full`` for the
~33M-parameter net, else the tiny one at 64x96 / 96x64):

- ctxbin: ``compile_htp([landscape.onnx, portrait.onnx], ["landscape", "portrait"], fcn.bin)``
  (ONNX → DLC through the QNN IR backend, link, compose through libQnnSystem;
  its child processes included), and ``compile_htp`` from the two DLCs
  (link + compose only);
- ONNX Runtime: one fresh process creating the two sessions with
  ``ep.context_enable`` + ``ep.share_ep_contexts`` (+ ``ep.stop_share_ep_contexts``
  on the second): the shared context binary ONNX Runtime generates.

Target: ctxbin's link ≤ 1x ONNX Runtime's. Also printed: output sizes.
"""

from __future__ import annotations

import argparse
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

_ORT_CHILD = r"""
import sys, onnxruntime as ort, onnxruntime_qnn as oq
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
devs = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
models, out = sys.argv[1:-1], sys.argv[-1]
for i, m in enumerate(models):
    so = ort.SessionOptions(); so.log_severity_level = 3
    for k, v in {"ep.context_enable": "1", "ep.context_embed_mode": "0", "ep.share_ep_contexts": "1",
                 "ep.context_file_path": f"{out}/{i}_ctx.onnx"}.items():
        so.add_session_config_entry(k, v)
    if i == len(models) - 1:
        so.add_session_config_entry("ep.stop_share_ep_contexts", "1")
    so.add_provider_for_devices(devs, {"backend_type": "htp", "enable_htp_fp16_precision": "1",
                                       "soc_model": "60", "htp_arch": "75"})
    ort.InferenceSession(m, so)
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the ~33M-parameter FCN (default: tiny)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import onnx

    from ctxbin.compile import compile_htp
    from ctxbin.convert import convert
    from tests.models import build_fcn

    shapes = {"landscape": (256, 384), "portrait": (384, 256)} if args.full else {
        "landscape": (64, 96), "portrait": (96, 64)}
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

        times: dict[str, list[float]] = {"ctxbin from ONNX": [], "ctxbin from DLC": [], "onnxruntime shared": []}
        sizes: dict[str, int] = {}
        for r in range(args.rounds):
            out = d / f"r{r}"
            out.mkdir()
            t0 = time.perf_counter()
            compile_htp(onnx_files, list(NAMES), out / "onnx.bin", soc_model=60, htp_arch=75)
            times["ctxbin from ONNX"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            compile_htp(dlc_files, list(NAMES), out / "dlc.bin", soc_model=60, htp_arch=75)
            times["ctxbin from DLC"].append(time.perf_counter() - t0)
            ort_dir = out / "ort"
            ort_dir.mkdir()
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", _ORT_CHILD, *onnx_files, str(ort_dir)], check=True,
                           capture_output=True, cwd=out, timeout=1800)
            times["onnxruntime shared"].append(time.perf_counter() - t0)
            sizes = {"ctxbin": (out / "onnx.bin").stat().st_size,
                     "onnxruntime": sum(p.stat().st_size for p in ort_dir.glob("*.bin"))}

    ref = times["onnxruntime shared"]
    print(f"FCN {'full' if args.full else 'tiny'} {shapes['landscape']} + {shapes['portrait']}, {args.rounds} rounds")
    print("| link into one HTP binary | best s | median s | ratio best / median vs onnxruntime |")
    print("|---|---:|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {min(v):.2f} | {statistics.median(v):.2f} | "
              f"{min(v) / min(ref):.2f}x / {statistics.median(v) / statistics.median(ref):.2f}x |")
    print(f"binary bytes: ctxbin {sizes['ctxbin']:,}, onnxruntime {sizes['onnxruntime']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
