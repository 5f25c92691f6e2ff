"""EPContext wrappers written by ONNX Runtime's QNN EP: embedded, external, shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxbin.errors import FormatError, GraphNotFoundError
from ctxbin.formats import epcontext, qnn
from tests.qnn_oracle import IO, ModelSpec, compile_models, require_qnn

U8 = 2
SPECS = [
    ModelSpec((IO("x", (1, 8)),), (IO("y", (1, 8)),), name="ea"),
    ModelSpec((IO("x", (2, 8), U8, 0.02, 3),), (IO("y", (2, 8), U8, 0.01, 0), IO("z", (2, 8), U8, 0.01, 0)),
              name="eb"),
]


@pytest.fixture(scope="session")
def wrappers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    require_qnn()
    return {
        "external": compile_models(SPECS[:1], tmp_path_factory.mktemp("ep_ext")),
        "embedded": compile_models(SPECS[:1], tmp_path_factory.mktemp("ep_emb"), embed=True),
        "shared": compile_models(SPECS, tmp_path_factory.mktemp("ep_shared"), share=True),
    }


def _set_attr(src: Path, dst: Path, **values: object) -> Path:
    import onnx
    from onnx import helper

    m = onnx.load(str(src))
    node = next(n for n in m.graph.node if n.op_type == "EPContext")
    keep = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(k, v) for k, v in values.items()])
    onnx.save(m, str(dst))
    return dst


def test_external_wrapper(wrappers: dict) -> None:
    w = wrappers["external"]
    c = epcontext.read(w.ctx_onnx[0])
    (binary,) = w.bins
    info = qnn.read_info(binary)
    assert c.graph_names == info.graph_names and c.format == "epcontext"
    g = c.graphs[0]
    assert bytes(g.binary.blob.raw()) == binary.read_bytes()
    assert g.metadata["context_binary"] == binary.name
    assert [t.name for t in g.inputs] == ["x"] and [t.name for t in g.outputs] == ["y"]
    assert c.target == qnn.read(binary).target
    node = epcontext.read_nodes(w.ctx_onnx[0])[0]
    assert node.partition_name == g.name and not node.embed_mode and node.main_context
    assert node.sdk_version == info.build_id and node.source == "QNNExecutionProvider"


def test_embedded_wrapper(wrappers: dict) -> None:
    import onnx

    w = wrappers["embedded"]
    assert w.bins == []  # nothing written beside the wrapper
    c = epcontext.read(w.ctx_onnx[0])
    node = epcontext.read_nodes(w.ctx_onnx[0])[0]
    assert node.embed_mode and node.cache_path is None
    blob = bytes(c.graphs[0].binary.blob.raw())
    assert qnn.sniff(blob) and qnn.read_info(blob).graph_names == [node.partition_name]
    m = onnx.load(str(w.ctx_onnx[0]))
    assert epcontext.is_epcontext_model(m)


def test_wrappers_sharing_one_binary(wrappers: dict) -> None:
    w = wrappers["shared"]
    (binary,) = w.bins
    names = qnn.read_info(binary).graph_names
    assert len(names) == 2
    singles = [epcontext.read(p) for p in w.ctx_onnx]
    assert [c.graph_names for c in singles] == [[n] for n in names]  # each wrapper picks its graph
    both = epcontext.read_many(w.ctx_onnx)
    assert both.graph_names == names
    assert len({id(g.binary.blob) for g in both.graphs}) == 1  # one mapping, shared
    eb = both.graph(names[1])
    assert [t.name for t in eb.outputs] == ["y", "z"] and eb.inputs[0].encoding.offsets == (-3,)
    with pytest.raises(GraphNotFoundError, match="available graphs"):
        both.graph("nope")


def test_sniff_and_detection(wrappers: dict, tmp_path: Path) -> None:
    import onnx

    from tests.qnn_oracle import build_model

    for w in wrappers.values():
        for p in w.ctx_onnx:
            assert epcontext.sniff(p.read_bytes()[:4096])
    plain = tmp_path / "plain.onnx"
    onnx.save(build_model(SPECS[0]), str(plain))
    assert not epcontext.sniff(plain.read_bytes()[:4096])
    assert not epcontext.is_epcontext_model(onnx.load(str(plain)))
    with pytest.raises(FormatError, match="no com.microsoft:EPContext"):
        epcontext.read(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(FormatError):
        epcontext.read(garbage)


@pytest.mark.parametrize("cache", ["../outside.bin", "/etc/passwd", "missing.bin", "sub/../../x.bin"])
def test_external_paths_stay_inside(wrappers: dict, tmp_path: Path, cache: str) -> None:
    src = wrappers["external"].ctx_onnx[0]
    (tmp_path / "outside.bin").write_bytes(wrappers["external"].bins[0].read_bytes())
    d = tmp_path / "w"
    d.mkdir()
    bad = _set_attr(src, d / "bad_ctx.onnx", ep_cache_context=cache)
    with pytest.raises(FormatError) as e:
        epcontext.read(bad)
    assert "bad_ctx.onnx" in str(e.value)


def test_unknown_partition_lists_graphs(wrappers: dict) -> None:
    w = wrappers["external"]
    bad = _set_attr(w.ctx_onnx[0], w.ctx_onnx[0].parent / "wrong_ctx.onnx", partition_name="no_such_graph")
    with pytest.raises(FormatError, match="no_such_graph.*graphs: QNNExecutionProvider"):
        epcontext.read(bad)


def test_corrupt_embedded_binary_names_the_node(wrappers: dict, tmp_path: Path) -> None:
    src = wrappers["embedded"].ctx_onnx[0]
    blob = bytes(epcontext.read(src).graphs[0].binary.blob.raw())
    bad = _set_attr(src, tmp_path / "bad_ctx.onnx", ep_cache_context=blob[:300])
    with pytest.raises(FormatError, match="EPContext node .* embedded binary"):
        epcontext.read(bad)
