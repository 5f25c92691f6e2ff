"""DLC v4: read all metadata, write, and weights as numpy (issue 3 targets).

    python benchmarks/bench_dlc.py [--rounds N] [--profile]

Files, made in a temp dir with ctxbin's own lowering (no vendor library):

- ``full``: the FCN-ResNet-50-style net of ``tests/models.py`` (~132 MB of
  weights), ``convert(onnx, dlc, route="ctxbin")``;
- ``full, 1 MB``: the same graph (same nodes, params, tensor table, same
  tensor ranks) with every weight shrunk 128x, written with ``dlc.write``:
  only the weight bytes differ, so metadata cost can be compared across sizes;
- ``tiny``: the tiny FCN (a real, smaller graph), for the ONNX comparison.

Measured in the same run (best of N, and median):

1. ``dlc.read(path)``, which parses and checks all metadata at open (graphs,
   every node and param, tensor tables, encodings, ``model.params``; weights
   stay in the mapping), on ``full`` vs ``full, 1 MB`` (target: within 20%),
   and vs ``onnx.load(path, load_external_data=False)`` of the same model
   (target: ctxbin <= 1x), and ``dlc.read`` plus making every Node and Tensor
   object (made on first access from the checked columns). Also printed, as context: ``onnx.load`` plus walking every
   node, attribute and initializer into Python values (what ``dlc.read``
   gives), and ctxbin's own ONNX reader on the same file. Then the same
   ``full`` pair back to back, in interleaved blocks of calls (warm caches).
2. ``dlc.write`` of the ``full`` container (read fresh each round, so no
   hash is cached) vs ``shutil.copyfile`` of the written file (target <= 1.5x).
   fsync is excluded from both, as in bench_link.py (``os.fsync`` is a no-op
   during the timed write); a second pair includes it on both sides; a third
   makes ``dlc.write`` compute the ZIP CRC instead of carrying the source's
   over (it carries it when ``model.params.bin`` is copied verbatim, as here).
3. ``[t.numpy() for t in g.weights]`` on ``full`` vs copying the same bytes:
   prints whether every array is a read-only view into the file mapping.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import mmap
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

SHRINK = 128


def times_of(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


HOT_BLOCK = 20


def repeat(n: int, fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    for _ in range(n):
        fn(*args, **kwargs)  # each result dropped before the next call, as in the timed single calls


def fmt(ts: list[float]) -> str:
    return f"{min(ts) * 1e3:8.2f} / {statistics.median(ts) * 1e3:8.2f} ms"


def shrunk(container: Any) -> Any:
    """The same graph with every weight ``SHRINK`` times smaller (rank kept:
    the last dimension carries the elements), so the metadata is unchanged."""
    from ctxbin.ir import Tensor
    from ctxbin.weights import Blob

    rng = np.random.default_rng(0)
    (g,) = container.graphs
    tensors = {}
    for name, t in g.tensors.items():
        if t.data is not None:
            n = max(1, -(-int(np.prod(t.shape, dtype=np.int64)) // SHRINK))
            shape = (*([1] * (len(t.shape) - 1)), n) if t.shape else ()
            arr = rng.standard_normal(n).astype(t.dtype.numpy).reshape(shape)
            t = Tensor(t.name, t.dtype, shape, t.kind, t.encoding, Blob.from_array(arr))
        tensors[name] = t
    return dataclasses.replace(container, graphs=(dataclasses.replace(g, tensors=tensors),))


def walk_onnx(path: str) -> int:
    """onnx.load, then every name, op type, attribute value and initializer
    dtype/shape/location pulled into Python (the information dlc.read returns)."""
    import onnx
    from onnx import helper

    m = onnx.load(path, load_external_data=False)
    g = m.graph
    n = 0
    for node in g.node:
        _ = (node.name, node.op_type, node.domain, list(node.input), list(node.output))
        _ = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        n += 1
    for t in g.initializer:
        _ = (t.name, t.data_type, tuple(t.dims), {e.key: e.value for e in t.external_data})
        n += 1
    for v in (*g.input, *g.output, *g.value_info):
        _ = (v.name, v.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
        n += 1
    return n


def read_all_nodes(path: str) -> int:
    """dlc.read, then every Node and Tensor object (made on first access)."""
    from ctxbin.formats import dlc

    return sum(len(list(g.nodes)) + len(list(g.tensors.values())) for g in dlc.read(path).graphs)


def root_base(a: np.ndarray) -> object:
    """What an array's memory finally belongs to (through views and memoryviews)."""
    b: object = a
    while isinstance(b, np.ndarray) and b.base is not None:
        b = b.base
    return b.obj if isinstance(b, memoryview) else b


