"""Shared fixtures: the tiny example models written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

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
