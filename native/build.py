"""cffi (API mode, out-of-line) build of ``ctxbin._native_core`` from the C core.

Used by ``setup.py`` (``cffi_modules=["native/build.py:ffibuilder"]``) so that
``pip install .`` / ``pip install -e .`` compile it, and runnable directly for a
development build in place: ``python native/build.py`` puts the extension next
to the package sources, in ``ctxbin/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from cffi import FFI

__all__ = ["ffibuilder"]

NATIVE = Path(__file__).resolve().parent
ROOT = NATIVE.parent
HEADER = NATIVE / "ctxbin_core.h"
# Relative to the project root: setuptools runs the build from there.
SOURCES = ["native/xxh3.c", "native/batch.c", "native/threadpool.c", "native/dedup.c",
           "native/groups.c", "native/crc32.c", "native/flatbuf.c",
           "native/dlc_v4.c", "native/zipscan.c"]
# Rebuild triggers, and (through setuptools) what an sdist must carry besides SOURCES.
DEPENDS = ["native/ctxbin_core.h", "native/core_internal.h", "native/build.py"]


def _cdef() -> str:
    """The declarations between the CFFI-BEGIN/END markers of the public header."""
    text = HEADER.read_text(encoding="utf-8")
    start = text.index("/* CFFI-BEGIN */") + len("/* CFFI-BEGIN */")
    return text[start : text.index("/* CFFI-END */")]


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    # No -march: AVX2 is chosen at run time, so one build runs on every CPU of its arch.
    return ["-O3", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter"]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "ctxbin._native_core",
    '#include "ctxbin_core.h"',
    sources=SOURCES,
    depends=DEPENDS,
    include_dirs=["native"],
    extra_compile_args=_compile_args(),
    libraries=[] if sys.platform == "win32" else ["pthread"],
)


if __name__ == "__main__":
    # Built in a scratch copy of native/, not in the project root: there setuptools
    # would validate pyproject.toml, which may want a newer setuptools than this
    # environment has (pip builds in an isolated environment with a current one).
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(NATIVE, Path(tmp) / "native", ignore=shutil.ignore_patterns("*.o"))
        os.chdir(tmp)
        built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        # the extension, and its generated C for debugging, next to the package sources;
        # each as a new file renamed over the old: overwriting a loaded extension in place
        # makes the processes running it die of SIGBUS at their next page fault in it
        for f in (built, Path(tmp) / "ctxbin" / "_native_core.c"):
            dst = ROOT / "ctxbin" / f.name
            tmp_dst = dst.with_name(dst.name + ".tmp")
            shutil.copy2(f, tmp_dst)
            os.replace(tmp_dst, dst)
