"""Copying files and directories between runtimes and this machine (`%copy_data`).

`RT:path` names a path on runtime RT's host, relative to the runtime's working
directory (its home unless the job said otherwise); `local:path` is relative to
the current directory here. Copies follow `cp -r`: onto an existing directory
(or `.` or a path ending in `/`) the source keeps its name, otherwise the
target is the new name. Remote sides use the pooled SFTP session; two paths on
the same resource are copied there with `cp -r`, without a round trip through
this machine.
"""
from __future__ import annotations

import os
import posixpath
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import compute, names
from ..errors import CybershuttleError

_CHUNK = 1 << 20


@dataclass
class CopyResult:
    files: int = 0
    bytes: int = 0
    target: str = ""


def copy(source: str, target: str) -> CopyResult:
    """Copy `RT:path` (or `local:path`) to `RT:path` (or `local:path`)."""
    src_side, src_path = _side(source, "source")
    dst_side, dst_path = _side(target, "target")
    if not src_side.exists(src_path):
        raise CybershuttleError(f"{source!r} does not exist (paths are relative to {src_side.describe()})")
    if dst_path in (".", "") or dst_path.endswith("/") or dst_side.isdir(dst_path):
        dst_path = dst_side.join(dst_path or ".", posixpath.basename(src_path.rstrip("/")))
    result = CopyResult(target=dst_path)
    if src_side.same_host(dst_side):
        src_side.run(f"cp -r -- {shlex.quote(src_path)} {shlex.quote(dst_path)}")
        result.files = 1
        return result
    _copy(src_side, src_path, dst_side, dst_path, result)
    return result


class _Local:
    def __init__(self) -> None:
        self.base = Path.cwd()

    def describe(self) -> str:
        return f"this machine's current directory {self.base}"

    def resolve(self, path: str) -> str:
        return str((self.base / Path(path).expanduser()).resolve()) if path not in ("", ".") else str(self.base)

    def join(self, a: str, b: str) -> str:
        return os.path.join(a, b)

    def exists(self, p: str) -> bool:
        return os.path.exists(p)

    def isdir(self, p: str) -> bool:
        return os.path.isdir(p)

    def listdir(self, p: str) -> list[str]:
        return sorted(os.listdir(p))

    def makedirs(self, p: str) -> None:
        os.makedirs(p, exist_ok=True)

    def open(self, p: str, mode: str) -> Any:
        return open(p, mode)

    def same_host(self, other: Any) -> bool:
        return False


class _Remote:
    def __init__(self, runtime_name: str) -> None:
        from . import get

        rt = get(runtime_name)
        job = compute.get_job(rt.job_id)
        self.resource = compute.get(rt.resource)
        self.label = runtime_name
        self.workdir = job.workdir
        if self.resource.remote:
            from .. import ssh

            self.sftp = ssh.connect(self.resource.endpoint).sftp()
        else:
            self.sftp = None

    def describe(self) -> str:
        return f"runtime {self.label}'s working directory {self.workdir}"

    def resolve(self, path: str) -> str:
        home = self.resource.facts.get("home") or "~"
        if path.startswith("~/") or path == "~":
            return posixpath.normpath(home + path[1:])
        if path in ("", "."):
            return self.workdir
        return posixpath.normpath(posixpath.join(self.workdir, path))

    def join(self, a: str, b: str) -> str:
        return posixpath.join(a, b)

    def _stat(self, p: str):
        if self.sftp is None:
            return os.stat(p)
        return self.sftp.stat(p)

    def exists(self, p: str) -> bool:
        try:
            self._stat(p)
            return True
        except (OSError, IOError):
            return False

    def isdir(self, p: str) -> bool:
        try:
            return stat.S_ISDIR(self._stat(p).st_mode or 0)
        except (OSError, IOError):
            return False

    def listdir(self, p: str) -> list[str]:
        return sorted(self.sftp.listdir(p) if self.sftp else os.listdir(p))

    def makedirs(self, p: str) -> None:
        self.run(f"mkdir -p -- {shlex.quote(p)}")

    def open(self, p: str, mode: str) -> Any:
        if self.sftp is None:
            return open(p, mode)
        fh = self.sftp.open(p, mode)
        if "r" in mode:
            fh.prefetch()
        else:
            fh.set_pipelined(True)
        return fh

    def run(self, command: str) -> None:
        self.resource.shell().run(command, timeout=3600)

    def same_host(self, other: Any) -> bool:
        return isinstance(other, _Remote) and other.resource.name == self.resource.name


def _side(spec: str, what: str) -> tuple[Any, str]:
    name, sep, path = spec.partition(":")
    if not sep:
        raise CybershuttleError(f"the {what} {spec!r} must look like RUNTIME:path or local:path")
    side = _Local() if name == "local" else _Remote(names.validate(name, "runtime name"))
    return side, side.resolve(path)


def _copy(src: Any, src_path: str, dst: Any, dst_path: str, result: CopyResult) -> None:
    if src.isdir(src_path):
        dst.makedirs(dst_path)
        for entry in src.listdir(src_path):
            _copy(src, src.join(src_path, entry), dst, dst.join(dst_path, entry), result)
        return
    with src.open(src_path, "rb") as reader, dst.open(dst_path, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            result.bytes += len(chunk)
    result.files += 1
