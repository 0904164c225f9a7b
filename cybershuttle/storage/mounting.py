"""Mounts: `DIR/NAME` shows a storage's files, here or on a runtime's host.

- The data is on that host already (a local storage here; an sftp storage of
  the runtime's own resource there): a symlink, read-write storages only.
- sftp elsewhere: an `sshfs` mount with the storage's key and pinned known_hosts.
- rclone remotes, http(s), and read-only storages on the same host: an
  `rclone mount` (`--read-only` when the storage is), since a symlink cannot
  refuse writes.

FUSE mounts need /dev/fuse and fusermount; where they are missing the error
says so and points at `storage cp` and `storage.open` instead. Mount records
live in the user's private catalog (kind `storage-mount`), one per storage and
host, so `storage mounts` survives the shell that made them.
"""
from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import names, profile
from ..compute.shell import LocalShell, Shell
from ..errors import CybershuttleError, NotFoundError
from ..registry import catalog
from .catalog import Storage, StorageError, get

MOUNT_KIND = "storage-mount"
DEFAULT_DIR = "~/cybershuttle-mounts"


@dataclass(frozen=True)
class Mount:
    """One mount: storage `name` shown at `path` on `host` (None: this machine)."""

    name: str
    path: str
    method: str  # symlink | sshfs | rclone
    read_only: bool
    host: str | None = None  # None: this machine
    runtime: str | None = None  # the runtime whose host holds it
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mount(name: str, directory: str | None = None, *, runtime: str | None = None) -> Mount:
    """Make `directory/name` show storage `name`'s files; on `runtime`'s host when given."""
    storage = get(name)
    key = _key(name, runtime)
    existing = catalog().private.find(MOUNT_KIND, key)
    if existing is not None:
        record = _record(existing.data)
        raise StorageError(f"storage {name!r} is already mounted at {record.path}"
                           + (f" on {record.host}" if record.host else "")
                           + f": `cybershuttle storage umount {name}` first")
    shell, host, same_host = _where(storage, runtime)
    base = directory or DEFAULT_DIR
    target = _target_path(shell, base, name)
    method, command = _plan(storage, target, same_host, remote=host is not None)
    _prepare(shell, target, method)
    result = shell.run(command, check=False, timeout=90)
    if not result.ok:
        if method != "symlink":
            shell.run(f"rmdir {shlex.quote(target)} 2>/dev/null || true", check=False)
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise StorageError(f"mounting storage {name!r} at {target}" + (f" on {host}" if host else "")
                           + f" with {method} failed: {detail[0]}")
    if method != "symlink":
        _wait_mounted(shell, target)
    record = Mount(name=name, path=target, method=method, read_only=storage.read_only, host=host, runtime=runtime, created=time.time())
    data = record.to_dict()
    catalog().private.add(MOUNT_KIND, key, data, catalog().user)
    return record


def umount(name: str, *, runtime: str | None = None) -> Mount:
    """Undo `mount` (the symlink or the FUSE mount; the storage's files stay)."""
    names.validate(name, "storage name")
    key = _key(name, runtime)
    entry = catalog().private.find(MOUNT_KIND, key)
    if entry is None:
        here = f" on runtime {runtime!r}'s host" if runtime else ""
        raise NotFoundError(f"storage {name!r} is not mounted{here} (see `cybershuttle storage mounts`)")
    record = _record(entry.data)
    shell = _shell_for(record)
    q = shlex.quote(record.path)
    if record.method == "symlink":
        shell.run(f"if [ -L {q} ]; then rm -f {q}; fi")
    else:
        result = shell.run(f"fusermount3 -u {q} 2>/dev/null || fusermount -u {q} 2>/dev/null || umount {q}",
                           check=False, timeout=60)
        if not result.ok and _is_mounted(shell, record.path):
            raise StorageError(f"cannot unmount {record.path}: {result.stderr.strip() or 'busy'} — close the "
                               "programs using it and try again")
        shell.run(f"rmdir {q} 2>/dev/null || true", check=False)
    catalog().private.remove(MOUNT_KIND, key)
    return record


def mounts() -> list[Mount]:
    """The active user's mounts, here and on runtime hosts."""
    return [_record(e.data) for e in catalog().private.list(MOUNT_KIND)]


def fuse_available() -> tuple[bool, str]:
    """Whether FUSE mounts can work on this machine, and why not."""
    if not os.path.exists("/dev/fuse"):
        return False, "there is no /dev/fuse (FUSE is not available in this machine or container)"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return False, "fusermount is not installed (Debian/Ubuntu: apt install fuse3)"
    return True, ""


# -- planning --------------------------------------------------------------
def _where(storage: Storage, runtime: str | None) -> tuple[Shell, str | None, bool]:
    """The shell where the mount is made, its host label, and whether the data is on that host."""
    if runtime is None:
        return LocalShell(), None, storage.local
    from .. import compute
    from .. import runtime as runtimes

    rt = runtimes.get(runtime)
    res = compute.get(rt.resource)
    if not res.remote:
        return LocalShell(), None, storage.local
    if storage.local:
        raise StorageError(f"storage {storage.name!r} is on this machine, which runtime {runtime!r} on "
                           f"{res.name} cannot reach: copy the files there with `cybershuttle storage cp "
                           f"{storage.name}:/... STORAGE_ON_{res.name}:/...`, or mount it here without a runtime")
    # the kernel's host: the resource's own, or the compute node its job runs on (reached by its transport);
    # a cluster's nodes share its filesystem, so data on the resource is data on the node too
    shell = runtimes.transports.for_runtime(rt, res).shell()
    where = f"node {rt.node}" if rt.node and runtimes.transports.name_for(rt, res) != "login" else res.endpoint.label
    same = storage.protocol == "sftp" and (
        storage.resource == res.name
        or (storage.host == res.endpoint.host and (storage.port or 22) == res.endpoint.port))
    return shell, f"{res.name} ({where})", same


