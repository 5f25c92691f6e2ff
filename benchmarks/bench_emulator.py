"""Emulator latency against onnxruntime CPU on the FCN segmentation net, both single-threaded.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/bench_emulator.py \
        [--height 256 --width 384] [--rounds 5] [--tiny]

The full FCN-ResNet-50-style net (tests/models.py, ~33M weights) is run on the
same random image by ctxbin's numpy emulator and by onnxruntime's CPU provider
(intra- and inter-op threads 1). numpy's BLAS is held to one thread too: the
thread variables are set here before numpy is imported. Rounds interleave the
two so load from other processes hits both alike; best and median are printed
with their ratio (target: emulator <= 3x onnxruntime), plus the output error.
No pass/fail: this prints numbers.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from ctxbin.formats import onnx as onnx_format  # noqa: E402
from ctxbin.runtime.emulator import Emulator  # noqa: E402
from tests.models import build_fcn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="the tiny FCN (structure only)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fcn.onnx"
        onnx.save(build_fcn(args.height, args.width, tiny=args.tiny), str(path))
        emu = Emulator(onnx_format.read(path).graphs[0])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, args.height, args.width), dtype=np.float32)
        feeds = {"image": x}

        contenders = {
            "emulator": lambda: emu.run(feeds)["out"],
            "onnxruntime": lambda: sess.run(["out"], feeds)[0],
        }
        outs = {name: fn() for name, fn in contenders.items()}  # warm-up, and the outputs
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    err = float(np.abs(outs["emulator"].astype(np.float64) - outs["onnxruntime"]).max())
    scale = float(np.abs(outs["onnxruntime"]).max())
    print(f"FCN {'tiny' if args.tiny else 'full'} 1x3x{args.height}x{args.width}, {args.rounds} rounds, "
          f"numpy {np.__version__}, onnxruntime {ort.__version__}")
    print("OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)")
          + " OPENBLAS_L2_SIZE=" + os.environ.get("OPENBLAS_L2_SIZE", "(unset)"))
    for name, ts in times.items():
        print(f"  {name:12s} best {min(ts) * 1e3:8.1f} ms   median {statistics.median(ts) * 1e3:8.1f} ms")
    best = min(times["emulator"]) / min(times["onnxruntime"])
    median = statistics.median(times["emulator"]) / statistics.median(times["onnxruntime"])
    print(f"  ratio emulator/onnxruntime: best {best:.2f}x   median {median:.2f}x   (target <= 3x)")
    print(f"  output max abs error {err:.3g}, relative to max |out| {err / scale:.3g}")


if __name__ == "__main__":
    main()
