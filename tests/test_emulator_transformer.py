"""The example transformer block (prompt AR-128 and token AR-1, shared weights) on
the emulator against onnxruntime CPU and ONNX's reference evaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from ctxbin.formats import onnx as onnx_format  # noqa: E402
from ctxbin.runtime.emulator import Emulator  # noqa: E402
from tests.models import build_transformer, save_with_external_data  # noqa: E402

#: Tolerances: float32 throughout; the emulator's own Erf and summation order
#: differ from onnxruntime's in the last bits only.
RTOL = 1e-4
ATOL = 1e-5


def _tokens(seq: int, vocab: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (1, seq)).astype(np.int64)


def _errors(got: np.ndarray, want: np.ndarray) -> str:
    diff = np.abs(got.astype(np.float64) - want)
    rel = diff / np.maximum(np.abs(want), 1e-6)
    return f"max abs error {diff.max():.3g}, max relative error {rel.max():.3g} (|want| >= 1e-6)"


def _check(got: np.ndarray, want: np.ndarray, who: str) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    assert np.allclose(got, want, rtol=RTOL, atol=ATOL), f"emulator vs {who}: {_errors(got, want)}"


def _model_path(tmp_path: Path, seq: int, tiny: bool) -> tuple[onnx.ModelProto, Path]:
    model = build_transformer(seq, tiny=tiny)
    path = tmp_path / f"transformer_ar{seq}.onnx"
    save_with_external_data(model, path)
    return model, path


def _vs_onnxruntime(tmp_path: Path, seq: int, tiny: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    _, path = _model_path(tmp_path, seq, tiny)
    emu = Emulator(onnx_format.read(path).graphs[0])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    vocab = 64 if tiny else 1000
    for seed in range(2):
        tokens = _tokens(seq, vocab, seed)
        got = emu.run({"tokens": tokens})["hidden"]
        (want,) = sess.run(["hidden"], {"tokens": tokens})
        _check(got, want, "onnxruntime CPU")


@pytest.mark.parametrize("seq", [128, 1])
def test_tiny_transformer_matches_onnxruntime(tmp_path: Path, seq: int) -> None:
    _vs_onnxruntime(tmp_path, seq, tiny=True)


@pytest.mark.parametrize("seq", [128, 1])
def test_full_transformer_matches_onnxruntime(tmp_path: Path, seq: int) -> None:
    _vs_onnxruntime(tmp_path, seq, tiny=False)


@pytest.mark.parametrize("seq", [128, 1])
def test_tiny_transformer_matches_reference_evaluator(tmp_path: Path, seq: int) -> None:
    from onnx.reference import ReferenceEvaluator

    model, path = _model_path(tmp_path, seq, tiny=True)
    tokens = _tokens(seq, 64, 7)
    got = Emulator(onnx_format.read(path).graphs[0]).run({"tokens": tokens})["hidden"]
    (want,) = ReferenceEvaluator(model).run(["hidden"], {"tokens": tokens})
    _check(got, want, "onnx.reference.ReferenceEvaluator")

