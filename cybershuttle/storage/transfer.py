"""Copies between any two storages (or a storage and a path here): `storage cp`.

A file is written to `TARGET.cybershuttle-partial` and renamed when complete,
so a target never holds half a file and an interrupted copy is resumed from
what the partial file already holds (the source is read from that offset and
the partial appended to). `checksum=True` compares SHA-256 of both sides,
computed where the file is (`sha256sum` over SSH for sftp).

Two paths behind the same SSH login are copied there (`cp -r`), without a
round trip through this machine.

Besides `NAME:/path` specs and local paths, `copy` takes `Place`s: a path in a
storage made up on the spot (how `runtime.copy` names a path on a runtime's
host), so there is one copy engine for storages and runtimes alike.

Between this machine and an sftp storage the OpenSSH client binaries do the
transfer (`scp`, or `sftp reget`/`reput` to resume), driven with the pool's
settings: the same key, the same pinned known_hosts, StrictHostKeyChecking,
BatchMode. Pure-Python SFTP reaches a fraction of their throughput here (see
benchmarks/storage_transfer.py). Everything else, and the fallback when the
binaries are missing or fail, streams through fsspec.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import ssh
from ..errors import CybershuttleError
from .catalog import Storage, StorageError, get
from .filesystems import StorageFileSystem, is_spec, relative, split

PARTIAL_SUFFIX = ".cybershuttle-partial"
_CHUNK = 4 << 20
#: Remote paths handed to scp must not be globbed or split: anything else takes the fsspec path.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/~+@%=,-]+$")

#: progress(bytes done, bytes in total, current file)
Progress = Callable[[int, int, str], None]


@dataclass
class CopyResult:
    """What a copy did."""

    source: str
    target: str
    files: int = 0
    bytes: int = 0
    resumed_bytes: int = 0  # bytes that were already in partial files and not sent again
    seconds: float = 0.0
    method: str = "fsspec"  # fsspec | openssh (the fast path, for at least one file) | remote cp (one host)
    checksums: dict[str, str] = field(default_factory=dict)  # target path -> sha256, when verified
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Place:
    """A path inside a storage that need not be registered, and how the user wrote it."""

    storage: Storage
    path: str  # inside the storage's root
    spec: str  # as the user wrote it, for messages: "hpc:results/"
    label: str  # shown before a path in results: "hpc:"


class _Side:
    """One end of a copy: a storage's filesystem and a path inside it."""

    def __init__(self, spec: str | Place, what: str) -> None:
        if isinstance(spec, Place):
            self.storage, rel, self.label = spec.storage, spec.path, spec.label
            spec = spec.spec
        elif is_spec(spec):
            name, rel = split(spec)
            self.storage = get(name)
            self.label = f"{name}:"
        else:
            # A path on this machine, as `cp` takes it.
            absolute = os.path.abspath(os.path.expanduser(spec))
            self.storage = Storage(name="local-path", location="/", protocol="file", root="/")
            rel = absolute
            self.label = ""
        self.spec = spec
        self.trailing_slash = spec.endswith("/")
        self.path = relative(rel)
        self.fs = StorageFileSystem(self.storage)
        self.what = what

    def show(self, rel: str) -> str:
        return f"{self.label}/{rel}" if self.label else "/" + rel

    def full(self, rel: str) -> str:
        """The path in the underlying filesystem (local absolute path, or the sftp server's path)."""
        return self.fs._join(rel)

    def info(self, rel: str) -> dict[str, Any] | None:
        try:
            return self.fs.info(rel)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return None
            raise


