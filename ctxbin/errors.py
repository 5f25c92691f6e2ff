"""The ctxbin exception hierarchy.

Every error ctxbin raises derives from :class:`CtxbinError` and also from the
builtin exception a caller would naturally catch (``ValueError`` for bad data,
``KeyError`` for unknown names, ...), so both ``except CtxbinError`` and
``except ValueError`` work.
"""

from __future__ import annotations

__all__ = [
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


class CtxbinError(Exception):
    """Base class of every error raised by ctxbin."""


#: Longest object description / reason kept in a FormatError message: names
#: come from the file, and a hostile file may hold a name of many megabytes.
MESSAGE_PART_LIMIT = 400


def _clip(text: str, limit: int = MESSAGE_PART_LIMIT) -> str:
    """``text`` with its middle elided when longer than ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} characters elided)...{text[-keep:]}"


class FormatError(CtxbinError, ValueError):
    """A file is malformed, truncated, hostile or inconsistent.

    The message names the file, the object inside it (graph, tensor, zip entry,
    table) and the byte offset where the problem was found.
    """

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        obj: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.obj = None if obj is None else _clip(obj)
        self.offset = offset
        self.reason = message = _clip(message)
        where = []
        if self.path:
            where.append(self.path)
        if self.obj:
            where.append(self.obj)
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class UnsupportedVersionError(FormatError):
    """A recognised format, but a version ctxbin cannot read."""


class ChecksumError(FormatError):
    """Stored bytes do not match their recorded checksum."""


class LinkError(CtxbinError, ValueError):
    """Graphs cannot be linked (name collisions, mismatched targets, ...)."""


class ShapeError(CtxbinError, ValueError):
    """A tensor's shape or element type cannot be determined statically
    (e.g. a symbolic dimension that must be bound first)."""


class GraphNotFoundError(CtxbinError, KeyError):
    """A graph name that the container does not hold."""

    def __init__(self, name: str, available: list[str] | tuple[str, ...]) -> None:
        self.name = name
        self.available = tuple(available)
        super().__init__(name)

    def __str__(self) -> str:
        names = ", ".join(repr(n) for n in self.available) or "(none)"
        return f"no graph named {self.name!r}; available graphs: {names}"


class UnsupportedOpError(CtxbinError, NotImplementedError):
    """A graph uses operators a backend (or writer) does not support; all are listed."""

    def __init__(self, graph: str, ops: list[str], backend: str = "emulator") -> None:
        self.graph = graph
        self.ops = tuple(ops)
        super().__init__(
            f"graph {graph!r}: the {backend} does not support "
            f"{len(self.ops)} op type(s): {', '.join(self.ops)}"
        )


class InputError(CtxbinError, ValueError):
    """Inputs given to a run do not match the graph (names, shapes, dtypes)."""


class BackendUnavailableError(CtxbinError, RuntimeError):
    """A backend cannot be used here; the message says exactly what is missing."""


class BackendError(CtxbinError, RuntimeError):
    """A backend failed while loading or running a graph."""
