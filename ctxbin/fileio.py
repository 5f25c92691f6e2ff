"""Atomic file writes: a crash mid-write never leaves a partial file under the target name.

Every writer in ctxbin goes through :func:`atomic_write`: the bytes go to a
temporary file in the target's directory (same filesystem, so the final
rename is atomic), which is flushed and fsynced, renamed over the target, and
then the directory is fsynced so the rename itself survives a power loss. On
any error the temporary file is removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Union

__all__ = ["atomic_write", "write_bytes_atomic", "TEMP_SUFFIX"]

#: Suffix of in-progress temporary files (``.<name>.<random>.ctxbin-tmp``).
TEMP_SUFFIX = ".ctxbin-tmp"

PathLike = Union[str, "os.PathLike[str]"]


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask."""
    try:  # reading the umask without changing it (os.umask would race other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` atomically when the block exits.

    The target keeps its permissions if it exists (else it gets the usual
    ``0o666 & ~umask``). ``fsync=False`` skips the durability syncs (the rename
    is still atomic with respect to other processes) for scratch files.
    """
    target = Path(os.fspath(path))
    directory = target.parent
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = _default_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory)
    except FileNotFoundError:  # say so about the user's path, not the temporary name
        raise FileNotFoundError(errno.ENOENT, f"no directory {str(directory)!r} to write into", str(target)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(directory)


def write_bytes_atomic(path: PathLike, data: bytes | bytearray | memoryview, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, fsync=fsync) as f:
        f.write(data)
