"""The content-addressed, read-only dataset cache in the user's profile.

Layout under `<profile>/cache/datasets/` (the profile is 0700, so one user's
private data never shows in another's cache)::

    <sha256>/NAME               a downloaded file, named by its content's hash
    <sha256>/...                an after-download command's output, named by the
                                hash of (input hash, command)
    downloads/<key>.partial     a download in progress (resumed by the next load)
    refs/<dataset>.json         cache entries a dataset produced (for `dataset rm`)
    .tmp-*                      work directories, renamed into place when complete

Entries are made complete in a temporary directory and renamed into place, so
a reader never sees half an entry, and are then sealed: every write bit off
and, when running as root (where mode bits do not stop writes), the
immutable attribute set too.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import profile
from ..errors import CybershuttleError

_HASH_CHUNK = 1 << 20
_STDERR_TAIL = 2000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class AfterDownloadError(CybershuttleError):
    """The after-download command failed; nothing was added to the cache."""


def root() -> Path:
    path = profile.active().subdir("cache") / "datasets"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """One hash over a directory: relative names, kinds and file contents, in order."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            digest.update(str(full.relative_to(path)).encode() + b"\0")
            digest.update(file_sha256(full).encode() if not full.is_symlink() else os.readlink(full).encode())
    return digest.hexdigest()


def partial_path(source: str) -> Path:
    path = root() / "downloads" / f"{key_of(source)}.partial"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return path


def safe_name(text: str) -> str:
    name = _SAFE_NAME.sub("_", text).lstrip(".") or "download"
    return name[:128]


def lookup(digest: str) -> Path | None:
    entry = root() / digest
    return entry if entry.is_dir() else None


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=root()))


def commit(work: Path, digest: str) -> Path:
    """Rename a finished work directory to `<digest>` and seal it; an existing entry wins."""
    final = root() / digest
    try:
        os.rename(work, final)
    except OSError:
        if not final.is_dir():
            raise
        discard(work)  # another load produced the same content first
        return final
    seal(final)
    return final


def add_file(blob: Path, digest: str, name: str) -> Path:
    """Move a complete download into the cache as `<digest>/<name>`; returns the file's path."""
    existing = lookup(digest)
    if existing is not None:
        blob.unlink(missing_ok=True)
    else:
        work = workdir()
        os.replace(blob, work / name)
        existing = commit(work, digest)
    files = [p for p in existing.iterdir()]
    return files[0] if len(files) == 1 else existing / name


def run_after_download(command: str, blob: Path, digest: str) -> Path:
    """Run `command` in a fresh directory with `blob` on stdin; cache its output under `digest`."""
    existing = lookup(digest)
    if existing is not None:
        return existing
    work = workdir()
    env = {**os.environ, "CYBERSHUTTLE_DOWNLOAD": str(blob)}
    with open(blob, "rb") as stdin, tempfile.TemporaryFile() as err:
        proc = subprocess.run(["/bin/sh", "-c", command], cwd=work, stdin=stdin, stdout=err, stderr=err, env=env)
        err.seek(0, os.SEEK_END)
        err.seek(max(0, err.tell() - _STDERR_TAIL))
        tail = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        discard(work)
        raise AfterDownloadError(
            f"the after-download command {command!r} exited with status {proc.returncode}; nothing was "
            f"cached. Its output ended with:\n{tail or '(no output)'}"
        )
    return commit(work, digest)


def seal(path: Path) -> None:
    """Make `path` and everything under it read-only (immutable too when root)."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode & ~0o222)
    os.chmod(path, os.stat(path).st_mode & ~0o222)
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-f", "+i", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def unseal(path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-f", "-i", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode | 0o700)
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, os.stat(path).st_mode | 0o700)


def discard(path: Path) -> None:
    """Remove a cache entry or work directory, sealed or not."""
    if not path.exists():
        return
    unseal(path)
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def locked(source: str) -> Iterator[None]:
    """Hold an exclusive lock on one source's download for the duration."""
    path = root() / "downloads" / f"{key_of(source)}.lock"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remember(source: str, record: dict[str, Any]) -> None:
    """Note which entry `source` was fetched into (for users who cannot record it in the catalog)."""
    path = root() / "sources"
    path.mkdir(mode=0o700, exist_ok=True)
    tmp = path / f".{key_of(source)}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path / key_of(source))


def remembered(source: str) -> dict[str, Any] | None:
    path = root() / "sources" / key_of(source)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def add_refs(dataset: str, digests: list[str]) -> None:
    refs = _refs_file(dataset)
    known = set(json.loads(refs.read_text())) if refs.exists() else set()
    if not set(digests) <= known:
        tmp = refs.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(known | set(digests))))
        os.replace(tmp, refs)


def drop_refs(dataset: str) -> list[str]:
    """Forget a dataset's cache entries; returns the ones no other dataset uses, removed."""
    refs = _refs_file(dataset)
    if not refs.exists():
        return []
    mine = set(json.loads(refs.read_text()))
    refs.unlink()
    used: set[str] = set()
    for other in refs.parent.glob("*.json"):
        used |= set(json.loads(other.read_text()))
    gone = sorted(mine - used)
    for digest in gone:
        discard(root() / digest)
    return gone


def _refs_file(dataset: str) -> Path:
    path = root() / "refs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path / f"{dataset}.json"
