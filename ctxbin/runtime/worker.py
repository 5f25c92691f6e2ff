"""Native QNN work in a child process, so a crash in a vendor library becomes
a ctxbin error instead of killing the caller.

The parent writes ``DIR/request.json`` and runs ``python -m <worker module> DIR``;
the child (:func:`serve_main`) answers with ``DIR/result.json``:
``{"ok": true, ...}`` or ``{"ok": false, "error": <error class>, "message": ...}``.
Everything crosses as JSON (arrays as ``.npy`` files beside it, never pickled).
A child that exits without a result has crashed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import BackendError, CtxbinError, GraphNotFoundError

__all__ = ["REQUEST", "RESULT", "Outcome", "call", "child_env", "library_says", "serve_main", "failure"]

REQUEST = "request.json"
RESULT = "result.json"


def child_env() -> dict[str, str]:
    """The child's environment: ours, with this ctxbin importable first."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def library_says(text: str) -> str:
    """The native library's own error lines from the child's output, if any."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "<E>" in ln]
    return "; ".join((errors or lines)[-4:])


@dataclass(frozen=True)
class Outcome:
    """What a worker run gave: its result record (None when it crashed)."""

    result: dict[str, Any] | None
    returncode: int
    output: str  # the child's stdout and stderr

    def death(self) -> str:
        """How the child ended without a result, in words."""
        rc = self.returncode
        if rc < 0:
            try:
                return f"was killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"was killed by signal {-rc}"
        return f"exited with status {rc} without a result"

    def raise_failure(self, errors: dict[str, type[CtxbinError]]) -> None:
        """Raise the error a failed result names (``errors`` maps class names)."""
        r = self.result or {}
        if r.get("ok"):
            return
        kind = str(r.get("error", ""))
        if kind == "GraphNotFoundError":
            raise GraphNotFoundError(str(r.get("message", "")), list(r.get("available", [])))
        said = library_says(self.output)
        raise errors.get(kind, BackendError)(
            str(r.get("message", "")) + (f"; the library said: {said}" if "<E>" in said else "")
        )


def call(
    module: str,
    request: dict[str, Any],
    *,
    timeout: float,
    what: str,
    folder: Path | None = None,
) -> Outcome:
    """Run worker ``module`` on ``request`` in ``folder`` (a fresh temporary
    directory unless given, e.g. when input files were put there first)."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="ctxbin-worker-") as tmp:
            return call(module, request, timeout=timeout, what=what, folder=Path(tmp))
    (folder / REQUEST).write_text(json.dumps(request), "utf-8")
    cmd = [sys.executable, "-m", module, str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=child_env(), cwd=folder)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{what} did not finish within {timeout:g} s (worker killed)") from None
    output = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    result_file = folder / RESULT
    result = json.loads(result_file.read_text("utf-8")) if proc.returncode == 0 and result_file.is_file() else None
    return Outcome(result, proc.returncode, output)


def failure(exc: CtxbinError) -> dict[str, Any]:
    """The result record of a failed request."""
    record: dict[str, Any] = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, GraphNotFoundError):
        record.update(message=exc.name, available=list(exc.available))
    return record


def serve_main(argv: list[str] | None, serve: Callable[[Path], dict[str, Any]], what: str) -> int:
    """The child's main: run ``serve(DIR)`` and write its result atomically."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(f"usage: python -m {what} DIR\n")
        return 2
    folder = Path(args[0])
    try:
        result = serve(folder)
    except CtxbinError as exc:
        result = failure(exc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # a malformed request or an unreadable file: reported, never a traceback
        result = failure(BackendError(f"{what} could not serve the request: {type(exc).__name__}: {exc}"))
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result), "utf-8")
    os.replace(tmp, folder / RESULT)
    return 0
