"""The child-process side of HTP compilation: ``python -m ctxbin.runtime.qnn_compose_worker DIR``.

:func:`ctxbin.runtime.qnn_compose.compose_dlc` never loads the QNN libraries
itself (they can crash the process that calls them); it writes a request into
a fresh directory and runs this module. Everything crosses as JSON:

``DIR/request.json``
    ``{"dlc": path, "out": path, "graphs": [names], "options": {soc_model,
    htp_arch, weight_sharing, fp16, optimization, vtcm_mb}, "library": path or null}``
``DIR/result.json`` (written by the child)
    ``{"ok": true, "size": bytes, "graphs": [names], "seconds": s,
    "phases": [[phase, s], ...]}``
    or ``{"ok": false, "error": class name, "message": ...}``

A child that dies without writing ``result.json`` has crashed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .worker import REQUEST, serve_main

__all__ = ["main", "serve"]


def serve(folder: Path) -> dict[str, Any]:
    """Run the request in ``folder``; returns the result record."""
    from .qnn_compose import ComposeOptions, compose_native

    req = json.loads((folder / REQUEST).read_text("utf-8"))
    opts = ComposeOptions(**req["options"])
    opts.check()
    done = compose_native(str(req["dlc"]), str(req["out"]), [str(g) for g in req["graphs"]], opts,
                          library=req.get("library"))
    return {"ok": True, **done}


def main(argv: list[str] | None = None) -> int:
    return serve_main(argv, serve, "ctxbin.runtime.qnn_compose_worker")


if __name__ == "__main__":
    sys.exit(main())