def copy(src_spec: str | Place, dst_spec: str | Place, *, recursive: bool = False, checksum: bool = False,
         progress: Progress | None = None) -> CopyResult:
    """Copy `NAME:/path` (or a local path, or a `Place`) to another, like `cp`.

    Onto an existing directory, or a target ending in '/', the source keeps
    its name. Directories need `recursive=True`.
    """
    started = time.monotonic()
    src = _Side(src_spec, "source")
    dst = _Side(dst_spec, "target")
    src_spec, dst_spec = src.spec, dst.spec
    if dst.storage.read_only:
        dst.fs._refuse(f"copy {src_spec!r} into it")
    info = src.info(src.path)
    if info is None:
        raise StorageError(f"{src_spec!r} does not exist")
    is_dir = info.get("type") == "directory"
    if is_dir and not recursive:
        raise StorageError(f"{src_spec!r} is a directory: copy it with --recursive (-r)")
    target = dst.path
    dst_info = dst.info(target)
    if dst.trailing_slash or (dst_info is not None and dst_info.get("type") == "directory"):
        target = posixpath.join(target, posixpath.basename(src.path.rstrip("/")) or "root").lstrip("/")
    result = CopyResult(source=src_spec, target=dst.show(target))

    if _on_one_host(src, dst) and not checksum:
        _copy_there(src, dst, target, result)
    elif is_dir:
        files = [(k, v) for k, v in src.fs.find(src.path, withdirs=True, detail=True).items()]
        total = sum(int(v.get("size") or 0) for _, v in files if v.get("type") != "directory")
        dst.fs.makedirs(target, exist_ok=True)
        done = 0
        for name, meta in sorted(files):
            rel = relative(name)
            sub = posixpath.relpath("/" + rel, "/" + src.path) if src.path else rel
            if sub == ".":
                continue
            if meta.get("type") == "directory":
                dst.fs.makedirs(posixpath.join(target, sub), exist_ok=True)
                continue
            size = int(meta.get("size") or 0)
            base = done
            _copy_file(src, rel, dst, posixpath.join(target, sub), size, checksum, result,
                       (lambda d, t, f, base=base: progress(base + d, total, f)) if progress else None)
            done += size
    else:
        size = int(info.get("size") or 0)
        _copy_file(src, src.path, dst, target, size, checksum, result,
                   (lambda d, t, f: progress(d, size, f)) if progress else None)
    result.seconds = round(time.monotonic() - started, 3)
    return result


# -- both ends behind one SSH login -----------------------------------------
def _on_one_host(src: _Side, dst: _Side) -> bool:
    if not src.storage.protocol == dst.storage.protocol == "sftp":
        return False
    a, b = src.storage.endpoint, dst.storage.endpoint
    return (a.host, a.port, a.user, a.via) == (b.host, b.port, b.user, b.via)


def _copy_there(src: _Side, dst: _Side, target: str, result: CopyResult) -> None:
    """`cp -r` on the host itself, into a partial name renamed when complete; counts what arrived."""
    s, d = shlex.quote(src.full(src.path)), shlex.quote(dst.full(target))
    partial = shlex.quote(dst.full(target) + PARTIAL_SUFFIX)
    out = ssh.connect(src.storage.endpoint).run(
        f"rm -rf -- {partial} && cp -r -- {s} {partial} && mv -T -- {partial} {d} && "
        f"find {d} -type f -printf '%s\\n'", timeout=3600).stdout.split()
    result.files, result.bytes, result.method = len(out), sum(int(n) for n in out), "remote cp"
    dst.fs.invalidate_cache()


# -- one file --------------------------------------------------------------
def _copy_file(src: _Side, src_rel: str, dst: _Side, dst_rel: str, size: int, checksum: bool,
               result: CopyResult, progress: Progress | None) -> None:
    if src.storage.protocol == dst.storage.protocol == "file" and src.full(src_rel) == dst.full(dst_rel):
        raise StorageError(f"{src.show(src_rel)} and {dst.show(dst_rel)} are the same file")
    partial = dst_rel + PARTIAL_SUFFIX
    parent = posixpath.dirname(dst_rel)
    if parent and dst.info(parent) is None:
        dst.fs.makedirs(parent, exist_ok=True)
    have = dst.info(partial)
    offset = int(have.get("size") or 0) if have else 0
    if offset > size:
        offset = 0  # a partial longer than the source is from another file
    if progress:
        progress(offset, size, src.show(src_rel))
    fast = _openssh_pair(src, dst)
    sent = False
    if fast is not None:
        try:
            _openssh_copy(src, src_rel, dst, partial, offset, size, fast, progress)
            result.method = "openssh"
            sent = True
        except _FastPathFailed as exc:
            result.notes.append(f"OpenSSH copy failed ({exc}); copied with SFTP instead")
            again = dst.info(partial)
            offset = int(again.get("size") or 0) if again else 0
    if not sent:
        offset = _stream(src, src_rel, dst, partial, offset, size, progress)
    result.resumed_bytes += offset
    dst.fs.fs.mv(dst.full(partial), dst.full(dst_rel))
    dst.fs.invalidate_cache()
    if checksum:
        expected, got = _sha256(src, src_rel), _sha256(dst, dst_rel)
        if expected != got:
            dst.fs.fs.rm_file(dst.full(dst_rel))
            raise StorageError(f"checksum mismatch copying {src.show(src_rel)} to {dst.show(dst_rel)} "
                               f"(sha256 {expected} vs {got}): the target was removed; copy again")
        result.checksums[dst.show(dst_rel)] = got
    result.files += 1
    result.bytes += size
    if progress:
        progress(size, size, src.show(src_rel))


