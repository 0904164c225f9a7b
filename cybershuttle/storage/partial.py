"""Partial files: how a copy or a download makes a file in a directory others may write to.

In a shared directory (a project or scratch directory, /tmp) a predictable name is an
invitation: bob plants `TARGET.cybershuttle-partial` as a symlink to alice's `~/.bashrc`,
and alice's next copy writes through it. So a partial file is

- created exclusively under a random name, `TARGET.cybershuttle-partial.<random>`:
  `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600 (over SFTP an exclusive create, which refuses
  any existing name, a symlink included, then 0600 before the first byte);
- written only through the descriptor (SFTP handle) opened then, never by its name again;
- renamed into place when complete: a rename replaces the target's name, it never writes
  through whatever the target was;
- resumed, when an earlier copy left one, only if it is ours (our uid, a regular file with
  one link, opened without following links, not locked by a copy still writing it) and its
  bytes equal the source's first bytes (SHA-256 of both). Anything else is removed when ours,
  left alone when not, and the copy starts afresh.

`safe_dir` says whether a directory's names can be changed by others (writable by group or
others, without the sticky bit): only where they cannot do path-based writers (scp, sftp
reget/reput) get the name of a partial file.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CybershuttleError

SUFFIX = ".cybershuttle-partial"
_CHUNK = 4 << 20
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC

#: sha256 of the source's first N bytes
Prefix = Callable[[int], str]


class PartialFileError(CybershuttleError):
    """A partial file could not be made safely."""


@dataclass
class Partial:
    """A partial file being written: its full path, the open file, and the bytes already in it."""

    path: str
    file: Any  # binary, positioned at `offset`
    offset: int
    remote: Any = None  # the paramiko SFTP client, for a partial file on an sftp storage
    fs: Any = None  # the fsspec filesystem, for one on any other storage (no links there to follow)

    def commit(self, target: str, mode: int) -> None:
        """Give it `mode` and rename it to `target` (replacing the name, never writing through it)."""
        if self.fs is not None:
            self.file.close()
            self.fs.mv(self.path, target)
            return
        if self.remote is None:
            self.file.flush()
            os.fchmod(self.file.fileno(), mode)
            here, now = os.fstat(self.file.fileno()), os.lstat(self.path)
            self.file.close()
            if (here.st_dev, here.st_ino) != (now.st_dev, now.st_ino):
                raise PartialFileError(f"{self.path} was replaced by someone else while it was written: "
                                       f"{target} was left as it was; copy again")
            os.rename(self.path, target)
            return
        self.file.chmod(mode)
        self.file.close()
        self.remote.posix_rename(self.path, target)

    def discard(self) -> None:
        try:
            self.file.close()
        finally:
            try:
                if self.fs is not None:
                    self.fs.rm_file(self.path)
                else:
                    (self.remote.remove if self.remote is not None else os.unlink)(self.path)
            except (OSError, CybershuttleError):
                pass


def local(target: str, size: int, prefix: Prefix | None, names: list[str] | None = None) -> Partial:
    """A partial file for local `target`: an earlier one of ours resumed when verified, else a new one.
    `names`: the directory's entries (`leftovers()`), when the caller lists it once for many files."""
    directory, base = os.path.split(target)
    for name in _candidates(leftovers(directory) if names is None else names, base):
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR | _NOFOLLOW)
        except OSError:
            continue  # a symlink (ELOOP), gone, or not ours to open
        f = os.fdopen(fd, "r+b")
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1):
            f.close()
            continue  # someone else's, or a hard link to another file: never written
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue  # another copy of ours is writing it right now
        if prefix is not None and 0 < st.st_size <= size and _sha256_of(f, st.st_size) == prefix(st.st_size):
            f.seek(st.st_size)
            return Partial(path, f, st.st_size)
        f.close()
        os.unlink(path)  # ours but not a prefix of this source: stale
    while True:
        path = os.path.join(directory, f"{base}{SUFFIX}.{secrets.token_hex(6)}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o600)  # whatever the umask
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while it is written: not a leftover to others
        return Partial(path, os.fdopen(fd, "wb"), 0)


def sftp(client: Any, target: str, size: int, prefix: Prefix | None,
         remote_prefix: Callable[[str, int], str] | None,
         resume: bool, entries: list[Any] | None = None) -> Partial:
    """A partial file for `target` on an SFTP server (`client`: paramiko). `resume` only where `safe_dir`:
    SFTP has no O_NOFOLLOW, so a leftover's name is trusted only where others cannot change names.
    `entries`: the directory's partial files (`sftp_leftovers()`), when listed once for many files."""
    directory, base = posixpath.split(target)
    if entries is None:
        entries = sftp_leftovers(client, directory)
    names = _candidates([e.filename for e in entries], base)
    if names and resume and prefix is not None and remote_prefix is not None:
        uid = client.stat(".").st_uid  # the login's home is the login's
        for e in entries:
            if e.filename not in names:
                continue
            path = posixpath.join(directory, e.filename)
            ours = stat.S_ISREG(e.st_mode or 0) and e.st_uid == uid
            if ours and 0 < (e.st_size or 0) <= size and remote_prefix(path, e.st_size) == prefix(e.st_size):
                f = client.open(path, "r+b")
                f.seek(e.st_size)
                return Partial(path, f, e.st_size, client)
            if ours:
                client.remove(path)
    while True:
        path = posixpath.join(directory, f"{base}{SUFFIX}.{secrets.token_hex(6)}")
        try:
            # "x": SSH_FXF_EXCL, which the server maps to O_EXCL: an existing name, a symlink too, is refused.
            f = client.open(path, "wxb")
        except OSError:
            if _exists(client, path):
                continue
            raise
        f.chmod(0o600)
        return Partial(path, f, 0, client)


def planted_link(directory: str, me: int, lstat: Callable[[str], Any]) -> tuple[str, int] | None:
    """The first component of `directory` that is a symbolic link made by someone else (not `me`, not
    root), with its owner's uid: a copy never follows it (it could lead into `me`'s own files)."""
    path = "/" if directory.startswith("/") else ""
    for part in [p for p in directory.split("/") if p and p != "."]:
        path = posixpath.join(path, part) if path else part
        try:
            st = lstat(path)
        except (FileNotFoundError, PermissionError):
            return None  # what is missing the copy makes itself
        if stat.S_ISLNK(st.st_mode or 0) and st.st_uid not in (me, 0):
            return path, st.st_uid
    return None


def owner_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"uid {uid}"


def leftovers(directory: str) -> list[str]:
    """Names in a local directory that may be partial files."""
    try:
        return [n for n in os.listdir(directory or ".") if SUFFIX in n]
    except FileNotFoundError:
        return []


def sftp_leftovers(client: Any, directory: str) -> list[Any]:
    """Entries (with attributes) of a directory on an SFTP server that may be partial files."""
    try:
        return [e for e in client.listdir_attr(directory or ".") if SUFFIX in e.filename]
    except FileNotFoundError:
        return []


def safe_dir(mode: int, owner: int, me: int) -> bool:
    """Whether only `me` (and root) can rename or replace names in a directory of this mode and owner."""
    shared = mode & (stat.S_IWGRP | stat.S_IWOTH) or owner not in (me, 0)
    return not shared or bool(mode & stat.S_ISVTX)


def umask_mode() -> int:
    """The mode a new file gets here (0666 less the umask), read without changing the umask (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def write_whole(path: str, data: bytes, mode: int) -> None:
    """Write a small file whole (a restored notebook): a fresh partial file beside it, given `mode`,
    renamed over `path`, so a name planted at `path` or beside it is replaced, never written through."""
    _whole(path, mode, lambda f: f.write(data))


def copy_local(source: str, path: str) -> None:
    """Copy a local file to `path` the same way (a template's outputs collected into a shared directory)."""
    def copy(f: Any) -> None:
        with open(source, "rb") as src:
            while block := src.read(_CHUNK):
                f.write(block)

    _whole(path, umask_mode(), copy)


def _whole(path: str, mode: int, write: Callable[[Any], object]) -> None:
    """A fresh partial file for `path` filled by `write`, then renamed into place; removed if anything fails."""
    part = local(path, 0, None, names=[])
    try:
        write(part.file)
        part.commit(path, mode)
    except BaseException:
        part.discard()
        raise


def generic(fs: Any, target: str) -> Partial:
    """A partial file on a storage without symlinks (object stores, rclone remotes): a random name, no resume."""
    path = f"{target}{SUFFIX}.{secrets.token_hex(6)}"
    return Partial(path, fs.open(path, "wb"), 0, fs=fs)


def sha256_prefix(f: Any, n: int) -> str:
    """SHA-256 of the first `n` bytes of the open binary file `f`."""
    return _sha256_of(f, n)


def _sha256_of(f: Any, n: int) -> str:
    f.seek(0)
    digest = hashlib.sha256()
    left = n
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def _candidates(names: list[str], base: str) -> list[str]:
    """Partial files a copy to `base` may have left (random-named ones only: a fixed name is anyone's)."""
    start = f"{base}{SUFFIX}."
    return sorted(n for n in names if n.startswith(start) and n[len(start):].isalnum())


def _exists(client: Any, path: str) -> bool:
    try:
        client.lstat(path)
        return True
    except OSError:
        return False
