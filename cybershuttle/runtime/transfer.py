"""Copying files and directories between runtimes and this machine (`runtime.copy`).

`RT:path` names a path on runtime RT's host, relative to the runtime's working
directory (its home unless the job said otherwise; `~/` is the home, an
absolute path is itself); `local:path` is relative to the current directory
here. Copies follow `cp -r`: onto an existing directory (or `.` or a path
ending in `/`) the source keeps its name, otherwise the target is the new name.

This module only says where such a path is; the copy itself is the storage
engine's (`storage/transfer.py`: partial files, resume, the OpenSSH fast path,
`cp -r` on the host when both ends share it).
"""
from __future__ import annotations

import posixpath
from pathlib import Path

from .. import compute, names
from ..errors import CybershuttleError
from ..storage.catalog import Storage
from ..storage.transfer import CopyResult, Place, Progress
from ..storage.transfer import copy as _copy


def copy(source: str, target: str, *, progress: Progress | None = None) -> CopyResult:
    """Copy `RT:path` (or `local:path`) to `RT:path` (or `local:path`), directories whole."""
    return _copy(place(source, "source"), place(target, "target"), recursive=True, progress=progress)


def place(spec: str, what: str = "path") -> Place:
    """Where `RT:path` or `local:path` is, as a path in a storage made up for this copy."""
    name, sep, path = spec.partition(":")
    if not sep:
        raise CybershuttleError(f"the {what} {spec!r} must look like RUNTIME:path or local:path")
    if name == "local":
        base = Path.cwd()
        full = str((base / Path(path).expanduser()).resolve()) if path not in ("", ".") else str(base)
        return Place(Storage(name="local-path", location="/", protocol="file", root="/"), full, spec, "local:")
    from . import get

    rt = get(names.validate(name, "runtime name"))
    res = compute.get(rt.resource)
    workdir = compute.get_job(rt.job_id).workdir
    if path == "~" or path.startswith("~/"):
        full = posixpath.normpath(compute.home_dir(res) + path[1:])
    else:
        full = posixpath.normpath(posixpath.join(workdir, path)) if path not in ("", ".") else workdir
    storage = Storage(name=f"runtime-{name}", location=full, protocol="sftp" if res.remote else "file",
                      root="/", resource=rt.resource if res.remote else None)
    return Place(storage, full, spec, f"{name}:")
