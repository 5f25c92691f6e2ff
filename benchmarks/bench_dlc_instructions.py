"""DLC metadata read vs onnx.load in instructions (issue 3), noise-free.

    python benchmarks/bench_dlc_instructions.py [--calls N]

Wall time on a shared 2-vCPU machine moves by 30% from run to run; the
number of instructions a call executes does not. This counts them with
valgrind's callgrind (needs ``valgrind`` on PATH): each contender runs N
times and 0 times in a fresh interpreter, and (N run - 0 run) / N is the
cost of one call, start-up and imports cancelled out. Same files as
bench_dlc.py: the FCN-ResNet-50-style net of tests/models.py and the tiny FCN,
each as ONNX with external data and as a DLC made by ctxbin's own lowering.

Contenders: ``dlc.read(path)`` (every table parsed and checked at open, as in
bench_dlc.py) and ``onnx.load(path, load_external_data=False)``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CHILD = """
import sys
sys.path.insert(0, {root!r})
import onnx
from ctxbin.formats import dlc
call = {{"dlc.read": lambda: dlc.read({dlc!r}),
        "onnx.load": lambda: onnx.load({onnx!r}, load_external_data=False)}}[{what!r}]
call(); call()  # warm: lazily made module state and caches are not what is measured
for _ in range({calls}):
    call()
"""


def instructions(what: str, calls: int, dlc_path: str, onnx_path: str) -> int:
    code = CHILD.format(root=ROOT, dlc=dlc_path, onnx=onnx_path, what=what, calls=calls)
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")  # no BLAS threads spinning
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code],
                         env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))  # type: ignore[union-attr]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20, help="calls per measured run")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing measured (apt install valgrind)")
        return 0

    from ctxbin.convert import convert
    from tests.models import build_fcn, save_with_external_data

    with tempfile.TemporaryDirectory(prefix="bench-dlc-ir-") as tmp:
        for key, tiny in (("full", False), ("tiny", True)):
            onnx_path, dlc_path = Path(tmp) / f"fcn_{key}.onnx", Path(tmp) / f"fcn_{key}.dlc"
            save_with_external_data(build_fcn(256, 384, tiny=tiny), onnx_path)
            convert(onnx_path, dlc_path, name="fcn", route="ctxbin")
            per_call = {}
            for what in ("dlc.read", "onnx.load"):
                base = instructions(what, 0, str(dlc_path), str(onnx_path))
                per_call[what] = (instructions(what, args.calls, str(dlc_path), str(onnx_path)) - base) / args.calls
            print(f"instructions per call (callgrind, {args.calls} calls minus 0), {key} FCN of tests/models.py:")
            for what, n in per_call.items():
                print(f"  {what:10s} {n / 1e3:8.0f}k")
            print(f"  ratio dlc.read / onnx.load: {per_call['dlc.read'] / per_call['onnx.load']:.2f}x (target <= 1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
