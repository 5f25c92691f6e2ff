"""Shared fixtures: the tiny example models written once per test session, a
DLC written by ctxbin's own lowering, and ``path``, which runs a test on the C
core and on the pure-Python fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxbin import hashing
from tests.models import example_models, save_with_external_data


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the tiny example models, external data beside each (treat as read-only):
    ``fcn_landscape`` (image 1x3x256x384), ``fcn_portrait`` (1x3x384x256),
    ``transformer_ar128`` and ``transformer_ar1`` (tokens [1,128] / [1,1])."""
    out = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for name, model in example_models(tiny=True).items():
        paths[name] = out / f"{name}.onnx"
        save_with_external_data(model, paths[name])
    return paths


@pytest.fixture(scope="session")
def own_dlc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DLC of the tiny FCN (64x96) written by ctxbin's own lowering: no vendor
    library needed (treat as read-only)."""
    from ctxbin.convert import convert
    from tests.models import build_fcn

    d = tmp_path_factory.mktemp("own_dlc")
    save_with_external_data(build_fcn(64, 96, tiny=True), d / "fcn.onnx")
    convert(d / "fcn.onnx", d / "fcn.dlc", name="fcn", route="ctxbin")
    return d / "fcn.dlc"


@pytest.fixture(params=["native", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the C core (``"native"``, skipped when it is not built)
    and on the fallback (``"python"``, forced with ``CTXBIN_NO_NATIVE=1``)."""
    if request.param == "native":
        if hashing._native_core is None:
            pytest.skip("C core not built (run `python native/build.py` or `pip install -e .`)")
        monkeypatch.delenv("CTXBIN_NO_NATIVE", raising=False)
        assert hashing.native_available() and hashing.crc32_impl() in ("pclmul", "armv8", "table")
    else:
        monkeypatch.setenv("CTXBIN_NO_NATIVE", "1")
        assert not hashing.native_available()
        assert hashing.simd_impl() == "python" and hashing.crc32_impl() == "zlib"
    return request.param
