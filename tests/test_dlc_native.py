"""The C core's DLC v4 open (``ctxbin_dlc_v4_open``, native/dlc_v4.c: both walks, then the checks of
tensor tables, encodings, nodes, params and their data) against the numpy and
Python checks of ctxbin/formats/dlc.py, on a DLC written by ctxbin's
own lowering and on mutated copies of it: both paths give the same container,
or the same FormatError (the C core only says pass/fail; on fail the numpy
checks run and name the problem, or accept what the C core leaves to them)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxbin import hashing
from ctxbin.errors import FormatError
from ctxbin.flatbuf import Rows, walk
from ctxbin.formats import dlc
from ctxbin.ziparchive import ZipArchive

from .native_paths import both_paths, needs_native


def _entries(path: Path) -> dict[str, bytes]:
    z = ZipArchive.open(path)
    return {e.name: bytes(z.read(e.name)) for e in z}


def _rezip(entries: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _value(v: object) -> object:
    return (v.dtype.str, v.shape, v.tolist()) if isinstance(v, np.ndarray) else (type(v).__name__, v)


def _summary(path: Path) -> tuple:
    """What dlc.read gives (every tensor, its data's place, every node and
    param), or the error: the read checks everything at open, so making the
    nodes and tensors afterwards never fails."""
    try:
        graphs = dlc.read(path).graphs
    except FormatError as e:
        return ("error", type(e).__name__, str(e))
    out = []
    for g in graphs:
        tensors = [(t.name, t.dtype, t.shape, t.kind, t.encoding,
                    None if t.data is None else (t.data.nbytes, t.data.origin)) for t in g.tensors.values()]
        nodes = [(n.name, n.op_type, n.domain, n.inputs, n.outputs, [(k, _value(v)) for k, v in n.attrs.items()])
                 for n in g.nodes]
        out.append((g.name, [t.name for t in g.inputs], [t.name for t in g.outputs], nodes, tensors))
    return ("ok", out)


def record_c_checks(monkeypatch: pytest.MonkeyPatch) -> list:
    """What each call of the C core's DLC open returns from now on (None: it
    left the file to the Python checks; made only when there is a C core)."""
    results: list = []
    real = dlc._v4_native
    monkeypatch.setattr(dlc, "_v4_native", lambda *a: results.append(real(*a)) or results[-1])
    return results


def _field_positions(path: Path) -> list[tuple[str, int, int]]:
    """(entry, byte offset in it, width) of the fields the open-time checks read:
    tensor types, data types, dims, encoding kinds, TensorData references."""
    z = ZipArchive.open(path)
    doc = dlc._Doc(z, str(path))
    out = []
    model = dlc._flatbuffer(doc, "model", doc.entry("model"), b"NETD")
    w = walk(model, dlc._V4_MODEL)
    t = Rows(model, w.pos("Tensor"), "Tensor")
    for index in (dlc._V4.T_TYPE, dlc._V4.T_DTYPE, dlc._V4.T_DIMS, dlc._V4.T_NAME):
        out += [("model", int(p) + 8, 4) for p in t.field(index, 4) if p >= 0]
    q = Rows(model, w.pos("Quant"), "Quant")
    out += [("model", int(p) + 8, 4) for p in q.field(dlc._V4.Q_ENCODING, 4) if p >= 0]
    params = dlc._flatbuffer(doc, "model.params", doc.entry("model.params"), b"NETP")
    p = walk(params, dlc._V4_PARAMS)
    td = Rows(params, p.pos("TensorData"), "TensorData")
    for index in (dlc._V4.TD_NAME, dlc._V4.TD_REF):
        out += [("model.params", int(x) + 8, 4) for x in td.field(index, 4) if x >= 0]
    ref = Rows(params, p.pos("BinRef"), "BinRef")
    for index in (dlc._V4.REF_OFFSET, dlc._V4.REF_SIZE):
        out += [("model.params", int(x) + 8, 8) for x in ref.field(index, 8) if x >= 0]
    # what the node checks read: param kinds, scalar types and values
    prm = Rows(model, w.pos("Param"), "Param")
    out += [("model", int(x) + 8, 4) for x in prm.field(dlc._V4.A_KIND, 4) if x >= 0]
    sc = Rows(model, w.pos("Scalar"), "Scalar")
    out += [("model", int(x) + 8, 4) for x in sc.field(dlc._V4.V_DTYPE, 4) if x >= 0]
    out += [("model", int(x) + 8, 8) for x in sc.field(dlc._V4.V_INT, 8) if x >= 0]
    return out


def _walks(path: Path) -> bool:
    """Whether both flatbuffers pass the open-time schema walks."""
    doc = dlc._Doc(ZipArchive.open(path), str(path))
    try:
        walk(dlc._flatbuffer(doc, "model", doc.entry("model"), b"NETD"), dlc._V4_MODEL)
        walk(dlc._flatbuffer(doc, "model.params", doc.entry("model.params"), b"NETP"), dlc._V4_PARAMS)
    except FormatError:
        return False
    return True


def _both(path: Path) -> list[tuple]:
    return [_summary(path) for _ in both_paths()]


@needs_native
def test_native_checks_take_the_fast_path_on_a_good_file(own_dlc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    calls = record_c_checks(monkeypatch)
    (g,) = dlc.read(own_dlc).graphs
    assert calls and calls[0] is not None  # the C core accepted it: no numpy re-check
    c = calls[0]
    assert c.ranges[0][:2] == (0, len(g.tensors))
    assert (c.static_of[: len(g.tensors)] >= 0).sum() == len(c.where) == len(g.weights) > 10
    a, b = _both(own_dlc)
    assert a == b and a[0] == "ok"


@needs_native
@pytest.mark.parametrize("what", ["dup_tensor", "dup_data", "missing_data", "size"])
def test_native_failures_are_named_by_the_numpy_checks(own_dlc: Path, tmp_path: Path, what: str) -> None:
    """Each kind of bad table: the C core refuses, the numpy checks name it, on both paths alike."""
    e = _entries(own_dlc)
    doc = dlc._Doc(ZipArchive.open(own_dlc), str(own_dlc))
    (g,) = dlc.read(own_dlc).graphs
    w1, w2 = next((a, b) for a in g.weights for b in g.weights if a is not b and len(a.name) == len(b.name))
    if what in ("dup_tensor", "missing_data"):
        entry, old, new = "model", w1.name.encode(), (w2.name if what == "dup_tensor" else "x" * len(w1.name)).encode()
    elif what == "dup_data":
        entry, old, new = "model.params", w1.name.encode(), w2.name.encode()
    else:  # a dim of w1 grows: its data no longer has the size its shape needs
        entry = "model"
        raw = bytearray(e[entry])
        model = dlc._flatbuffer(doc, "model", doc.entry("model"), b"NETD")
        w = walk(model, dlc._V4_MODEL)
        row = w.texts("Tensor", "name").index(w1.name)
        at = int(w.column("Tensor", "dims")[0][row]) + 8
        raw[at : at + 4] = (int.from_bytes(raw[at : at + 4], "little") + 1).to_bytes(4, "little")
        e[entry] = bytes(raw)
        old = new = b""
    if old:
        assert len(old) == len(new) and e[entry].count(old) >= 1
        e[entry] = e[entry].replace(old, new, 1)
    path = _rezip(e, tmp_path / f"{what}.dlc")
    a, b = _both(path)
    assert a == b and a[0] == "error", a
    assert {"dup_tensor": "duplicate tensor name", "dup_data": "duplicate tensor data",
            "missing_data": "has no data", "size": "data bytes for shape"}[what] in a[2]


@needs_native
@pytest.mark.parametrize("entry", ["model", "model.params"])
@pytest.mark.parametrize("damage", ["crc", "magic", "major", "identifier", "short", "deflated"])
def test_c_read_leaves_damaged_entries_to_python(own_dlc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 entry: str, damage: str) -> None:
    """What ctxbin_dlc_v4_read checks of each entry before opening it (CRC,
    prefix, identifier; stored): it declines, and both paths raise the Python
    reads' error, or (a deflated entry) read the same nodes."""
    e = _entries(own_dlc)
    raw = bytearray(e[entry])
    if damage == "magic":
        raw[0] ^= 0xFF
    elif damage == "major":
        raw[2] = 5
    elif damage == "identifier":
        raw[12:16] = b"NETX"
    elif damage == "short":
        del raw[15:]
    e[entry] = bytes(raw)
    path = tmp_path / "d.dlc"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in e.items():
            z.writestr(name, data, zipfile.ZIP_DEFLATED if damage == "deflated" and name == entry else zipfile.ZIP_STORED)
    if damage == "crc":  # one byte of the stored entry changed after zipping: its recorded CRC-32 no longer matches
        blob = bytearray(path.read_bytes())
        blob[ZipArchive.open(path).entry(entry).data_offset + 20] ^= 1
        path.write_bytes(blob)
    monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
    calls = record_c_checks(monkeypatch)
    a, b = _both(path)
    assert calls and calls[0] is None
    assert a == b
    expect = {"crc": "CRC-32", "magic": "D5 0A", "major": "major version 5", "identifier": "identifier",
              "short": "", "deflated": None}[damage]
    if expect is None:
        assert a[0] == "ok" and a[1][0][:4] == _summary(own_dlc)[1][0][:4]  # same nodes (origins name other offsets)
    else:
        assert a[0] == "error" and expect in a[2], a


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_native_checks_agree_with_numpy(own_dlc: Path, tmp_path: Path, data: st.DataObject) -> None:
    """Overwrite the fields the open-time checks read (or any byte of the two
    flatbuffer entries): both paths give the same container or the same error."""
    e = _entries(own_dlc)
    fields = _field_positions(own_dlc)
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            entry, at, width = data.draw(st.sampled_from(fields))
            value = data.draw(st.one_of(st.integers(0, 8), st.integers(0, (1 << (8 * width)) - 1),
                                        st.sampled_from([0x7FFFFFFF, 0x0232, 0x0108, 0x0416, 4, 3, 0, 1])))
            raw = bytearray(e[entry])
            raw[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        else:
            entry = data.draw(st.sampled_from(["model", "model.params"]))
            raw = bytearray(e[entry])
            raw[data.draw(st.integers(8, len(raw) - 1))] = data.draw(st.integers(0, 255))
        e[entry] = bytes(raw)
    path = _rezip(e, tmp_path / "m.dlc")
    if not _walks(path):
        return  # a table the schema walks refuse: test_flatbuf_walk.py compares those
    a, b = _both(path)
    assert a == b


def test_rows_mapping_is_the_name_to_row_dict() -> None:
    made = []
    rows = dlc._Rows(3, lambda: made.append(1) or ["a", "b", "c"])
    assert len(rows) == 3 and not made  # the length is known without decoding any name
    assert list(rows) == ["a", "b", "c"] and rows["c"] == 2 and "b" in rows and "z" not in rows
    assert dict(rows) == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(KeyError):
        rows["z"]


def test_walk_check_utf8_names_the_bad_string(own_dlc: Path, tmp_path: Path) -> None:
    e = _entries(own_dlc)
    (g,) = dlc.read(own_dlc).graphs
    name = g.weights[0].name.encode()
    e["model.params"] = e["model.params"].replace(name, b"\xff" + name[1:], 1)
    for _ in both_paths():
        with pytest.raises(FormatError, match="not valid UTF-8"):
            dlc.read(_rezip(e, tmp_path / "utf8.dlc"))


def _name_hash(name: bytes) -> int:
    """native/dlc_v4.c's name_hash, to make names that collide in its table."""
    m = (1 << 64) - 1
    n = len(name)
    h = 0x9E3779B97F4A7C15 ^ n
    while len(name) >= 8:
        h = ((h ^ int.from_bytes(name[:8], "little")) * 0xFF51AFD7ED558CCD) & m
        h = (h << 32 | h >> 32) & m
        name = name[8:]
    h = ((h ^ int.from_bytes(name, "little")) * 0xC4CEB9FE1A85EC53) & m
    return h ^ (h >> 32)


def _colliding_dlc(path: Path, names: list[bytes]) -> Path:
    """A chain of Eltwise_Binary nodes, each adding one weight named by names."""
    from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind
    from ctxbin.weights import Blob

    count = len(names)
    x = Tensor("x", DType.FLOAT32, (1,), TensorKind.INPUT)
    tensors, nodes, prev = {"x": x}, [], "x"
    for i, raw in enumerate(names):
        w = raw.decode()
        weight = Blob.from_array(np.full(1, i, np.float32))
        tensors[w] = Tensor(w, DType.FLOAT32, (1,), TensorKind.STATIC, data=weight)
        out = f"a{i}"
        tensors[out] = Tensor(out, DType.FLOAT32, (1,), TensorKind.OUTPUT if i == count - 1 else TensorKind.NATIVE)
        nodes.append(Node(f"add{i}", "Eltwise_Binary", "qnn", (prev, w), (out,), {"operation": 0}))
        prev = out
    graph = Graph("g", (x,), (tensors[prev],), tuple(nodes), tensors)
    dlc.write(Container(graphs=(graph,)), path)
    return path


def _assert_c_table_gives_up(path: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    results = record_c_checks(monkeypatch)
    got = [_summary(path) for _ in both_paths()]
    assert got[0] == got[1] and got[0][0] == "ok"
    assert results and all(r is None for r in results)  # the C table gave up: Python matched
    assert [float(t.numpy()[0]) for t in dlc.read(path).graphs[0].weights] == list(range(count))


@needs_native
def test_colliding_names_leave_the_c_table_for_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names made to collide in the C core's (unkeyed) hash table: its probing
    stops early and the Python path, with randomized hashing, reads the file."""
    count = 80  # tensor table: 161 rows -> 512 slots; TensorData table: 80 -> 256 slots
    names = [n for n in (f"w{i}".encode() for i in range(200_000)) if _name_hash(n) & 511 == 0][:count]
    assert len(names) == count
    _assert_c_table_gives_up(_colliding_dlc(tmp_path / "collide.dlc", names), monkeypatch, count)


@needs_native
@pytest.mark.parametrize("length", [4, 5, 6, 7, 8, 9, 10, 11])
def test_names_of_any_length_collide_as_the_hash_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, length: int) -> None:
    """Colliding names of one length, every length mod 8 (the C hash loads a
    name's last, partial word as one load ending at its NUL, reaching back
    into its length prefix when the name is short): the C table gives up
    exactly as _name_hash predicts, so it hashes every length alike."""
    count = 80
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def name(i: int) -> bytes:
        out = ""
        for _ in range(length - 1):
            i, d = divmod(i, len(digits))
            out += digits[d]
        return ("w" + out).encode()

    names = [n for n in map(name, range(200_000)) if _name_hash(n) & 511 == 0][:count]
    assert len(names) == count and len(set(names)) == count
    path = _colliding_dlc(tmp_path / f"collide{length}.dlc", names)
    _assert_c_table_gives_up(path, monkeypatch, count)


@needs_native
@pytest.mark.parametrize("params", [3, 70])
def test_many_tensor_params_leave_the_c_checks_for_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: int
) -> None:
    """A node's tensor params are matched with its TensorData pairwise in C, up
    to 64 of them; a node with more goes to the Python checks (dicts): the same
    graph either way, every param an array equal to what was written."""
    from ctxbin.ir import Container, DType, Graph, Node, Tensor, TensorKind

    x = Tensor("x", DType.FLOAT32, (1,), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1,), TensorKind.OUTPUT)
    attrs = {f"p{i:02d}": np.array([i, i + 1], np.uint32) for i in range(params)}
    graph = Graph("g", (x,), (y,), (Node("n", "ElementWiseNeuron", "qnn", ("x",), ("y",), attrs),), {"x": x, "y": y})
    path = tmp_path / "params.dlc"
    dlc.write(Container(graphs=(graph,)), path)

    results = record_c_checks(monkeypatch)
    got = [_summary(path) for _ in both_paths()]
    assert got[0] == got[1] and got[0][0] == "ok"
    assert (results[0] is not None) == (params <= 64)  # the C core passes the graph, or leaves it to Python
    (node,) = dlc.read(path).graphs[0].nodes
    assert sorted(node.attrs) == sorted(attrs) and all(np.array_equal(node.attrs[k], v) for k, v in attrs.items())


@needs_native
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_c_open_takes_exactly_the_utf8_names_python_decodes(own_dlc: Path, tmp_path: Path, data: st.DataObject) -> None:
    """A weight renamed (in both flatbuffers) to bytes that may or may not be
    UTF-8: the C open accepts the file exactly when Python's strict decoder
    takes them (ASCII runs are checked many bytes a step, from a 16-byte
    boundary on: any weight, so the bytes land anywhere in those steps), and
    both paths agree."""
    e = _entries(own_dlc)
    names = sorted({t.name for t in dlc.read(own_dlc).graphs[0].weights if len(t.name) >= 12})
    old = data.draw(st.sampled_from(names)).encode()
    text = data.draw(st.text(min_size=1, max_size=len(old))).encode()
    new = data.draw(st.one_of(st.just((text + b"_" * len(old))[: len(old)]),
                              st.binary(min_size=len(old), max_size=len(old))))
    if b"\0" in new or any(new in v for v in e.values()):
        return  # a name must stay one NUL-terminated string, and new
    for entry in ("model", "model.params"):
        e[entry] = e[entry].replace(old, new)
    path = _rezip(e, tmp_path / "names.dlc")
    try:
        new.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    got = [_summary(path) for _ in both_paths()]
    assert got[0] == got[1] and (got[0][0] == "ok") == valid
    doc = dlc._Doc(ZipArchive.open(path), str(path))
    core = hashing._native_core  # built (needs_native), even where the environment turns it off
    opened = dlc._v4_native(core, doc)
    assert (opened is not None) == valid


@needs_native
def test_read_io_layout_is_the_headers() -> None:
    """dlc.py's names for the slots of ctxbin_dlc_v4_read's io are the
    header's CTXBIN_DLC_IO_* values, and io has room for both walks' nrows."""
    lib = hashing._native_core.lib
    assert [getattr(lib, f"CTXBIN_DLC_IO_{k}") for k in dlc._IO_NAMES] == list(range(len(dlc._IO_NAMES)))
    assert dlc._V4_IO.size == 8 * (lib.CTXBIN_DLC_IO_NROWS + len(dlc._V4_MODEL.types) + len(dlc._V4_PARAMS.types))


@needs_native
def test_c_read_hands_over_each_array_once(own_dlc: Path) -> None:
    """The arrays ctxbin_dlc_v4_read hands over are taken by what uses them
    first and freed with it; the open frees the rest. Containers left
    untouched, with only their tensor names read, or read whole, dropped in
    any order, free each array once (a double free would abort) and read
    the same as a fresh read."""
    expect = _summary(own_dlc)
    untouched, names, whole = (dlc.read(own_dlc) for _ in range(3))
    assert list(names.graphs[0].tensors) == [t[0] for t in expect[1][0][4]]
    g = whole.graphs[0]
    assert [(n.name, n.inputs) for n in g.nodes] == [(n[0], n[3]) for n in expect[1][0][3]]
    assert all(t.data is None or t.data.nbytes == t.numpy().nbytes for t in g.tensors.values())
    del names, g
    assert len(untouched.graphs[0].nodes) == len(expect[1][0][3])  # taken after another container went
    del whole, untouched
    assert _summary(own_dlc) == expect


def test_c_checks_know_the_layout_of_the_dlc_schemas() -> None:
    """native/dlc_v4.c runs its checks with the cell columns and row widths of
    the DLC schemas as constants (DLC_LAYOUT) when a call passes exactly those
    (any other layout is checked too, only slower): they are the ones
    ctxbin/formats/dlc.py passes (_NATIVE_COLS, and 1 + 2 x fields a row)."""
    import re

    src = Path(__file__).resolve().parents[1] / "native" / "dlc_v4.c"
    if not src.exists():
        pytest.skip("the C core's sources are not here")
    found = re.search(r"DLC_LAYOUT = \{\s*\{([^}]*)\},\s*\{([^}]*)\}\}", src.read_text())
    assert found, "DLC_LAYOUT not found in native/dlc_v4.c"
    cols, widths = ([int(v) for v in group.split(",")] for group in found.groups())
    assert cols == dlc._NATIVE_COLS.tolist()
    assert widths == [1 + 2 * len(schema.types[schema.index[t]].fields) for schema, types in dlc._NATIVE_TABLES
                      for t in types]


def test_a_region_two_tensors_share_names_the_first_in_the_file_whatever_is_made_first(own_dlc: Path,
                                                                                       tmp_path: Path) -> None:
    """A node's tensor param pointed at a graph weight's bytes in
    model.params.bin (same size): the two share one Blob, and its origin
    names the tensor that comes first in the file, on both paths and in any
    order of first use (the Python path makes the nodes at open; found by a
    fuzz run where the two paths named different tensors)."""
    c = dlc.read(own_dlc)
    (g,) = c.graphs
    weights = {t.name: t.nbytes for t in g.weights}
    z = ZipArchive.open(own_dlc)
    doc = dlc._Doc(z, str(own_dlc))
    p = walk(dlc._flatbuffer(doc, "model.params", doc.entry("model.params"), b"NETP"), dlc._V4_PARAMS)
    names = p.texts("TensorData", "name")
    ref = p.column("TensorData", "ref")[0].tolist()
    offset_at = Rows(p.fb, p.pos("BinRef"), "BinRef").field(dlc._V4.REF_OFFSET, 8)
    sizes = p.scalars("BinRef", "size").tolist()
    rows = {name: r for r, name in enumerate(names)}
    param = next(n for n in names if n not in weights and ref[rows[n]] >= 0
                 and any(s == sizes[ref[rows[n]]] for s in weights.values()))
    weight = next(n for n, s in weights.items() if s == sizes[ref[rows[param]]])
    e = _entries(own_dlc)
    buf = bytearray(e["model.params"])
    at = int(offset_at[ref[rows[param]]]) + 8
    buf[at : at + 8] = int(p.scalars("BinRef", "offset")[ref[rows[weight]]]).to_bytes(8, "little")
    e["model.params"] = bytes(buf)
    path = _rezip(e, tmp_path / "shared.dlc")
    origins = set()
    for _ in both_paths():
        for nodes_first in (False, True):
            (g,) = dlc.read(path).graphs
            if nodes_first:
                list(g.nodes)
            blob = g.tensors[weight].data
            list(g.nodes)
            origins.add(blob.origin[1])
    assert origins == {f"{g.name}/{weight}"}
