"""Where the real third-party test files are: ``shared/data`` beside the
repository (as on developer machines and in CI), or ``$CTXBIN_SHARED_DATA``.
Tests that need them skip, naming this path, when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SHARED_DATA", "DLC_DIR"]


def _find() -> Path:
    env = os.environ.get("CTXBIN_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _find()
DLC_DIR = SHARED_DATA / "dlc"
