"""Linking graphs with name+content sharing, and what the report says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ctxbin
from ctxbin.errors import LinkError
from ctxbin.ir import Container, Target
from tests.ir_graphs import add_chain


def _w(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(4).astype(np.float32)


def test_fcn_variants_store_weights_once(tiny_models, tmp_path):
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    c, report = ctxbin.link([a, b])
    unique = sum(t.nbytes for t in a.graphs[0].weights)
    assert report.bytes_before == 2 * unique
    assert report.bytes_after == unique
    assert report.bytes_saved == unique
    assert [g.shared_fraction for g in report.graphs] == [1.0, 1.0]
    assert report.conflicts == ()
    la, lb = c.graph("landscape"), c.graph("portrait")
    for t in la.weights:
        assert lb.tensors[t.name].data is t.data
    out = tmp_path / "fcn.ctxbin"
    ctxbin.save(c, out)
    # the file holds the weights once (plus metadata and alignment)
    assert unique <= out.stat().st_size <= unique * 1.01 + 64 * 1024
    f = ctxbin.load(out)
    assert f.graph_names == ["landscape", "portrait"]
    assert f.graph("portrait").inputs[0].shape == (1, 3, 384, 256)


def test_linked_graph_runs_like_onnxruntime(tiny_models, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference for emulator results")
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    c, _ = ctxbin.link([a, b])
    ctxbin.save(c, tmp_path / "fcn.ctxbin")
    x = np.random.default_rng(1).standard_normal((1, 3, 384, 256), dtype=np.float32)
    y = ctxbin.load(tmp_path / "fcn.ctxbin").graph("portrait").run({"image": x}, backend="emulator")
    assert y.backend == "emulator"
    sess = ort.InferenceSession(str(tiny_models["fcn_portrait"]), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"image": x})
    err = np.abs(y["out"] - want).max()
    assert err <= 1e-4 * max(1.0, np.abs(want).max()), f"max abs error {err}"


def test_share_modes():
    same = _w(0)
    g1 = add_chain("g1", {"w": same, "v": _w(1)})
    g2 = add_chain("g2", {"w": same.copy(), "u": _w(1)})  # "u" has v's bytes under another name
    _, r = ctxbin.link([g1, g2], share="name+content")
    assert r.bytes_after == 3 * 16  # w shared; v and u kept apart
    _, r = ctxbin.link([g1, g2], share="content")
    assert r.bytes_after == 2 * 16  # u and v share too
    c, r = ctxbin.link([g1, g2], share="none")
    assert r.bytes_after == r.bytes_before == 4 * 16
    assert c.graph("g1").tensors["w"].data is not c.graph("g2").tensors["w"].data


def test_same_name_different_content_is_reported_never_merged():
    g1 = add_chain("g1", {"w": _w(0)})
    g2 = add_chain("g2", {"w": _w(1)})
    c, r = ctxbin.link([g1, g2])
    assert r.bytes_after == r.bytes_before
    (conflict,) = r.conflicts
    assert conflict.name == "w" and conflict.graphs == ("g1", "g2") and conflict.distinct_contents == 2
    assert not np.array_equal(c.graph("g1").tensors["w"].numpy(), c.graph("g2").tensors["w"].numpy())


def test_include_and_exclude_give_partial_sharing():
    w, v = _w(0), _w(1)
    g1 = add_chain("g1", {"w": w, "v": v})
    g2 = add_chain("g2", {"w": w.copy(), "v": v.copy()})
    _, r = ctxbin.link([g1, g2], exclude=["v"])
    assert r.bytes_after == 3 * 16 and r.excluded == ("v",)
    _, r = ctxbin.link([g1, g2], include=["v"])
    assert r.bytes_after == 3 * 16 and r.excluded == ("w",)


def test_duplicate_graph_names_are_an_error_naming_both():
    g = add_chain("same", {"w": _w(0)})
    with pytest.raises(LinkError, match="'same'.*input 0.*input 1"):
        ctxbin.link([g, g])
    c, _ = ctxbin.link([g, g], names=["a", "b"])
    assert c.graph_names == ["a", "b"]
    with pytest.raises(LinkError, match="3 names given for 2 graphs"):
        ctxbin.link([g, g], names=["a", "b", "c"])


def test_different_targets_are_an_error_naming_both():
    a = Container((add_chain("a", {"w": _w(0)}),), target=Target("htp", 60, 75), source="a.ctxbin")
    b = Container((add_chain("b", {"w": _w(0)}),), target=Target("htp", 57, 73), source="b.ctxbin")
    with pytest.raises(LinkError, match=r"a\.ctxbin is for htp soc_model=60 htp_arch=v75.*b\.ctxbin is for htp soc_model=57"):
        ctxbin.link([a, b])
    same = Container((add_chain("c", {"w": _w(0)}),), target=Target("htp", 60, 75))
    c, _ = ctxbin.link([a, same])
    assert c.target == Target("htp", 60, 75)


def test_link_output_is_deterministic(tiny_models, tmp_path):
    def build(path):
        a = ctxbin.from_onnx(tiny_models["transformer_ar128"], name="prompt_ar128")
        b = ctxbin.from_onnx(tiny_models["transformer_ar1"], name="token_ar1")
        c, _ = ctxbin.link([a, b])
        ctxbin.save(c, path)
        return path.read_bytes()

    assert build(tmp_path / "one.ctxbin") == build(tmp_path / "two.ctxbin")


def test_relinking_a_linked_file_keeps_sharing(tiny_models, tmp_path):
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    c, first = ctxbin.link([a, b])
    ctxbin.save(c, tmp_path / "ab.ctxbin")
    t = ctxbin.from_onnx(tiny_models["transformer_ar1"], name="token")
    c2, r = ctxbin.link([ctxbin.load(tmp_path / "ab.ctxbin"), t])
    assert c2.graph_names == ["landscape", "portrait", "token"]
    assert r.bytes_after == first.bytes_after + sum(x.nbytes for x in t.graphs[0].weights)


def test_progress_reports_every_byte(tiny_models):
    a = ctxbin.from_onnx(tiny_models["fcn_landscape"], name="landscape")
    b = ctxbin.from_onnx(tiny_models["fcn_portrait"], name="portrait")
    seen = []
    ctxbin.link([a, b], progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == sum(t.nbytes for t in a.graphs[0].weights) * 2


def test_corrupted_input_blob_is_caught_while_linking(tmp_path):
    g = add_chain("g", {"w": _w(0)})
    ctxbin.save(Container((g,)), tmp_path / "g.ctxbin")
    data = bytearray((tmp_path / "g.ctxbin").read_bytes())
    f = ctxbin.load(tmp_path / "g.ctxbin")
    blob = f.graphs[0].tensors["w"].data
    data[blob.offset] ^= 0xFF
    (tmp_path / "bad.ctxbin").write_bytes(bytes(data))
    with pytest.raises(ctxbin.ChecksumError, match="bad.ctxbin"):
        ctxbin.link([ctxbin.load(tmp_path / "bad.ctxbin"), dataclasses.replace(g, name="h")])


def test_equal_tensors_kept_apart_are_not_reported_as_different_content():
    # share="none" or include/exclude keep equal bytes apart: that is not a
    # same-name-different-content conflict, and the report must not say so
    w = _w(0)
    g1 = add_chain("g1", {"w": w})
    g2 = add_chain("g2", {"w": w.copy()})
    for kwargs in ({"share": "none"}, {"exclude": ["w"]}, {"share": "content", "include": []}):
        _, r = ctxbin.link([g1, g2], **kwargs)
        assert r.bytes_after == r.bytes_before
        assert r.conflicts == (), kwargs


def test_include_or_exclude_naming_no_tensor_is_an_error():
    g1 = add_chain("g1", {"w": _w(0)})
    g2 = add_chain("g2", {"w": _w(0)})
    with pytest.raises(LinkError, match=r"no weight of the inputs is named 'typo'"):
        ctxbin.link([g1, g2], include=["w", "typo"])
    with pytest.raises(LinkError, match=r"'typo'"):
        ctxbin.link([g1, g2], exclude=["typo"])
