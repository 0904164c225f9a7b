"""Copies between any two storages (or a storage and a path here): `storage cp`.

A file is written to a partial file and renamed when complete, so a target
never holds half a file, and an interrupted copy is resumed from what the
partial file already holds once its bytes are checked against the source's
(`partial`: random names made exclusively, 0600, no symlink followed, safe in a
directory others write to). `checksum=True` compares SHA-256 of both sides,
computed where the file is (`sha256sum` over SSH for sftp).

Two paths behind the same SSH login are copied there (`cp -r` into a private
`mktemp -d` directory, then renamed), without a round trip through this machine.

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
from . import partial as partials
from .catalog import Storage, StorageError, get
from .filesystems import StorageFileSystem, is_spec, relative, split

PARTIAL_SUFFIX = partials.SUFFIX
_CHUNK = 4 << 20
#: Remote paths handed to scp must not be globbed or split: anything else takes the fsspec path.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/~+@%=,-]+$")

#: progress(bytes done, bytes in total, current file)
Progress = Callable[[int, int, str], None]
#: guard(target storage, full path in it): raises to refuse writing there (asked for every file and
#: directory a copy would make, before it makes anything; how a front end confines its users' writes)
Guard = Callable[[Storage, str], None]


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
        self._leftovers: dict[str, list[Any]] = {}
        self._safe: dict[str, bool] = {}
        self._safe_links: set[str] = set()

    def leftovers(self, directory: str, list_them: Callable[[str], list[Any]]) -> list[Any]:
        """Possible partial files in a target directory, listed once per copy (a tree of many files
        into one directory would otherwise list it once per file)."""
        if directory not in self._leftovers:
            self._leftovers[directory] = list_them(directory)
        return self._leftovers[directory]

    def refuse_planted_links(self, rel: str) -> None:
        """Refuse a target directory reached through a symbolic link another user made (checked once per
        directory per copy, before anything is made in it)."""
        directory = self.full(rel)
        if directory in self._safe_links:
            return
        if self.storage.protocol == "file":
            found = partials.planted_link(directory, os.geteuid(), os.lstat)
        elif self.storage.protocol == "sftp":
            client = ssh.connect(self.storage.endpoint).sftp()
            found = partials.planted_link(directory, client.stat(".").st_uid, client.lstat)
        else:
            found = None  # no links there
        if found is not None:
            link, uid = found
            raise StorageError(f"{link} is a symbolic link made by {partials.owner_name(uid)}, not you: a copy "
                               f"into {self.show(rel)} does not follow it; if you trust where it leads, copy to "
                               "that directory by its real path")
        self._safe_links.add(directory)

    def safe_dir(self, directory: str, ask: Callable[[str], bool]) -> bool:
        """Whether only we can change names in a target directory (`partial.safe_dir`), asked once per copy."""
        if directory not in self._safe:
            self._safe[directory] = ask(directory)
        return self._safe[directory]

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
         progress: Progress | None = None, guard: Guard | None = None,
         read_guard: Guard | None = None) -> CopyResult:
    """Copy `NAME:/path` (or a local path, or a `Place`) to another, like `cp`.

    Onto an existing directory, or a target ending in '/', the source keeps
    its name. Directories need `recursive=True`. `guard` is asked about every
    target path first, `read_guard` about every source path (see `Guard`);
    nothing is written when either refuses one.
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
    # Both ends behind one login are copied there, unless a guard must see each file go by.
    there = _on_one_host(src, dst) and not checksum and guard is None and read_guard is None
    files = list(src.fs.find(src.path, withdirs=True, detail=True).items()) if is_dir and not there else []
    if read_guard is not None:
        read_guard(src.storage, src.full(src.path))
        for name, _ in files:
            read_guard(src.storage, src.full(relative(name)))
    if guard is not None:
        guard(dst.storage, dst.full(target))
        for name, _ in files:
            guard(dst.storage, dst.full(posixpath.join(target, _below(src, name))))

    if there:
        _copy_there(src, dst, target, result)
    elif is_dir:
        total = sum(int(v.get("size") or 0) for _, v in files if v.get("type") != "directory")
        dst.refuse_planted_links(target)
        dst.fs.makedirs(target, exist_ok=True)
        done = 0
        for name, meta in sorted(files):
            rel = relative(name)
            sub = _below(src, name)
            if sub == ".":
                continue
            if meta.get("type") == "directory":
                dst.refuse_planted_links(posixpath.join(target, sub))
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


def _below(src: _Side, name: str) -> str:
    """A path `find` returned, relative to the directory being copied ("." for itself)."""
    rel = relative(name)
    return posixpath.relpath("/" + rel, "/" + src.path) if src.path else rel


# -- both ends behind one SSH login -----------------------------------------
def _on_one_host(src: _Side, dst: _Side) -> bool:
    if not src.storage.protocol == dst.storage.protocol == "sftp":
        return False
    a, b = src.storage.endpoint, dst.storage.endpoint
    return (a.host, a.port, a.user, a.via) == (b.host, b.port, b.user, b.via)


def _copy_there(src: _Side, dst: _Side, target: str, result: CopyResult) -> None:
    """`cp -r` on the host itself into a private directory (`mktemp -d`: a random name, 0700, so nothing
    planted is written through), renamed into place when complete; counts what arrived."""
    s, d = shlex.quote(src.full(src.path)), shlex.quote(dst.full(target))
    template = shlex.quote(dst.full(target) + PARTIAL_SUFFIX + ".XXXXXXXXXX")
    out = ssh.connect(src.storage.endpoint).run(
        f'p=$(mktemp -d -- {template}) || exit 1; if cp -r -- {s} "$p/c" && mv -T -- "$p/c" {d}; '
        f'then rmdir -- "$p"; else rm -rf -- "$p"; exit 1; fi; '
        f"find {d} -type f -printf '%s\\n'", timeout=3600).stdout.split()
    result.files, result.bytes, result.method = len(out), sum(int(n) for n in out), "remote cp"
    dst.fs.invalidate_cache()


