"""ctxbin: read, write, link, inspect and run multi-graph NPU model containers.

>>> import ctxbin
>>> a = ctxbin.from_onnx("fcn_landscape.onnx", name="landscape")
>>> b = ctxbin.from_onnx("fcn_portrait.onnx", name="portrait")
>>> c, report = ctxbin.link([a, b], share="name+content")
>>> ctxbin.save(c, "fcn.ctxbin")
>>> report = ctxbin.link_to_file([a, b], "fcn.ctxbin")  # the same file, faster
>>> ctxbin.load("fcn.ctxbin").graph("portrait").run({"image": x}, backend="emulator")
"""

from __future__ import annotations

import os
from typing import Any

from .errors import (
    BackendError,
    BackendUnavailableError,
    ChecksumError,
    CtxbinError,
    FormatError,
    GraphNotFoundError,
    InputError,
    LinkError,
    ShapeError,
    UnsupportedOpError,
    UnsupportedVersionError,
)
from .hashing import native_available
from .ir import Container, DType, Graph, Node, QuantEncoding, QuantKind, Target, Tensor, TensorKind
from .link import LinkReport, link, link_to_file
from .runtime.session import RunResult

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load",
    "save",
    "link",
    "link_to_file",
    "from_onnx",
    "inspect",
    "native_available",
    "Container",
    "Graph",
    "Node",
    "Tensor",
    "TensorKind",
    "DType",
    "QuantEncoding",
    "QuantKind",
    "Target",
    "LinkReport",
    "RunResult",
    "CtxbinError",
    "FormatError",
    "UnsupportedVersionError",
    "ChecksumError",
    "LinkError",
    "ShapeError",
    "GraphNotFoundError",
    "UnsupportedOpError",
    "InputError",
    "BackendUnavailableError",
    "BackendError",
]


def load(path: str | os.PathLike, **options: Any) -> Container:
    """Open a container; the format is sniffed from the file's first bytes.

    Weights are memory-mapped, not read: opening costs the header and metadata.
    ``.ctxbin`` takes ``verify=True`` to check every checksum now.
    """
    from . import formats

    return formats.load(path, **options)


def save(container: Container, path: str | os.PathLike, **options: Any) -> None:
    """Write ``container``; the format follows the extension (.ctxbin, .onnx, ...).
    Writes are atomic: the target path holds the old file or the whole new one."""
    from . import formats

    formats.save(container, path, **options)


def from_onnx(path: str | os.PathLike, name: str | None = None) -> Container:
    """Import an ONNX model as a one-graph container named ``name``."""
    from .formats import onnx

    return onnx.read(path, name=name)


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of the file at ``path`` (what ``ctxbin inspect`` shows)."""
    from .summary import summarize

    return summarize(load(path))