def _target_path(shell: Shell, base: str, name: str) -> str:
    if base.startswith("~"):
        home = shell.run("printf %s \"$HOME\"").stdout if not isinstance(shell, LocalShell) else str(Path.home())
        base = home + base[1:]
    if not base.startswith("/"):
        if not isinstance(shell, LocalShell):
            raise StorageError(f"give an absolute directory (or one under ~) on the runtime's host, not {base!r}")
        base = os.path.abspath(base)
    return base.rstrip("/") + "/" + name


def _plan(storage: Storage, target: str, same_host: bool, *, remote: bool) -> tuple[str, str]:
    q = shlex.quote(target)
    if same_host and not storage.read_only:
        root = storage.root
        if storage.local or root.startswith("/"):
            source = shlex.quote(root)
        else:
            source = '"$HOME"/' + shlex.quote(root.lstrip("./") or ".")
        return "symlink", f"ln -s -- {source} {q}"
    if not remote:
        ok, why = fuse_available()
        if not ok:
            raise StorageError(f"cannot mount storage {storage.name!r}: {why}. Use `cybershuttle storage cp "
                               f"{storage.name}:/path DIR` to copy files, or cybershuttle.storage.open/fs in Python")
    ro = storage.read_only
    if storage.protocol == "sftp" and not same_host:
        ep = storage.endpoint
        opts = ["BatchMode=yes", "StrictHostKeyChecking=yes", "reconnect", "ServerAliveInterval=15"]
        if not remote:
            # On this machine the storage's own key and pinned known_hosts apply; on a
            # runtime's host its user's own SSH settings there do.
            opts.append(f"UserKnownHostsFile={ep.known_hosts_path}")
            if ep.key:
                opts += [f"IdentityFile={Path(ep.key).expanduser()}", "IdentitiesOnly=yes"]
        if ro:
            opts.append("ro")
        for o in opts:
            if "," in o:
                raise StorageError(f"cannot pass {o!r} to sshfs (a ',' in a path)")
        root = storage.root if storage.root.startswith("/") else storage.root.lstrip("./")
        source = f"{ep.user}@{ep.host}:{root}"
        return "sshfs", f"sshfs -p {int(ep.port)} -o {shlex.quote(','.join(opts))} -- {shlex.quote(source)} {q}"
    flags = "--read-only " if ro or storage.protocol == "http" else ""
    log = "/dev/null" if remote else shlex.quote(str(profile.active().subdir("mounts") / f"{storage.name}.rclone.log"))
    if storage.protocol in ("file", "sftp"):  # read-only on the same host
        root = storage.root if storage.root.startswith("/") else '"$HOME"/' + shlex.quote(storage.root.lstrip("./"))
        source = root if root.startswith('"$HOME"') else shlex.quote(root)
        return "rclone", f"rclone mount {flags}--daemon --log-file {log} {source} {q} </dev/null >/dev/null 2>&1"
    if storage.protocol == "rclone":
        return "rclone", (f"rclone mount {flags}--daemon --log-file {log} {shlex.quote(storage.root)} {q}"
                          " </dev/null >/dev/null 2>&1")
    if storage.protocol == "http":
        return "rclone", (f"rclone mount --read-only --daemon --log-file {log} --http-url "
                          f"{shlex.quote(storage.root + '/')} :http: {q} </dev/null >/dev/null 2>&1")
    raise StorageError(f"storage {storage.name!r} ({storage.protocol}://) cannot be mounted: only local, sftp, "
                       "http and rclone storages can. Use `cybershuttle storage cp` or cybershuttle.storage.fs instead")


def _prepare(shell: Shell, target: str, method: str) -> None:
    q = shlex.quote(target)
    parent = shlex.quote(os.path.dirname(target))
    check = shell.run(f"mkdir -p {parent} && if [ -e {q} ] || [ -L {q} ]; then "
                      f"if [ -d {q} ] && [ ! -L {q} ] && [ -z \"$(ls -A {q})\" ]; then echo empty; else echo taken; fi; "
                      "else echo free; fi")
    state = check.stdout.strip()
    if state == "taken":
        raise StorageError(f"{target} already exists: choose another directory, or remove it first")
    if method == "symlink" and state == "empty":
        shell.run(f"rmdir {q}")
    if method != "symlink" and state == "free":
        shell.run(f"mkdir {q}")


def _wait_mounted(shell: Shell, target: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _is_mounted(shell, target):
            return
        time.sleep(0.2)
    raise StorageError(f"the mount at {target} did not appear within {timeout:.0f} s")


def _is_mounted(shell: Shell, target: str) -> bool:
    return shell.run(f"mountpoint -q {shlex.quote(target)}", check=False).ok


def _shell_for(record: Mount) -> Shell:
    if record.runtime is None or record.host is None:
        return LocalShell()
    from .. import compute
    from .. import runtime as runtimes

    try:
        rt = runtimes.get(record.runtime)
        return runtimes.transports.for_runtime(rt, compute.get(rt.resource)).shell()
    except CybershuttleError as exc:
        raise StorageError(f"cannot reach runtime {record.runtime!r} to unmount {record.path}: {exc}") from exc


def _key(name: str, runtime: str | None) -> str:
    names.validate(name, "storage name")
    return f"{name}.on.{names.validate(runtime, 'runtime name')}" if runtime else name


def _record(data: dict[str, Any]) -> Mount:
    known = set(Mount.__dataclass_fields__)
    return Mount(**{k: v for k, v in data.items() if k in known})