def _stream(src: _Side, src_rel: str, dst: _Side, partial: str, offset: int, size: int,
            progress: Progress | None) -> int:
    """Copy through fsspec, appending to the partial file from `offset`; returns the offset used."""
    mode = "ab" if offset else "wb"
    try:
        out = dst.fs.fs.open(dst.full(partial), mode)
    # fsspec filesystems without append mode raise NotImplementedError (a built-in exception, not a stub)
    except (StorageError, NotImplementedError, ValueError):
        offset, out = 0, dst.fs.fs.open(dst.full(partial), "wb")  # the target cannot append: start again
    with src.fs.fs.open(src.full(src_rel), "rb") as inp, out:
        block = _CHUNK
        if offset:
            inp.seek(offset)
        if hasattr(inp, "prefetch"):
            # paramiko: pipelined reads instead of one round trip per block, taken in the
            # server's 32 KiB units (larger reads re-join the prefetched blocks: 2-5x slower here).
            inp.prefetch(size, max_concurrent_requests=128)
            block = 32 << 10
        if hasattr(out, "set_pipelined"):
            out.set_pipelined(True)
        done = offset
        while True:
            chunk = inp.read(block)
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, size, src.show(src_rel))
    return offset


# -- the OpenSSH fast path -------------------------------------------------
class _FastPathFailed(Exception):
    pass


def _openssh_pair(src: _Side, dst: _Side) -> tuple[str, ssh.Endpoint] | None:
    """("get"|"put", endpoint) when one side is here and the other an sftp storage scp can reach."""
    if not (shutil.which("scp") and shutil.which("sftp")):
        return None
    if src.storage.protocol == "sftp" and dst.storage.protocol == "file":
        direction, remote = "get", src
    elif src.storage.protocol == "file" and dst.storage.protocol == "sftp":
        direction, remote = "put", dst
    else:
        return None
    endpoint = remote.storage.endpoint
    if endpoint.via is not None or not _PLAIN_PATH.match(remote.full(remote.path) + PARTIAL_SUFFIX):
        return None
    return direction, endpoint


def _openssh_copy(src: _Side, src_rel: str, dst: _Side, partial: str, offset: int, size: int,
                  fast: tuple[str, ssh.Endpoint], progress: Progress | None) -> None:
    direction, endpoint = fast
    ssh.connect(endpoint)  # the pool checks the host key and reports a clear error before OpenSSH runs
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    login = f"{endpoint.user}@{host}"
    src_path, dst_path = src.full(src_rel), dst.full(partial)
    for p in (src_path, dst_path):
        if not _PLAIN_PATH.match(p):
            raise _FastPathFailed(f"path {p!r} needs quoting")
    options = endpoint.openssh_options()
    if offset == 0:
        scp_options = ["-P" if o == "-p" else o for o in options]
        remote_src = f"{login}:{src_path}" if direction == "get" else src_path
        remote_dst = f"{login}:{dst_path}" if direction == "put" else dst_path
        command = ["scp", "-q", *scp_options, "--", remote_src, remote_dst]
        stdin = None
    else:
        sftp_options = ["-P" if o == "-p" else o for o in options]
        verb = "reget" if direction == "get" else "reput"
        command = ["sftp", "-q", *sftp_options, "-b", "-", login]
        stdin = f'{verb} "{src_path}" "{dst_path}"\n'.encode()
    local_partial = dst_path if direction == "get" else None
    proc = subprocess.Popen(command, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stdin:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    while True:
        try:
            # Without a progress bar there is nothing to poll for: wait on the process itself.
            proc.wait(timeout=0.5 if progress else None)
            break
        except subprocess.TimeoutExpired:
            if progress:
                progress(_partial_size(local_partial, endpoint, dst_path), size, src.show(src_rel))
        except BaseException:
            proc.kill()  # Ctrl-C: stop the transfer; the partial file stays for a resume
            proc.wait()
            raise
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.returncode != 0:
        raise _FastPathFailed((err.splitlines() or [f"exit code {proc.returncode}"])[-1])


def _partial_size(local: str | None, endpoint: ssh.Endpoint, remote: str) -> int:
    try:
        if local is not None:
            return os.path.getsize(local)
        return ssh.connect(endpoint).sftp().stat(remote).st_size or 0
    except (OSError, CybershuttleError):
        return 0


# -- checksums -------------------------------------------------------------
def _sha256(side: _Side, rel: str) -> str:
    """SHA-256 of a file, computed where it lives."""
    full = side.full(rel)
    if side.storage.protocol == "file":
        digest = hashlib.sha256()
        with Path(full).open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()
    if side.storage.protocol == "sftp":
        out = ssh.connect(side.storage.endpoint).run(f"sha256sum -- {shlex.quote(full)}", check=False)
        if out.ok and out.stdout.split():
            return out.stdout.split()[0]
    digest = hashlib.sha256()
    with side.fs.fs.open(full, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["PARTIAL_SUFFIX", "CopyResult", "Place", "copy"]
