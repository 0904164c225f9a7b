"""A runtime as a connection file: any Jupyter client (`jupyter console`, an IDE, nbclient) can use it.

The file names 127.0.0.1 ports forwarded to the kernel by this process, so it
is valid while the process that wrote it keeps running (a runtime on this
machine needs no forward). It holds the kernel's HMAC and CurveZMQ keys, so
it is written 0600, like the connection files Jupyter itself writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_path(name: str) -> Path:
    """Where Jupyter looks for `--existing kernel-cybershuttle-NAME.json`."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / f"kernel-cybershuttle-{name}.json"


def write_connection_file(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Write runtime `name`'s connection file (waiting until it is ready).

    Returns the path and whether it relies on forwards held by this process.
    """
    from . import connection_info, get
    from .. import compute

    info: dict[str, Any] = {**connection_info(name), "kernel_name": ""}
    target = Path(path) if path else default_path(name)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1)
    os.replace(tmp, target)
    return target, compute.get(get(name).resource).remote
