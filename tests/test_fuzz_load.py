"""One hostile-input guarantee across every reader, through the public API.

Every format ctxbin reads is fuzzed from a real seed file: a two-graph
``.ctxbin``, a tiny ONNX model with external data, a DLC v4 written by ctxbin,
the real DLC v3 files in shared/data/dlc, a QNN context binary and
EPContext wrappers compiled by onnxruntime-qnn. Mutations are bit flips, byte
and word overwrites with boundary values, truncations, insertions and
deletions, concentrated on the bytes a reader parses (headers, metadata,
flatbuffer entries), and optionally re-sealed (checksums, ZIP CRCs) so they
reach the decoders behind the integrity checks.

Each mutated file goes through ``ctxbin.load`` (touching every graph, tensor,
weight, node attribute and backend binary), ``ctxbin.check.check`` and
``ctxbin.inspect``. Only ctxbin errors may come out, and each example must
stay within a time and memory bound.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctxbin
from ctxbin.check import check
from ctxbin.errors import CtxbinError, FormatError
from ctxbin.ziparchive import ZipArchive
from tests.shared_data import DLC_DIR

DLC_DATA = DLC_DIR
V3_DLCS = ("openpilot_dmonitoring_model_q_v3.dlc", "mlcommons_v1_0_deeplabv3_hta.dlc")
#: per example, in CPU seconds (wall time on a shared CI box is noise): far below any "hang"
MAX_SECONDS = 3.0
MAX_RSS_GROWTH = 256 << 20
BOUNDARY_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x01)
BOUNDARY_WORDS = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 0x10000, 0x7FFF)


@dataclass(frozen=True)
class Seed:
    """A fuzzing seed: ``main`` inside ``directory`` (siblings it needs beside it),
    the byte ranges worth mutating, and how to re-seal a mutated file."""

    directory: Path
    main: str
    hot: tuple[tuple[int, int], ...]
    inner: str = ""  # "ctxbin": re-hash header and metadata; "zip": mutate entries, re-zip with CRCs

    @property
    def path(self) -> Path:
        return self.directory / self.main


# --------------------------------------------------------------------------- seeds


def _ctxbin_seed(tiny_models: dict[str, Path], out: Path) -> Seed:
    a = ctxbin.from_onnx(tiny_models["transformer_ar128"], name="ar128")
    b = ctxbin.from_onnx(tiny_models["transformer_ar1"], name="ar1")
    out.mkdir()
    ctxbin.save(ctxbin.Container(graphs=a.graphs + b.graphs), out / "seed.ctxbin")
    meta_size = struct.unpack_from("<Q", (out / "seed.ctxbin").read_bytes(), 24)[0]
    return Seed(out, "seed.ctxbin", ((0, 64 + meta_size),), inner="ctxbin")


def _onnx_seed(tiny_models: dict[str, Path], out: Path) -> Seed:
    src = tiny_models["transformer_ar1"]
    out.mkdir()
    for p in (src, src.with_name(src.name + ".data")):
        shutil.copy(p, out / p.name)
    return Seed(out, src.name, ((0, src.stat().st_size),))


def _zip_hot(path: Path) -> tuple[tuple[int, int], ...]:
    """The ZIP structures and the flatbuffer entries (not the raw weight blobs)."""
    z = ZipArchive.open(path)
    hot = [(e.data_offset, e.data_end) for e in z.entries if e.name in ("model", "model.params")]
    first_data = min(e.data_offset for e in z.entries)
    last_end = max(e.data_end for e in z.entries)
    return tuple(hot) + ((0, first_data), (last_end, path.stat().st_size))


def _dlc_v4_seed(tiny_models: dict[str, Path], out: Path) -> Seed:
    from ctxbin.formats import dlc
    from ctxbin.passes.onnx_to_qnn import lower

    src = ctxbin.from_onnx(tiny_models["transformer_ar1"], name="ar1")
    out.mkdir()
    dlc.write(ctxbin.Container(graphs=(lower(src.graphs[0]),)), out / "seed.dlc")
    return Seed(out, "seed.dlc", _zip_hot(out / "seed.dlc"), inner="zip")


def _dlc_v3_seed(name: str, out: Path) -> Seed:
    src = DLC_DATA / name
    if not src.exists():
        pytest.skip(f"{src} is absent: no real DLC v3 file to fuzz")
    out.mkdir()
    shutil.copy(src, out / name)
    os.chmod(out / name, 0o644)
    return Seed(out, name, _zip_hot(out / name), inner="zip")


def _qnn_seeds(out: Path) -> dict[str, Seed]:
    """A context binary and two EPContext wrappers (external binary, embedded binary)."""
    from tests.qnn_oracle import IO, ModelSpec, compile_models

    spec = ModelSpec((IO("x", (1, 4, 4, 4), 2, 0.05, 128),), (IO("y", (1, 4, 4, 4), 2, 0.03, 0),), name="q8")
    ext = compile_models([spec], out / "ext")
    emb = compile_models([spec], out / "emb", embed=True)
    bin_path, ctx_ext, ctx_emb = ext.bins[0], ext.ctx_onnx[0], emb.ctx_onnx[0]
    raw = bin_path.read_bytes()
    meta_end = 40 + struct.unpack_from("<Q", raw, 16)[0]
    blob_off = struct.unpack_from("<Q", raw, 24)[0]
    return {
        "qnn": Seed(bin_path.parent, bin_path.name, ((0, meta_end), (blob_off, min(len(raw), blob_off + 0x400)))),
        "epcontext-external": Seed(ctx_ext.parent, ctx_ext.name, ((0, ctx_ext.stat().st_size),)),
        # the embedded binary is the tail of the wrapper's one big attribute: mutate the protobuf around it
        "epcontext-embedded": Seed(ctx_emb.parent, ctx_emb.name, ((0, 512), (ctx_emb.stat().st_size - 512,
                                                                             ctx_emb.stat().st_size))),
    }


SEED_NAMES = ("ctxbin", "onnx", "dlc-v4", "dlc-v3-openpilot", "dlc-v3-deeplab", "qnn", "epcontext-external",
              "epcontext-embedded")


@pytest.fixture(scope="module")
def seeds(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Seed]:
    """Seeds built on first use (a missing optional component skips only its seeds)."""
    root = tmp_path_factory.mktemp("fuzz_seeds")
    built: dict[str, Seed] = {}

    def get(name: str) -> Seed:
        if name not in built:
            if name == "ctxbin":
                built[name] = _ctxbin_seed(tiny_models, root / name)
            elif name == "onnx":
                built[name] = _onnx_seed(tiny_models, root / name)
            elif name == "dlc-v4":
                built[name] = _dlc_v4_seed(tiny_models, root / name)
            elif name.startswith("dlc-v3"):
                built[name] = _dlc_v3_seed(V3_DLCS[name.endswith("deeplab")], root / name)
            else:
                pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn is not installed: no QNN seeds")
                built.update(_qnn_seeds(root / "qnn"))
        return built[name]

    return get


# --------------------------------------------------------------------------- mutations

_point = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 30), st.one_of(st.sampled_from(BOUNDARY_BYTES),
                                                                  st.integers(0, 255))),
    st.tuples(st.just("u32"), st.integers(0, 1 << 30), st.sampled_from(BOUNDARY_WORDS)),
)
_reshape = st.tuples(st.sampled_from(["truncate", "insert", "delete"]), st.integers(0, 1 << 30), st.integers(1, 8))


def _position(at: int, span: tuple[int, int], size: int) -> int:
    """A position in ``span`` (clipped to the buffer) from a drawn integer; scrambled,
    since hypothesis favours small integers and offset 0 is only the magic."""
    lo, hi = span[0], min(span[1], size)
    if lo >= hi:
        lo, hi = 0, size
    return lo + ((at * 0x9E3779B1 + 0x5BD1E995) & 0xFFFFFFFF) % (hi - lo)


def _mutate(buf: bytearray, mutations: list[tuple[str, int, int]], hot: tuple[tuple[int, int], ...],
            use_hot: list[bool]) -> None:
    for (kind, at, value), in_hot in zip(mutations, use_hot):
        if not buf:
            return
        pos = _position(at, hot[at % len(hot)] if in_hot else (0, len(buf)), len(buf))
        if kind == "flip":
            buf[pos] ^= 1 << value
        elif kind == "byte":
            buf[pos] = value
        elif kind == "u32":
            pos = min(pos, max(0, len(buf) - 4))
            buf[pos : pos + 4] = struct.pack("<I", value)[: len(buf) - pos]
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([BOUNDARY_BYTES[at % len(BOUNDARY_BYTES)]]) * value
        else:
            del buf[pos : pos + value]


def _reseal_ctxbin(buf: bytearray) -> None:
    """Re-hash the metadata and the header so a mutation reaches the metadata decoder."""
    import xxhash

    if len(buf) < 64:
        return
    meta_size = struct.unpack_from("<Q", buf, 24)[0]
    if 64 + meta_size <= len(buf):
        struct.pack_into("<Q", buf, 48, xxhash.xxh3_64_intdigest(bytes(buf[64 : 64 + meta_size])))
    struct.pack_into("<Q", buf, 56, xxhash.xxh3_64_intdigest(bytes(buf[:56])))


def _mutate_entries(raw: bytes, data: st.DataObject, mutations: list, use_hot: list[bool]) -> bytes:
    """Mutate a flatbuffer entry of a ZIP and re-zip it with valid CRCs."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    names = [n for n in ("model", "model.params") if n in entries]
    name = data.draw(st.sampled_from(names), label="entry")
    buf = bytearray(entries[name])
    # the flatbuffer head (root, vtables, first tables) holds most offsets
    _mutate(buf, mutations, ((0, 4096),), use_hot)
    entries[name] = bytes(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, payload in entries.items():
            z.writestr(n, payload)
    return out.getvalue()


def _mutated_copy(seed: Seed, data: st.DataObject, where: Path) -> Path:
    """``seed`` copied into ``where`` with its main file mutated."""
    mutations = data.draw(st.lists(_point, min_size=1, max_size=4), label="mutations")
    # some also cut, grow or shrink the file; most mutations go to the parsed bytes
    # (hypothesis favours 0: it must be the rare choice)
    if data.draw(st.integers(0, 3), label="reshape?") == 3:
        mutations.append(data.draw(_reshape, label="reshape"))
    use_hot = data.draw(st.lists(st.integers(0, 3).map(bool), min_size=len(mutations), max_size=len(mutations)),
                        label="in a parsed region")
    raw = seed.path.read_bytes()
    inner = seed.inner and data.draw(st.booleans(), label="inner")
    if inner and seed.inner == "zip":
        out = _mutate_entries(raw, data, mutations, use_hot)
    else:
        buf = bytearray(raw)
        _mutate(buf, mutations, seed.hot, use_hot)
        if inner:
            _reseal_ctxbin(buf)
        out = bytes(buf)
    where.mkdir()
    for sibling in seed.directory.iterdir():
        if sibling.name != seed.main and sibling.is_file():
            os.link(sibling, where / sibling.name)  # read-only use: a hard link costs nothing
    (where / seed.main).write_bytes(out)
    return where / seed.main


# --------------------------------------------------------------------------- the guarantee


def touch_everything(path: Path) -> None:
    """What a user can reach from a file: every graph by name, tensor, weight,
    node attribute and backend binary; then the deep check and inspect."""
    c = ctxbin.load(path)
    for g in c.graphs:
        assert c.graph(g.name) is g
        for t in list(g.tensors.values()) + list(g.inputs) + list(g.outputs):
            _ = (t.name, t.dtype, t.shape, t.encoding)
            if t.data is not None:
                t.numpy()
        for n in g.nodes:
            _ = (n.name, n.op_type, n.namespace, n.inputs, n.outputs, dict(n.attrs))
        if g.binary is not None:
            g.binary.blob.memoryview()
    check(path)
    ctxbin.inspect(path)


def _max_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def assert_only_ctxbin_errors(path: Path) -> None:
    """``touch_everything`` raises nothing or a CtxbinError, in bounded time and memory."""
    rss0, t0 = _max_rss(), time.process_time()
    try:
        touch_everything(path)
    except CtxbinError as e:
        assert str(e)
    # anything else (IndexError, struct.error, KeyError, UnicodeDecodeError, RecursionError,
    # MemoryError, OverflowError, a bare ValueError, ...) propagates and fails the test
    elapsed = time.process_time() - t0
    assert elapsed < MAX_SECONDS, f"{path.name}: {elapsed:.1f} CPU s for one hostile file"
    grown = _max_rss() - rss0
    assert grown < MAX_RSS_GROWTH, f"{path.name}: peak RSS grew by {grown >> 20} MB"


def test_seeds_are_read_whole(seeds: Callable[[str], Seed]) -> None:
    """Unmutated, every seed reads, checks clean and inspects (so mutations start from sound files)."""
    for name in SEED_NAMES:
        try:
            seed = seeds(name)
        except pytest.skip.Exception:
            continue
        touch_everything(seed.path)
        assert check(seed.path) == [], name


_COUNTER = iter(range(1 << 62))


def _fuzz(seeds: Callable[[str], Seed], name: str, tmp_path: Path, data: st.DataObject) -> None:
    path = _mutated_copy(seeds(name), data, tmp_path / f"ex{next(_COUNTER)}")
    try:
        assert_only_ctxbin_errors(path)
    finally:
        shutil.rmtree(path.parent)


@pytest.mark.parametrize("name", SEED_NAMES)
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_load(seeds: Callable[[str], Seed], name: str, tmp_path: Path, data: st.DataObject) -> None:
    _fuzz(seeds, name, tmp_path, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", SEED_NAMES)
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_load_long(seeds: Callable[[str], Seed], name: str, tmp_path: Path, data: st.DataObject) -> None:
    _fuzz(seeds, name, tmp_path, data)


# --------------------------------------------------------------------------- amplification


def test_ctxbin_attributes_sharing_one_range_are_bounded(tmp_path: Path) -> None:
    """Every list attribute of a .ctxbin pointing at the same 20,000-int range:
    2,000 attributes would make 40 million tuple slots from a 220 KB file
    (a 2 MB file, 4 billion). The metadata's work budget stops it at open."""
    import xxhash

    from ctxbin import DType, Graph, Node, Tensor, TensorKind
    from ctxbin.flatbuf import FlatBuffer
    from ctxbin.formats import ctxbin as cb

    n_attrs, n_ints = 2000, 20_000
    attrs: dict[str, tuple[int, ...]] = {f"a{i}": (i,) for i in range(n_attrs)}
    attrs["big"] = tuple(range(n_ints))
    x = Tensor("x", DType.FLOAT32, (1,), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1,), TensorKind.OUTPUT)
    g = Graph("g", (x,), (y,), (Node("n", "Relu", "onnx", ("x",), ("y",), attrs),), {"x": x, "y": y})
    path = tmp_path / "amplified.ctxbin"
    cb.write(ctxbin.Container((g,)), path)
    data = bytearray(path.read_bytes())
    meta_size = struct.unpack_from("<Q", data, 24)[0]
    table = FlatBuffer(bytes(data[64 : 64 + meta_size])).root(cb.IDENTIFIER).tables(cb._C_GRAPHS)[0]
    refs, count = table.vector_span(cb._G_A_REF, 8)
    lens, _ = table.vector_span(cb._G_A_LEN, 4)
    for i in range(count):  # every attribute: ints[0 : n_ints]
        struct.pack_into("<Q", data, 64 + refs + 8 * i, 0)
        struct.pack_into("<I", data, 64 + lens + 4 * i, n_ints)
    struct.pack_into("<Q", data, 48, xxhash.xxh3_64_intdigest(bytes(data[64 : 64 + meta_size])))
    struct.pack_into("<Q", data, 56, xxhash.xxh3_64_intdigest(bytes(data[:56])))
    path.write_bytes(bytes(data))
    rss0, t0 = _max_rss(), time.process_time()
    with pytest.raises(FormatError, match="shared beyond") as e:
        ctxbin.load(path)
    assert time.process_time() - t0 < MAX_SECONDS
    assert _max_rss() - rss0 < 64 << 20
    assert e.value.obj.startswith("graph 'g' attribute #") and e.value.offset is not None
    assert check(path) and "shared beyond" in check(path)[0]