# -- one file --------------------------------------------------------------
def _copy_file(src: _Side, src_rel: str, dst: _Side, dst_rel: str, size: int, checksum: bool,
               result: CopyResult, progress: Progress | None) -> None:
    if src.storage.protocol == dst.storage.protocol == "file" and src.full(src_rel) == dst.full(dst_rel):
        raise StorageError(f"{src.show(src_rel)} and {dst.show(dst_rel)} are the same file")
    parent = posixpath.dirname(dst_rel)
    dst.refuse_planted_links(parent)
    if parent and dst.info(parent) is None:
        dst.fs.makedirs(parent, exist_ok=True)
    part, named_ok = _partial_for(src, src_rel, dst, dst_rel, size)
    offset = part.offset
    try:
        if progress:
            progress(offset, size, src.show(src_rel))
        fast = _openssh_pair(src, dst) if named_ok else None  # scp and sftp write by name
        sent = False
        if fast is not None:
            try:
                _openssh_copy(src, src_rel, dst, part.path, offset, size, fast, progress)
                result.method = "openssh"
                sent = True
            except _FastPathFailed as exc:
                result.notes.append(f"OpenSSH copy failed ({exc}); copied with SFTP instead")
                offset = _size_of(part)
        if not sent:
            _stream(src, src_rel, part.file, offset, size, progress)
        result.resumed_bytes += offset
        part.commit(dst.full(dst_rel), _final_mode(dst))
    except BaseException:
        if part.offset == 0 and _size_of(part) == 0:
            part.discard()  # nothing worth resuming
        else:
            _close(part)
        raise
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


def _stream(src: _Side, src_rel: str, out: Any, offset: int, size: int, progress: Progress | None) -> None:
    """Copy through fsspec into the open partial file `out`, positioned at `offset` (what it already holds)."""
    if offset:
        out.seek(offset)
    with src.fs.fs.open(src.full(src_rel), "rb") as inp:
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


# -- partial files ---------------------------------------------------------
def _partial_for(src: _Side, src_rel: str, dst: _Side, dst_rel: str, size: int) -> tuple[partials.Partial, bool]:
    """The partial file for `dst_rel` (a verified leftover resumed, else a new one) and whether its
    directory is one where others cannot change names (so a writer that goes by name may be used)."""
    full = dst.full(dst_rel)

    def source_prefix(n: int) -> str:
        return _prefix_sha256(src.storage, src.full(src_rel), n, src.fs)

    if dst.storage.protocol == "file":
        parent = os.path.dirname(full) or "."

        def local_safe(d: str) -> bool:
            st = os.stat(d)
            return partials.safe_dir(st.st_mode, st.st_uid, os.geteuid())

        return (partials.local(full, size, source_prefix, dst.leftovers(parent, partials.leftovers)),
                dst.safe_dir(parent, local_safe))
    if dst.storage.protocol == "sftp":
        client = ssh.connect(dst.storage.endpoint).sftp()
        parent = posixpath.dirname(full) or "."

        def remote_safe(d: str) -> bool:
            st = client.stat(d)
            return partials.safe_dir(st.st_mode or 0, st.st_uid or 0, client.stat(".").st_uid)

        safe = dst.safe_dir(parent, remote_safe)
        entries = dst.leftovers(parent, lambda d: partials.sftp_leftovers(client, d))
        return partials.sftp(client, full, size, source_prefix,
                             lambda path, n: _prefix_sha256(dst.storage, path, n, dst.fs), resume=safe,
                             entries=entries), safe
    return partials.generic(dst.fs.fs, full), False


def _prefix_sha256(storage: Storage, full: str, n: int, fs: StorageFileSystem) -> str:
    """SHA-256 of the first `n` bytes of a file, computed where it lives."""
    if storage.protocol == "sftp":
        out = ssh.connect(storage.endpoint).run(f"head -c {int(n)} -- {shlex.quote(full)} | sha256sum",
                                                check=False)
        if out.ok and out.stdout.split():
            return out.stdout.split()[0]
    with fs.fs.open(full, "rb") as f:
        return partials.sha256_prefix(f, n)


def _size_of(part: partials.Partial) -> int:
    try:
        if part.remote is not None:
            return int(part.file.stat().st_size or 0)
        if part.fs is None:
            return os.fstat(part.file.fileno()).st_size
    except (OSError, ValueError):
        pass
    return 0


def _close(part: partials.Partial) -> None:
    try:
        part.file.close()
    except (OSError, ValueError):
        pass


def _final_mode(dst: _Side) -> int:
    # A finished file gets the mode a new file gets there (0600 was for while it was being made).
    return partials.umask_mode() if dst.storage.protocol == "file" else 0o644


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
    """Copy with scp (or resume with sftp reget/reput) into `partial`, the partial file's full path."""
    direction, endpoint = fast
    ssh.connect(endpoint)  # the pool checks the host key and reports a clear error before OpenSSH runs
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    login = f"{endpoint.user}@{host}"
    src_path, dst_path = src.full(src_rel), partial
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


__all__ = ["PARTIAL_SUFFIX", "CopyResult", "Guard", "Place", "copy"]
