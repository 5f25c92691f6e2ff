"""The ``ctxbin`` command line: link, inspect, run, convert, check.

Only this module prints. Names read from files are sanitized before they
reach the terminal, so a hostile file cannot send control sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from .errors import CtxbinError, InputError
from .ir import Graph

__all__ = ["main"]


def clean(text: object) -> str:
    """``text`` with control characters shown as escapes (safe for a terminal)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


class _ProgressBar:
    """A one-line bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        frac = done / total if total else 1.0
        width = 30
        bar = "#" * int(frac * width)
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {frac * 100:5.1f}% {_human(done)}/{_human(total)}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=True)


def _print_tensor(out: TextIO, t: dict[str, Any]) -> None:
    shape = "x".join("?" if d is None else clean(d) for d in t["shape"]) or "scalar"
    enc = t.get("encoding")
    extra = ""
    if enc:
        if "scale" in enc:
            extra = f"  [{enc['kind']} scale={enc['scale']:.6g} offset={enc['offset']}]"
        else:
            extra = f"  [{enc['kind']} axis={enc.get('axis')} channels={enc.get('channels')}]"
    out.write(f"      {clean(t['name'])}: {t['dtype']} [{shape}]{extra}\n")


def _print_summary(out: TextIO, s: dict[str, Any]) -> None:
    out.write(f"{clean(s['path'])}: {s['format']} {clean(s['format_version'])}\n")
    tgt = {k: v for k, v in s["target"].items() if v is not None}
    out.write(f"  target: {clean(', '.join(f'{k}={v}' for k, v in tgt.items()) or 'any')}\n")
    for k, v in sorted(s["metadata"].items()):
        out.write(f"  {clean(k)}: {clean(v)}\n")
    w = s["weights"]
    if w["total_bytes"] or any(g["node_count"] for g in s["graphs"]):
        out.write(
            f"  weights: {_human(w['total_bytes'])} total, {_human(w['unique_bytes'])} unique, "
            f"{_human(w['shared_bytes'])} shared\n"
        )
    out.write(f"  graphs ({len(s['graphs'])}):\n")
    for g in s["graphs"]:
        parts = []
        if g["node_count"] or "compiled" not in g:
            parts.append(f"{g['node_count']} nodes, {g['weight_count']} weights ({_human(g['weight_bytes'])})")
        if "compiled" in g:
            c = g["compiled"]
            inside = "" if c["graph"] == g["name"] else f" as {clean(c['graph'])!r}"
            parts.append(f"compiled for {clean(c['backend'])}{inside}")
        out.write(f"  - {clean(g['name'])}: {'; '.join(parts)}\n")
        for k, v in sorted(g.get("metadata", {}).items()):
            out.write(f"    {clean(k)}: {clean(v)}\n")
        out.write("    inputs:\n")
        for t in g["inputs"]:
            _print_tensor(out, t)
        out.write("    outputs:\n")
        for t in g["outputs"]:
            _print_tensor(out, t)
        if g["op_histogram"]:
            ops = ", ".join(f"{clean(k)} x{v}" for k, v in g["op_histogram"].items())
            out.write(f"    ops: {ops}\n")
        if g["weight_types"]:
            types = ", ".join(f"{clean(k)} x{v}" for k, v in g["weight_types"].items())
            out.write(f"    weight types: {types}\n")


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    from . import inspect

    s = inspect(args.file)
    if args.json:
        out.write(_dumps(s) + "\n")
    else:
        _print_summary(out, s)
    return 0


def _split_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [n.strip() for n in text.split(",") if n.strip()]


def _compile_htp(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """``link --target htp``: one real QNN HTP context binary, weights shared.
    Returns the link report and the lines that say what was built."""
    from . import load
    from .compile import compile_htp

    if args.soc_model is None or args.htp_arch is None:
        raise InputError("--target htp needs --soc-model and --htp-arch")
    if args.include or args.exclude:
        raise InputError("--include/--exclude are not supported with --target htp yet")
    names = _split_names(args.names) or [Path(p).stem for p in args.inputs]
    report = compile_htp(
        args.inputs, names, args.output,
        soc_model=args.soc_model, htp_arch=args.htp_arch, share=args.share, fmt=args.fmt,
        route=args.route, optimization=args.optimization,
    )
    built = load(args.output).target  # what the vendor compiler really built for
    lines = [
        f"compiled {len(names)} graphs ({', '.join(map(clean, names))}) into {clean(args.output)} "
        f"({_human(os.path.getsize(args.output))}, {clean(built.describe())})"
    ]
    if built.htp_arch is not None and built.htp_arch != args.htp_arch:
        lines.append(
            f"  note: the HTP compiler built for v{built.htp_arch}, the architecture of SoC model "
            f"{args.soc_model}, not the v{args.htp_arch} asked for"
        )
    return report, lines


def cmd_link(args: argparse.Namespace, out: TextIO) -> int:
    from . import link_to_file, load

    if args.target == "htp" or (args.target is None and args.output.lower().endswith(".bin")):
        report, lines = _compile_htp(args)
    else:
        inputs = [load(p) for p in args.inputs]
        progress: Callable[[int, int], None] | None = None
        if not args.json and sys.stderr.isatty():
            progress = _ProgressBar("hashing weights")
        report = link_to_file(
            inputs,
            args.output,
            share=args.share,
            names=_split_names(args.names),
            include=_split_names(args.include),
            exclude=_split_names(args.exclude),
            progress=progress,
        )
        lines = [
            f"linked {len(report.graphs)} graphs into {clean(args.output)} "
            f"({_human(os.path.getsize(args.output))})"
        ]
    if args.json:
        r = report.to_dict()
        r["output"] = args.output
        r["output_bytes"] = os.path.getsize(args.output)
        out.write(_dumps(r) + "\n")
        return 0
    for line in lines:
        out.write(line + "\n")
    out.write(f"  sharing: {report.mode}\n")
    out.write(
        f"  weights: {_human(report.bytes_before)} before, {_human(report.bytes_after)} after, "
        f"{_human(report.bytes_saved)} saved\n"
    )
    for g in report.graphs:
        out.write(f"  {clean(g.name)}: {g.shared_fraction * 100:.1f}% of {_human(g.weight_bytes)} shared\n")
    if report.conflicts:
        lost = sum(c.bytes for c in report.conflicts)
        out.write(
            f"  {len(report.conflicts)} tensor name(s) with different content in different graphs "
            f"(not shared, {_human(lost)} stored more than once):\n"
        )
        for c in report.conflicts[:20]:
            out.write(f"    {clean(c.name)}: {c.distinct_contents} contents in {clean(', '.join(c.graphs))}\n")
        if len(report.conflicts) > 20:
            out.write(f"    ... and {len(report.conflicts) - 20} more (see --json)\n")
    if report.excluded:
        out.write(f"  kept apart on request: {len(report.excluded)} tensor(s)\n")
    return 0


def _parse_input_list(path: str, graph: Graph) -> list[dict[str, str]]:
    """qnn-net-run input lists: one inference per line, either paths in input
    order or ``name:=path`` pairs, separated by whitespace (so a path cannot
    hold spaces); ``#`` lines are comments. Relative paths are taken from the
    current directory, else from the list file's directory."""
    names = [t.name for t in graph.inputs]
    base = Path(path).resolve().parent
    runs = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text input list (byte {e.start})") from None
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        items = line.split()
        if len(items) > len(names):
            raise InputError(
                f"{path}:{lineno}: {len(items)} files for {len(names)} inputs {names} "
                "(paths are separated by whitespace, as in qnn-net-run: a path cannot hold spaces)"
            )
        feeds: dict[str, str] = {}
        for pos, item in enumerate(items):
            name, p = item.split(":=", 1) if ":=" in item else (names[pos], item)
            if name not in names:
                raise InputError(f"{path}:{lineno}: graph {graph.name!r} has no input {name!r}; inputs: {names}")
            if name in feeds:
                raise InputError(f"{path}:{lineno}: input {name!r} is given twice")
            if not os.path.isabs(p) and not os.path.exists(p):
                p = str(base / p)
            if not os.path.isfile(p):
                raise InputError(f"{path}:{lineno}: no file {item!r} for input {name!r}")
            feeds[name] = p
        missing = [n for n in names if n not in feeds]
        if missing:
            raise InputError(f"{path}:{lineno}: no file for input(s) {missing}")
        runs.append(feeds)
    if not runs:
        raise InputError(f"{path}: the input list names no inference")
    return runs


