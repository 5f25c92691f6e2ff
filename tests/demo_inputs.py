"""Inputs for ``make demo`` and the comparison of its result with onnxruntime.

``python -m tests.demo_inputs DIR`` writes a raw input image and a
qnn-net-run style input list; ``--compare RESULT_DIR`` runs onnxruntime on
the portrait model and reports the emulator's error against it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

SHAPE = (1, 3, 384, 256)  # the portrait graph's input


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--compare", metavar="RESULT_DIR")
    args = p.parse_args(argv)
    image = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    raw = os.path.join(args.dir, "image.raw")
    if not args.compare:
        image.tofile(raw)
        with open(os.path.join(args.dir, "inputs.txt"), "w") as f:
            f.write("image.raw\n")
        print(f"wrote {raw} and {args.dir}/inputs.txt")
        return 0
    import onnxruntime as ort

    so = ort.SessionOptions()
    sess = ort.InferenceSession(os.path.join(args.dir, "fcn_portrait.onnx"), so, providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"image": image})
    got = np.fromfile(os.path.join(args.compare, "out.raw"), dtype=np.float32).reshape(want.shape)
    err = np.abs(got - want)
    rel = err.max() / max(np.abs(want).max(), 1e-12)
    print(f"emulator vs onnxruntime CPU on portrait: max abs error {err.max():.3g}, relative {rel:.3g}")
    return 0 if rel < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
