"""File formats, one module each; this package picks the module for a path.

Reading sniffs the first bytes (so a misnamed file still opens); writing goes
by the file extension. Format modules are imported on first use so that
``import ctxbin`` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from ..errors import CtxbinError, FormatError
from ..ir import Container
from . import sniff

__all__ = ["FORMATS", "detect", "load", "save", "module"]

#: format name -> (module, extensions it writes by); order = sniffing order.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ctxbin": ("ctxbin", (".ctxbin",)),
    "dlc": ("dlc", (".dlc",)),
    "qnn": ("qnn", (".bin",)),
    "epcontext": ("epcontext", ()),
    "onnx": ("onnx", (".onnx",)),
}

#: what to do instead, for formats that are made by other means than save()
_NO_WRITER_HINT = {
    "qnn": ": a context binary is built by the QNN libraries, with ctxbin.compile.compile_htp "
    "or `ctxbin link ... --soc-model N --htp-arch N -o out.bin`",
}


def module(fmt: str) -> ModuleType:
    try:
        mod, _ = FORMATS[fmt]
    except KeyError:
        raise CtxbinError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}") from None
    return importlib.import_module(f"{__name__}.{mod}")


def detect(path: str | os.PathLike) -> str:
    """The format of the file at ``path``, from its first bytes."""
    with open(path, "rb") as f:  # a missing file is the OSError users expect
        head = f.read(sniff.HEAD_BYTES)
    # EPContext wrappers are ONNX files too: they must be tried before ONNX.
    for fmt in ("ctxbin", "dlc", "qnn", "epcontext", "onnx"):
        if getattr(sniff, fmt)(head):
            return fmt
    raise FormatError(
        "not a file ctxbin can read (expected .ctxbin, QNN DLC, QNN context binary or ONNX)",
        path=path, offset=0,
    )


def load(path: str | os.PathLike, **options: Any) -> Container:
    return module(detect(path)).read(path, **options)


def save(container: Container, path: str | os.PathLike, **options: Any) -> None:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for fmt, (_, exts) in FORMATS.items():
        if ext in exts:
            mod = module(fmt)
            if not hasattr(mod, "write"):
                raise CtxbinError(f"ctxbin cannot write {fmt} files ({ext}) with save(){_NO_WRITER_HINT.get(fmt, '')}")
            mod.write(container, path, **options)
            return
    writable = sorted(e for _, exts in FORMATS.values() for e in exts)
    raise CtxbinError(f"cannot tell the format from {os.fspath(path)!r}; use one of: {', '.join(writable)}")
