"""Run a check on both of ctxbin's code paths: the C core and the pure-Python
fallback (``CTXBIN_NO_NATIVE=1``), which must give the same results."""

from __future__ import annotations

from typing import Iterator

import pytest

from ctxbin import hashing

__all__ = ["both_paths", "needs_native"]

needs_native = pytest.mark.skipif(
    hashing._native_core is None,
    reason="C core not built (run `python native/build.py` or `pip install -e .`)",
)


def both_paths() -> Iterator[bool]:
    """Yield ``True`` with the C core active (when it is built), then ``False``
    with the fallback forced; the environment is restored after each."""
    for native in ([True, False] if hashing._native_core is not None else [False]):
        with pytest.MonkeyPatch.context() as mp:
            if native:
                mp.delenv("CTXBIN_NO_NATIVE", raising=False)
            else:
                mp.setenv("CTXBIN_NO_NATIVE", "1")
            yield native