def no_fsync() -> Callable[[], None]:
    real = os.fsync
    os.fsync = lambda fd: None  # the first comparison excludes fsync (as bench_link.py does)

    def restore() -> None:
        os.fsync = real

    return restore


def copy_synced(src: str, dst: str) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(os.path.dirname(dst), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=25, help="rounds of the metadata reads (writes: a third)")
    ap.add_argument("--write-rounds", type=int, default=None,
                    help="rounds of section 2 (default: a third of --rounds, at least 3)")
    ap.add_argument("--profile", action="store_true", help="also print cProfiles of dlc.read and dlc.write on the full DLC")
    args = ap.parse_args()

    import onnx

    import ctxbin
    from ctxbin.convert import convert
    from ctxbin.formats import dlc
    from tests.models import build_fcn, save_with_external_data

    with tempfile.TemporaryDirectory(prefix="bench-dlc-", dir=os.environ.get("CTXBIN_BENCH_DIR")) as tmp:
        d = Path(tmp)
        files: dict[str, tuple[str, str | None]] = {}
        for key, tiny in (("full", False), ("tiny", True)):
            onnx_path = d / f"fcn_{key}.onnx"
            save_with_external_data(build_fcn(256, 384, tiny=tiny), onnx_path)
            convert(onnx_path, d / f"fcn_{key}.dlc", name="fcn", route="ctxbin")
            files[key] = (str(d / f"fcn_{key}.dlc"), str(onnx_path))
        small = d / "fcn_full_1mb.dlc"
        dlc.write(shrunk(dlc.read(files["full"][0])), small)
        files["full, 1 MB"] = (str(small), None)

        # ---------------------------------------------------------------- 1. metadata
        keys = ("full", "full, 1 MB", "tiny")
        wall: dict[tuple[str, str], list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for r in range(args.rounds):  # interleaved, so every contender sees the same machine load
            # the plain reads first, in rotating order: a read right after from_onnx of the 132 MB
            # model runs with cold caches, whichever file it reads
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:
                c0 = time.process_time()
                wall.setdefault((key, "dlc"), []).append(timed(dlc.read, files[key][0]))
                cpu.setdefault(key, []).append(time.process_time() - c0)
            for key in keys:
                dpath, opath = files[key]
                wall.setdefault((key, "touch"), []).append(timed(read_all_nodes, dpath))
                if opath is not None:
                    wall.setdefault((key, "onnx"), []).append(timed(onnx.load, opath, load_external_data=False))
                    wall.setdefault((key, "walk"), []).append(timed(walk_onnx, opath))
                    wall.setdefault((key, "from_onnx"), []).append(timed(ctxbin.from_onnx, opath))
        print(f"1. read all metadata: best / median of {args.rounds} (wall), best CPU")
        print("| DLC | nodes | tensors | weights MB | file MB | ctxbin dlc.read | best CPU | dlc.read + all nodes "
              "and tensors | onnx.load (no ext. data) | ratio best / median | onnx.load + walk | ctxbin.from_onnx |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in keys:
            dpath, opath = files[key]
            g = dlc.read(dpath).graphs[0]
            wmb = sum(t.nbytes for t in g.weights) / 1e6
            t_dlc = wall[(key, "dlc")]
            row = (f"| {key} | {len(g.nodes)} | {len(g.tensors)} | {wmb:.1f} | {os.path.getsize(dpath) / 1e6:.1f} | "
                   f"{fmt(t_dlc)} | {min(cpu[key]) * 1e3:.2f} ms | {fmt(wall[(key, 'touch')])} | ")
            if opath is None:
                row += "- | - | - | - |"
            else:
                t_onnx = wall[(key, "onnx")]
                ratio = f"{min(t_dlc) / min(t_onnx):.2f}x / {statistics.median(t_dlc) / statistics.median(t_onnx):.2f}x"
                row += f"{fmt(t_onnx)} | {ratio} | {fmt(wall[(key, 'walk')])} | {fmt(wall[(key, 'from_onnx')])} |"
            print(row)
        # back to back (caches warm, as a loop over many files sees it): blocks of calls, interleaved
        hot: dict[str, list[float]] = {"dlc": [], "onnx": []}
        dpath, opath = files["full"]
        for _ in range(args.rounds):
            hot["dlc"].append(timed(repeat, HOT_BLOCK, dlc.read, dpath) / HOT_BLOCK)
            hot["onnx"].append(timed(repeat, HOT_BLOCK, onnx.load, opath, load_external_data=False) / HOT_BLOCK)
        print(f"full, back to back ({args.rounds} blocks of {HOT_BLOCK} calls, per call): dlc.read {fmt(hot['dlc'])}, "
              f"onnx.load {fmt(hot['onnx'])}, ratio {min(hot['dlc']) / min(hot['onnx']):.2f}x / "
              f"{statistics.median(hot['dlc']) / statistics.median(hot['onnx']):.2f}x")
        big, small_t = wall[("full", "dlc")], wall[("full, 1 MB", "dlc")]
        r = min(big) / min(small_t)
        print(f"dlc.read full / full-1MB (same metadata, 128x the weights): best {r:.3f}x, "
              f"median {statistics.median(big) / statistics.median(small_t):.3f}x, "
              f"best CPU {min(cpu['full']) / min(cpu['full, 1 MB']):.3f}x "
              f"(target within 20%: {'met' if abs(r - 1) <= 0.2 else 'missed'})")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                dlc.read(files["full"][0])
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
            print(s.getvalue())

        # ---------------------------------------------------------------- 2. write
        wrounds = args.write_rounds or max(3, args.rounds // 3)
        out = str(d / "written.dlc")
        print(f"\n2. write, best / median of {wrounds}")
        # dlc.write carries the ZIP CRC of model.params.bin over from the source when it
        # copies that entry verbatim (as here); the third pair makes it compute the CRC, as
        # for a DLC whose weights come from elsewhere (a conversion, edited weights).
        for label, synced, carry in (("fsync excluded from both", False, True),
                                     ("fsync included in both", True, True),
                                     ("fsync excluded, CRC computed", False, False)):
            t_write: list[float] = []
            t_copy: list[float] = []
            cpu_write: list[float] = []
            for _ in range(wrounds):
                c = dlc.read(files["full"][0])  # fresh blobs: no cached hashes
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(out)  # both sides create a new file: replacing one costs its unlink
                restore = (lambda: None) if synced else no_fsync()
                recorded_crc = dlc._recorded_crc
                if not carry:
                    dlc._recorded_crc = lambda runs, size: None
                try:
                    c0 = time.process_time()
                    t_write.append(timed(dlc.write, c, out))
                    cpu_write.append(time.process_time() - c0)  # every thread of the process
                finally:
                    restore()
                    dlc._recorded_crc = recorded_crc
                t_copy.append(timed(copy_synced if synced else shutil.copyfile, out, out + ".copy"))
                os.unlink(out + ".copy")
                del c
            size = os.path.getsize(out)
            rb, rm = min(t_write) / min(t_copy), statistics.median(t_write) / statistics.median(t_copy)
            print(f"full DLC ({size / 1e6:.1f} MB), {label}: dlc.write {fmt(t_write)} "
                  f"(best CPU {min(cpu_write) * 1e3:.1f} ms), "
                  f"copyfile {fmt(t_copy)}, ratio {rb:.2f}x / {rm:.2f}x "
                  f"(target <= 1.5x, best and median: {'met' if max(rb, rm) <= 1.5 else 'missed'})")
        c = dlc.read(files["full"][0])
        plans = [dlc._plan_graph(g, out) for g in c.graphs]
        t_model = times_of(lambda: dlc._model_entry(plans), args.rounds)
        t_params = times_of(lambda: dlc._params_entry(plans, [0] * sum(len(p.statics) for p in plans)), args.rounds)
        print(f"flatbuffers of the full DLC (ctxbin.flatbuild): model entry {fmt(t_model)}, "
              f"model.params {fmt(t_params)}")
        if args.profile:
            c = dlc.read(files["full"][0])
            os.unlink(out)
            restore = no_fsync()
            prof = cProfile.Profile()
            prof.enable()
            dlc.write(c, out)
            prof.disable()
            restore()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
            print(s.getvalue())

        # ---------------------------------------------------------------- 3. weights as numpy
        g = dlc.read(files["full"][0]).graphs[0]
        weights = g.weights
        arrays = [t.numpy() for t in weights]
        total = sum(a.nbytes for a in arrays)
        roots = [root_base(a) for a in arrays]
        views = all(not a.flags.owndata for a in arrays)
        readonly = all(not a.flags.writeable for a in arrays)
        in_map = all(isinstance(b, mmap.mmap) for b in roots)
        shares = all(np.shares_memory(a, np.frombuffer(b, np.uint8)) for a, b in zip(arrays, roots))  # type: ignore[arg-type]
        t_views = times_of(lambda: [t.numpy() for t in weights], args.rounds)
        t_copy = times_of(lambda: [np.array(a) for a in arrays], max(3, args.rounds // 3))
        print(f"\n3. all {len(arrays)} weights of the full DLC as numpy ({total / 1e6:.1f} MB): views {fmt(t_views)}, "
              f"copying the same bytes {fmt(t_copy)}: {min(t_copy) / min(t_views):.0f}x; "
              f"{min(t_views) * 1e6 / len(arrays):.2f} us per tensor")
        print(f"   every array a view (owndata False): {views}; read-only: {readonly}; base is the file's mmap: {in_map}; "
              f"np.shares_memory(array, mapping): {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
