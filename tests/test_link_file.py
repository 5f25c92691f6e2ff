"""``link_to_file``: linking straight into a ``.ctxbin`` in one pass over the
weights (compare, hash and write together) gives exactly the bytes and the
report of ``save(link(...))``, whether every candidate is equal (the one-pass
path) or some differ (the two-pass path takes over), for ONNX, ``.ctxbin``
and DLC inputs, and keeps the guarantees of the two-pass path: checksums of
``.ctxbin`` inputs, atomic replacement, clear errors."""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctxbin
from ctxbin import dedup
from ctxbin.errors import ChecksumError, LinkError
from ctxbin.fileio import TEMP_SUFFIX
from ctxbin.formats import ctxbin as ctxbin_format
from ctxbin.ir import BackendBinary
from ctxbin.weights import Blob
from tests.ir_graphs import add_chain

from .native_paths import both_paths
from .shared_data import DLC_DIR

link_module = importlib.import_module("ctxbin.link")  # the module, not the function ctxbin.link

# Larger than the C core's chunk (256 KiB), so a difference can sit past the
# first chunk a pass has already written.
BIG = 300 << 10


def _arr(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _both_ways(tmp_path: Path, inputs, **kw) -> tuple[bytes, ctxbin.LinkReport]:
    """The one-call file and report, checked against link() then save()."""
    fast, slow = tmp_path / "fast.ctxbin", tmp_path / "slow.ctxbin"
    report = ctxbin.link_to_file(inputs, fast, **kw)
    c, want = ctxbin.link(inputs, **kw)
    ctxbin.save(c, slow)
    assert fast.read_bytes() == slow.read_bytes()
    assert report == want
    assert not [p for p in os.listdir(tmp_path) if p.endswith(TEMP_SUFFIX)]
    return fast.read_bytes(), report


@pytest.fixture
def one_pass_only(monkeypatch):
    """Fail if the two-pass plan runs: the one-pass path must do the job."""
    if not ctxbin.native_available():
        pytest.skip("the one-pass link needs the C core (not built, or disabled by CTXBIN_NO_NATIVE)")

    def refuse(*a, **k):
        raise AssertionError("the two-pass link ran")

    monkeypatch.setattr(link_module, "hash_and_plan", refuse)


def test_onnx_variants_one_pass(tiny_models, tmp_path, one_pass_only):
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    out = tmp_path / "fcn.ctxbin"
    report = ctxbin.link_to_file([a, b], out)
    assert report.bytes_after * 2 == report.bytes_before
    assert [g.shared_fraction for g in report.graphs] == [1.0, 1.0]
    f = ctxbin.load(out, verify=True)
    assert f.graph_names == ["landscape", "portrait"]
    for t in f.graph("landscape").weights:
        assert f.graph("portrait").tensors[t.name].data is t.data
        np.testing.assert_array_equal(t.data.array("u1", (t.nbytes,)),
                                      a.graphs[0].tensors[t.name].data.array("u1", (t.nbytes,)))


def test_same_bytes_and_report_as_link_then_save(tiny_models, tmp_path):
    for native in both_paths():
        d = tmp_path / str(native)
        d.mkdir()
        a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
        b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
        _both_ways(d, [a, b], metadata={"by": "test"})
        first = next(iter(a.graphs[0].weights)).name
        _, report = _both_ways(d, [a, b], names=["x", "y"], exclude=[first])
        assert report.excluded == (first,)


def _ctxbin_sources(tiny_models, tmp_path: Path) -> list[Path]:
    paths = []
    for name in ("fcn_landscape", "fcn_portrait"):
        p = tmp_path / f"{name}.ctxbin"
        ctxbin.save(ctxbin.from_onnx(tiny_models[name], name=name), p)
        paths.append(p)
    return paths


def test_ctxbin_inputs_one_pass(tiny_models, tmp_path, one_pass_only):
    out = tmp_path / "linked.ctxbin"
    report = ctxbin.link_to_file([ctxbin.load(p) for p in _ctxbin_sources(tiny_models, tmp_path)], out)
    assert report.bytes_after * 2 == report.bytes_before
    assert ctxbin_format.check(out) == []


def test_ctxbin_inputs_same_as_two_pass(tiny_models, tmp_path):
    _both_ways(tmp_path, [ctxbin.load(p) for p in _ctxbin_sources(tiny_models, tmp_path)])


def test_dlc_inputs(tmp_path):
    src = DLC_DIR / "openpilot_dmonitoring_model_q_v3.dlc"
    if not src.exists():
        pytest.skip(f"real DLC files are not in {DLC_DIR}")
    a, b = ctxbin.load(src), ctxbin.load(src)
    n = len(a.graphs)
    _, report = _both_ways(tmp_path, [a, b], names=[f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)])
    assert report.bytes_after * 2 == report.bytes_before > 0
    assert report.conflicts == ()


