"""``ctxbin check``: every structural rule and checksum of a file, eagerly."""

from __future__ import annotations

import os

from . import formats
from .errors import CtxbinError

__all__ = ["check"]


def check(path: str | os.PathLike) -> list[str]:
    """Problems found in the file at ``path`` (empty when it is sound).

    Runs the format's own deep check where it has one, then reads the file and
    touches every weight, which verifies each recorded checksum and that its
    bytes fit its dtype and shape.
    """
    try:
        mod = formats.module(formats.detect(path))
        if hasattr(mod, "check"):
            problems = list(mod.check(path))
            if problems:
                return problems
        container = mod.read(path)
        for g in container.graphs:
            list(g.nodes)  # readers may decode nodes on first access: decode them all
            for t in g.weights:
                t.numpy()
    except CtxbinError as e:
        return [str(e)]
    return []