def _read_input(path: str, t: Any) -> np.ndarray:
    if path.endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:  # not an .npy, or an object array (which would need pickle)
            raise InputError(f"{path}: cannot be read as a numeric .npy array for input {t.name!r}: {e}") from None
    if any(not isinstance(d, int) for d in t.shape):
        raise InputError(f"input {t.name!r} has symbolic shape {t.shape}: give it as .npy")
    dtype = t.dtype.numpy if not t.dtype.is_quantized else np.dtype("<f4")
    count = int(np.prod(t.shape, dtype=np.int64))
    size = os.path.getsize(path)
    if size != count * dtype.itemsize:
        raise InputError(
            f"{path}: {size} bytes, but input {t.name!r} needs {count} x {dtype} = {count * dtype.itemsize} bytes"
        )
    return np.fromfile(path, dtype=dtype).reshape(t.shape)


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from . import load

    graph = load(args.file).graph(args.graph)
    runs = _parse_input_list(args.input_list, graph)
    inputs_by_name = {t.name: t for t in graph.inputs}
    files: dict[str, str] = {}
    for t in graph.outputs:  # two outputs must not overwrite one file
        other = files.setdefault(_safe_filename(t.name), t.name)
        if other != t.name:
            raise InputError(f"outputs {other!r} and {t.name!r} would both be written to {_safe_filename(t.name)!r}")
    notes: set[str] = set()
    for i, files in enumerate(runs):
        feeds = {n: _read_input(p, inputs_by_name[n]) for n, p in files.items()}
        result = graph.run(feeds, backend=args.backend)
        # made only once something ran: a bad first input leaves nothing behind
        rdir = os.path.join(args.output_dir, f"Result_{i}")
        os.makedirs(rdir, exist_ok=True)
        for name, arr in result.items():
            base = os.path.join(rdir, _safe_filename(name))
            if args.npy:
                np.save(base + ".npy", arr, allow_pickle=False)
            else:
                np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tofile(base + ".raw")
        if result.note and result.note not in notes:  # once, not once per inference
            notes.add(result.note)
            sys.stderr.write(f"note: {clean(result.note)}\n")
    out.write(f"ran graph {clean(graph.name)} {len(runs)} time(s) on {result.backend}; outputs in {clean(args.output_dir)}\n")
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from .check import check

    problems = check(args.file)
    if args.json:
        out.write(_dumps({"path": args.file, "ok": not problems, "problems": problems}) + "\n")
    elif problems:
        for p in problems:
            out.write(f"{clean(p)}\n")
    else:
        out.write(f"{clean(args.file)}: ok\n")
    return 1 if problems else 0


def cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    from .convert import convert

    c = convert(args.model, args.output, name=args.name, route=args.route)
    g = c.graphs[0]
    out.write(
        f"wrote {clean(args.output)}: graph {clean(g.name)} ({len(g.nodes)} QNN ops, "
        f"{_human(sum(t.nbytes for t in g.weights))} of weights)\n"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="ctxbin", description="Multi-graph NPU model containers: link, inspect, run, check.")
    p.add_argument("--version", action="version", version=f"ctxbin {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="show graphs, I/O, ops and weights of a file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("link", help="link several models into one container whose graphs share weights")
    s.add_argument("inputs", nargs="+", help="input files (.onnx, .ctxbin, ...)")
    s.add_argument("-o", "--output", required=True, help="output file; the format follows the extension")
    s.add_argument("--names", help="comma-separated graph names, one per input graph")
    s.add_argument("--share", default="name+content", choices=("name+content", "content", "none"))
    s.add_argument("--include", help="comma-separated tensor names that may be shared (default: all)")
    s.add_argument("--exclude", help="comma-separated tensor names never shared")
    s.add_argument("--json", action="store_true", help="print the sharing report as JSON")
    s.add_argument(
        "--target", choices=("ctxbin", "htp"),
        help="htp: compile into one QNN HTP context binary (the default for a .bin output)",
    )
    s.add_argument("--soc-model", type=int, help="QNN SoC model (e.g. 60); needed for --target htp")
    s.add_argument("--htp-arch", type=int, help="HTP architecture (e.g. 75); needed for --target htp")
    s.add_argument(
        "--format", dest="fmt", default="bin", choices=("bin", "epcontext", "ctxbin"),
        help="with --target htp: the context binary, plus one _ctx.onnx per graph, or a .ctxbin embedding it",
    )
    s.add_argument(
        "--route", choices=("auto", "qnn-ir", "ctxbin"), default="auto",
        help="with --target htp, how ONNX inputs are lowered: qnn-ir (the vendor's, via onnxruntime-qnn), "
        "ctxbin (ctxbin's own, faster), auto (qnn-ir where it runs)",
    )
    s.add_argument(
        "--optimization", type=int, choices=(1, 2, 3), default=2,
        help="with --target htp: HTP graph optimization level (2, the backend's default, as ONNX Runtime uses)",
    )
    s.set_defaults(fn=cmd_link)

    s = sub.add_parser("run", help="run a graph by name (qnn-net-run input lists)")
    s.add_argument("file")
    s.add_argument("--graph", required=True, help="graph name")
    s.add_argument("--input-list", required=True, help="one inference per line: raw files in input order, or name:=path")
    s.add_argument("--output-dir", required=True)
    s.add_argument("--npy", action="store_true", help="write outputs as .npy instead of raw")
    s.add_argument("--backend", default="auto", choices=("auto", "emulator", "htp"))
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("convert", help="convert an ONNX model into a QNN DLC (v4) with a named graph")
    s.add_argument("model", help="the ONNX model")
    s.add_argument("-o", "--output", required=True, help="the DLC to write")
    s.add_argument("--name", help="graph name (default: the ONNX graph's name, else the file stem)")
    s.add_argument(
        "--route", choices=("auto", "qnn-ir", "ctxbin"), default="auto",
        help="qnn-ir: the vendor's lowering through onnxruntime-qnn; ctxbin: ctxbin's own pass; "
        "auto: qnn-ir when installed",
    )
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("check", help="verify every checksum and structural rule (exit 1 on problems)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.fn(args, sys.stdout)
    except CtxbinError as e:
        sys.stderr.write(f"ctxbin {args.command}: error: {clean(e)}\n")
        return 2
    except BrokenPipeError:
        # the reader went away (e.g. `ctxbin inspect x | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        sys.stderr.write(f"ctxbin {args.command}: error: {clean(e)}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