def test_conflicts_fall_back_to_two_pass(tmp_path):
    # same name, same length, different bytes: found past the first chunk
    # (already written) or in a small tensor; reported, never merged
    w, v = _arr(0, BIG // 4), _arr(1, 8)
    w2 = w.copy()
    w2[-1] += 1
    g1 = add_chain("g1", {"w": w, "v": v, "s": _arr(2, 3)})
    g2 = add_chain("g2", {"w": w2, "v": v.copy(), "s": _arr(3, 3)})
    for native in both_paths():
        d = tmp_path / str(native)
        d.mkdir()
        _, report = _both_ways(d, [g1, g2])
        assert sorted(c.name for c in report.conflicts) == ["s", "w"]
        assert report.bytes_after == w.nbytes * 2 + v.nbytes + 2 * 12


def test_include_exclude_and_share_modes(tmp_path):
    same, other = _arr(0, BIG // 4), _arr(1, 16)
    g1 = add_chain("g1", {"w": same, "v": other, "u": _arr(5, 4)})
    g2 = add_chain("g2", {"w": same.copy(), "v": other.copy(), "t": _arr(5, 4)})
    cases = [
        {"include": ["w"]}, {"exclude": ["w"]}, {"include": ["w", "v"], "exclude": ["v"]},
        {"share": "none"}, {"share": "content"}, {"share": "content", "exclude": ["u"]},
    ]
    for i, kw in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        _both_ways(d, [g1, g2], **kw)


def test_share_none_runs_in_one_pass(tmp_path, one_pass_only):
    g1 = add_chain("g1", {"w": _arr(0, 64)})
    g2 = add_chain("g2", {"w": _arr(0, 64)})
    r = ctxbin.link_to_file([g1, g2], tmp_path / "n.ctxbin", share="none")
    assert r.bytes_after == r.bytes_before == 2 * 256


def test_corrupted_ctxbin_input_is_caught_and_nothing_is_written(tiny_models, tmp_path):
    src = tmp_path / "a.ctxbin"
    ctxbin.save(ctxbin.from_onnx(tiny_models["fcn_landscape"], name="a"), src)
    data = bytearray(src.read_bytes())
    data[-5] ^= 0xFF  # inside the last blob
    src.write_bytes(bytes(data))
    out = tmp_path / "out.ctxbin"
    out.write_bytes(b"old contents")
    for native in both_paths():
        # the input linked with itself: every candidate equal, one pass runs to the end
        with pytest.raises(ChecksumError) as e:
            ctxbin.link_to_file([ctxbin.load(src), ctxbin.load(src)], out, names=["a", "b"])
        assert str(src) in str(e.value)
        # and linked with a clean copy: candidates differ, the two-pass path raises it
        clean = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="b")
        with pytest.raises(ChecksumError):
            ctxbin.link_to_file([ctxbin.load(src), clean], out)
        assert out.read_bytes() == b"old contents"
        assert not [p for p in os.listdir(tmp_path) if p.endswith(TEMP_SUFFIX)]


def test_errors_before_anything_is_written(tmp_path):
    g = add_chain("g", {"w": _arr(0, 4)})
    out = tmp_path / "o.ctxbin"
    with pytest.raises(LinkError, match="used by both"):
        ctxbin.link_to_file([g, g], out)
    with pytest.raises(LinkError, match="no weight"):
        ctxbin.link_to_file([g], out, include=["nope"])
    with pytest.raises(FileNotFoundError):
        ctxbin.link_to_file([g], tmp_path / "missing" / "o.ctxbin")
    assert not out.exists()


def test_many_graphs_with_one_name_and_graph_binaries(tmp_path):
    # more same-name candidates than one native group holds (64), and a graph
    # carrying a backend binary: both go the two-pass way, with the same result
    w = _arr(0, 32)
    graphs = [add_chain(f"g{i}", {"w": w.copy()}) for i in range(70)]
    _, report = _both_ways(tmp_path, graphs)
    assert report.bytes_after == w.nbytes
    d = tmp_path / "bin"
    d.mkdir()
    binary = BackendBinary("qnn", Blob(np.arange(100, dtype=np.uint8)), "g0")
    with_bin = dataclasses.replace(graphs[0], binary=binary)
    _both_ways(d, [with_bin, graphs[1]])


def test_other_formats_are_saved_by_extension(tmp_path):
    g1 = add_chain("g1", {"w": _arr(0, 4)})
    report = ctxbin.link_to_file([g1], tmp_path / "one.onnx")
    assert report.bytes_after == 16
    assert ctxbin.load(tmp_path / "one.onnx").graph_names


def test_cli_link_writes_the_same_file(tiny_models, tmp_path, capsys):
    from ctxbin.cli import main

    out = tmp_path / "cli.ctxbin"
    assert main(["link", str(tiny_models["fcn_landscape"]), str(tiny_models["fcn_portrait"]),
                 "--names", "landscape,portrait", "-o", str(out)]) == 0
    assert "linked 2 graphs" in capsys.readouterr().out
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    c, _ = ctxbin.link([a, b])
    ctxbin.save(c, tmp_path / "lib.ctxbin")
    assert out.read_bytes() == (tmp_path / "lib.ctxbin").read_bytes()


def test_write_error_is_raised(tmp_path):
    if not ctxbin.native_available():
        pytest.skip("needs the C core (not built, or disabled by CTXBIN_NO_NATIVE)")
    p = tmp_path / "ro"
    p.write_bytes(b"")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            dedup.hash_and_write(["a"], [b"x" * 1000], fd, [0])
    finally:
        os.close(fd)


def test_hash_and_write_hashes_and_writes_canonical_tensors(tmp_path):
    if not ctxbin.native_available():
        pytest.skip("needs the C core (not built, or disabled by CTXBIN_NO_NATIVE)")
    import xxhash

    bufs = [b"a" * 5000, b"b" * 100, b"a" * 5000, b"c" * 100, b"b" * 100]
    keys = ["w", "v", "w", "u", "v"]
    canon = dedup.candidate_plan(keys, [len(b) for b in bufs])
    assert canon.tolist() == [0, 1, 0, 3, 1]
    offsets = [0, 5000, 0, 5100, 0]
    p = tmp_path / "o"
    with open(p, "wb") as f:
        h = dedup.hash_and_write(keys, bufs, f.fileno(), offsets)
    assert h.tolist() == [xxhash.xxh3_64_intdigest(b) for b in bufs]
    assert p.read_bytes() == b"a" * 5000 + b"b" * 100 + b"c" * 100
    # a candidate that differs ends the pass
    with open(p, "wb") as f:
        assert dedup.hash_and_write(["w", "w"], [b"a" * 5000, b"a" * 4999 + b"b"], f.fileno(), [0, 0]) is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(  # graphs: tensor name -> (length class, content seed)
        st.dictionaries(st.sampled_from("abcde"), st.tuples(st.sampled_from([1, 3, 70, BIG // 4]), st.integers(0, 2)),
                        min_size=1, max_size=4),
        min_size=1, max_size=4,
    ),
    st.sampled_from(["name+content", "content", "none"]),
)
def test_property_same_as_link_then_save(tmp_path_factory, graphs, share):
    d = tmp_path_factory.mktemp("prop")
    inputs = [
        add_chain(f"g{i}", {n: _arr(seed, size) for n, (size, seed) in ws.items()}) for i, ws in enumerate(graphs)
    ]
    _both_ways(d, inputs, share=share)


def test_output_may_replace_an_input(tiny_models, tmp_path):
    a, b = tmp_path / "a.ctxbin", tmp_path / "b.ctxbin"
    ctxbin.save(ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape"), a)
    ctxbin.save(ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait"), b)
    c, _ = ctxbin.link([ctxbin.load(a), ctxbin.load(b)])
    ctxbin.save(c, tmp_path / "want.ctxbin")
    # the weights are read from the mapping of the file being replaced
    ctxbin.link_to_file([ctxbin.load(a), ctxbin.load(b)], a, durable=False)
    assert a.read_bytes() == (tmp_path / "want.ctxbin").read_bytes()


@pytest.mark.parametrize("where", [0, 1000, BIG - 1])
def test_a_late_difference_among_many_groups(tmp_path, where):
    # many large groups run on the thread pool; one member differs at `where`
    # (bytes): the pass stops, the two-pass link gives the usual answer
    ws = {f"w{i}": _arr(i, BIG // 4) for i in range(12)}
    other = {k: v.copy() for k, v in ws.items()}
    other["w7"].view(np.uint8)[where] ^= 1
    _, report = _both_ways(tmp_path, [add_chain("g1", ws), add_chain("g2", other)])
    assert [c.name for c in report.conflicts] == ["w7"]
    assert report.bytes_after == 13 * BIG


def test_progress_reaches_every_byte(tiny_models, tmp_path):
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    seen: list[tuple[int, int]] = []
    report = ctxbin.link_to_file([a, b], tmp_path / "p.ctxbin", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == report.bytes_before


def test_hash_and_write_declines_without_the_c_core(tmp_path):
    for native in both_paths():
        with open(tmp_path / "o", "wb") as f:
            h = dedup.hash_and_write(["w"], [b"abc"], f.fileno(), [0])
        assert (h is None) == (not native)


_KILLED_CHILD = """
import sys, time
import numpy as np
import ctxbin
from ctxbin.ir import DType, Graph, Node, Tensor, TensorKind
from ctxbin.weights import Blob

def graph(name):
    w = Tensor("w", DType.FLOAT32, (1024,), TensorKind.STATIC, data=Blob.from_array(np.arange(1024, dtype=np.float32)))
    x = Tensor("x", DType.FLOAT32, (1024,), TensorKind.INPUT)
    y = Tensor("y", DType.FLOAT32, (1024,), TensorKind.OUTPUT)
    return Graph(name, (x,), (y,), (Node("add", "Add", "onnx", ("x", "w"), ("y",)),), {"x": x, "w": w, "y": y})

def stall(done, total):
    print("written", flush=True)  # the data section is in the temporary file, the header not yet
    time.sleep(60)

ctxbin.link_to_file([graph("a"), graph("b")], sys.argv[1], progress=stall)
"""


def test_killed_mid_write_leaves_the_target_alone(tmp_path):
    import signal
    import subprocess
    import sys

    if not ctxbin.native_available():
        pytest.skip("the one-pass link needs the C core (not built, or disabled by CTXBIN_NO_NATIVE)")
    out = tmp_path / "out.ctxbin"
    out.write_bytes(b"old contents")
    env = {**os.environ, "PYTHONPATH": str(Path(ctxbin.__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(out)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"written\n"
        temps = [p for p in os.listdir(tmp_path) if p.endswith(TEMP_SUFFIX)]
        assert len(temps) == 1  # being written beside the target
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert out.read_bytes() == b"old contents"


def test_hash_and_write_many_large_groups(tmp_path):
    # sizes around the C core's chunk (256 KiB) and deferred-write (768 KiB)
    # limits, members equal to their group's first, on the thread pool
    if not ctxbin.native_available():
        pytest.skip("needs the C core (not built, or disabled by CTXBIN_NO_NATIVE)")
    import xxhash

    rng = np.random.default_rng(7)
    firsts = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
              for n in rng.integers(1, 1_600_000, 24)]
    keys, bufs = [], []
    for copy in range(3):  # each tensor in three "graphs"
        for i, b in enumerate(firsts):
            keys.append(f"t{i}")
            bufs.append(bytes(b) if copy else b)
    canon = dedup.candidate_plan(keys, [len(b) for b in bufs])
    offsets, pos = [0] * len(bufs), 100
    for i in np.flatnonzero(canon == np.arange(len(bufs))):
        offsets[i] = pos
        pos = (pos + len(bufs[i]) + 63) // 64 * 64
    p = tmp_path / "o"
    with open(p, "wb") as f:
        os.ftruncate(f.fileno(), pos)
        h = dedup.hash_and_write(keys, bufs, f.fileno(), offsets)
    data = p.read_bytes()
    assert h.tolist() == [xxhash.xxh3_64_intdigest(b) for b in bufs]
    for i, b in enumerate(firsts):
        assert data[offsets[i] : offsets[i] + len(b)] == b


def test_write_filled_leaves_reading_and_hashing_to_fill(tmp_path):
    # the writer neither reads nor hashes the blobs (a recorded hash that does
    # not match would stop write()): bytes and hashes are fill's, and the
    # file is the one write() makes from good bytes
    import xxhash

    good = _arr(0, 8)
    g = add_chain("g", {"w": good})
    w = g.tensors["w"]
    bad = Blob(np.zeros(8, np.float32).view(np.uint8), expected_hash=12345)
    broken = dataclasses.replace(g, tensors={**g.tensors, "w": dataclasses.replace(w, data=bad)})

    def fill(fd, blobs, offsets):
        assert blobs == [bad]
        os.pwrite(fd, good.tobytes(), offsets[0])
        return [xxhash.xxh3_64_intdigest(good.tobytes())]

    assert ctxbin_format.write_filled(ctxbin.Container((broken,)), tmp_path / "f.ctxbin", fill)
    ctxbin_format.write(ctxbin.Container((g,)), tmp_path / "w.ctxbin")
    assert (tmp_path / "f.ctxbin").read_bytes() == (tmp_path / "w.ctxbin").read_bytes()
