"""Storage records: a name over a location, and how a typed location is understood.

A location is what a scientist types: a local path, `sftp://user@host:port/p`,
`host:/p` or `ftp:/p` (a remote path reached with the user's SSH settings), an
HPC path on a registered compute resource (`--resource R --location /scratch/u`),
an http(s) URL (always read-only), `rclone:remote:path`, or any URL of an
installed fsspec protocol (`s3://`, `gdrive://`, ...). `register` turns it into
one `Storage` record whose `protocol` says what was chosen.

SSH settings are never copied from a compute resource into the storage: a
storage on a resource keeps the resource's name and reads its endpoint at use
time, so `compute configure` (another login, another key) applies to both.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from .. import names, ssh
from ..errors import CybershuttleError
from ..registry import Entry, catalog

KIND = "storage"

#: `host:/path` or `user@host:/path`, the scp form (not a URL, not `C:\`).
_SCP_FORM = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*):(?P<path>[/~].*)$")
_URL = re.compile(r"^(?P<proto>[A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(CybershuttleError):
    """A storage location that cannot be used as given."""


class ReadOnlyStorageError(CybershuttleError, PermissionError):
    """A write to a storage registered read-only (nothing was changed)."""

    http_status = 403


@dataclass(frozen=True)
class Storage:
    """One registered storage, as every front end and other module sees it.

    `root` is the path inside the protocol (a directory on a host, a URL, an
    rclone `remote:path`); `host` is None when the data is on this machine.
    No secret is ever part of a record: `key` is a key file's path.
    """

    name: str
    location: str
    protocol: str  # file | sftp | http | rclone | another fsspec protocol
    root: str = ""
    read_only: bool = False
    resource: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    public: bool = False
    owner: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def local(self) -> bool:
        """Whether the files are on this machine."""
        return self.protocol == "file"

    @property
    def endpoint(self) -> ssh.Endpoint:
        """The SSH endpoint of an sftp storage (its resource's, when it has one)."""
        if self.protocol != "sftp":
            raise StorageError(f"storage {self.name!r} is {self.protocol}, not reached over SSH")
        if self.resource:
            from .. import compute

            return compute.get(self.resource).endpoint
        assert self.host is not None
        return ssh.Endpoint(self.host, self.port or 22, self.user or _login_name(), self.key, self.known_hosts)


# -- public API ------------------------------------------------------------
def register(name: str, location: str, *, read_only: bool = False, resource: str | None = None,
             public: bool = False) -> Storage:
    """Register `location` under `name` (see the module docstring for the forms)."""
    names.validate(name, "storage name")
    fields_ = parse_location(location, resource=resource)
    if fields_["protocol"] == "http":
        read_only = True  # http has no way to write
    record = Storage(name=name, read_only=read_only, public=public, owner=catalog().user, **fields_)
    data = record.to_dict()
    for key in ("name", "public", "owner"):
        data.pop(key)
    entry = catalog().add(KIND, name, data, public=public)
    return _from_entry(entry)


def register_home() -> tuple[Entry, bool]:
    """Register the user's home directory as storage `home` (idempotent)."""
    cat = catalog()
    existing = cat.find(KIND, "home")
    if existing is not None:
        return existing, False
    location = str(Path.home())
    return cat.add(KIND, "home", {"location": location, "protocol": "file", "root": location,
                                  "read_only": False}), True


def get(name: str) -> Storage:
    """The storage called `name` (NotFoundError naming the known ones)."""
    return _from_entry(catalog().get(KIND, name))


def list_all(search: str | None = None) -> list[Storage]:
    """Every storage the active user can see: their private ones and the public ones."""
    return [_from_entry(e) for e in catalog().list(KIND, search)]


def remove(name: str) -> Storage:
    """Remove a storage from the catalog (its files are left alone)."""
    from .mounting import mounts

    storage = get(name)
    if any(m.name == name for m in mounts()):
        raise StorageError(f"storage {name!r} is mounted: `cybershuttle storage umount {name}` first")
    catalog().remove(KIND, name)
    return storage


def info(name: str) -> dict[str, Any]:
    """The record plus what a person asks next: scope and whether it is mounted."""
    from .mounting import mounts

    storage = get(name)
    entry = catalog().get(KIND, name)
    mounted = [m.to_dict() for m in mounts() if m.name == name]
    return {**storage.to_dict(), "scope": entry.scope, "created": entry.created, "mounts": mounted}


# -- locations -------------------------------------------------------------
def parse_location(location: str, *, resource: str | None = None) -> dict[str, Any]:
    """What a typed location means: protocol, root and connection fields."""
    if not isinstance(location, str) or not location.strip():
        raise StorageError("a storage location is required: a path, sftp://, host:/path, https://, rclone:remote:path")
    location = location.strip()
    if any(c in location for c in "\0\n\r"):
        raise StorageError(f"location {location!r} holds a control character")
    if resource is not None:
        return _on_resource(location, resource)
    if location.startswith("rclone:"):
        return _rclone(location)
    url = _URL.match(location)
    if url:
        proto = url.group("proto").lower()
        if proto in ("http", "https"):
            return _http(location)
        if proto in ("sftp", "ssh"):
            return _sftp_url(location)
        if proto == "file":
            return _local(unquote(urlsplit(location).path))
        return _fsspec(location, proto)
    if location.startswith("ftp:/"):
        return _ftp_short(location[len("ftp:"):])
    scp = _SCP_FORM.match(location)
    if scp:
        return _host_path(scp.group("host"), scp.group("path"), scp.group("user"))
    return _local(location)


def _local(path: str) -> dict[str, Any]:
    root = Path(path).expanduser()
    if not root.is_absolute():
        root = Path.cwd() / root
    root = root.resolve()
    if not root.is_dir():
        raise StorageError(f"{root} is not a directory on this machine: create it first, or give another path")
    return {"location": str(root), "protocol": "file", "root": str(root)}


def _remote_path(path: str, where: str) -> str:
    """An absolute path, or one under the login's home (`~/x` -> `x`, as sftp reads it)."""
    if path in ("~", "~/"):
        return "."
    if path.startswith("~/"):
        return path[2:]
    if not path.startswith("/"):
        raise StorageError(f"{path!r} on {where}: give an absolute path (/scratch/u) or one under ~ (~/data)")
    return path


def _on_resource(location: str, resource: str) -> dict[str, Any]:
    from .. import compute

    res = compute.get(resource)
    if _URL.match(location) or location.startswith("rclone:"):
        raise StorageError(f"with --resource {resource}, give a path on it (/scratch/u), not {location!r}")
    if not res.remote:
        fields_ = _local(location)
        return {**fields_, "resource": res.name}
    root = _remote_path(location, f"resource {res.name}")
    ep = res.endpoint
    return {"location": f"{res.name}:{location}", "protocol": "sftp", "root": root, "resource": res.name,
            "host": ep.host, "port": ep.port, "user": ep.user}


def _host_path(host: str, path: str, user: str | None) -> dict[str, Any]:
    """`host:/path`: a compute resource of that name, else that host with matching SSH settings."""
    from .. import compute

    by_name = {r.name: r for r in compute.list_all()}
    if host in by_name and user is None:
        return _on_resource(path, host)
    return _sftp_fields(host, None, user, path, f"{host}:{path}")


def _ftp_short(path: str) -> dict[str, Any]:
    """`ftp:/path`: the path on the user's (only) remote resource."""
    from .. import compute

    remote = [r for r in compute.list_all() if r.remote]
    if len(remote) != 1:
        known = ", ".join(r.name for r in remote) or "none is registered"
        raise StorageError(f"ftp:{path} means a path on your remote compute resource, but there are {len(remote)} "
                           f"({known}): register with --resource R --location {path}, or use host:{path}")
    return _on_resource(path, remote[0].name)


def _url_parts(location: str, example: str) -> SplitResult:
    """A URL with a host and no password in it (credentials never go into a storage location)."""
    parts = urlsplit(location)
    if not parts.hostname:
        raise StorageError(f"{location!r} has no host: use {example}")
    if parts.password:
        raise StorageError(f"{location!r} holds a password: credentials never go into a storage location "
                           "(use an SSH key, or an rclone remote for cloud drives)")
    return parts


def _sftp_url(location: str) -> dict[str, Any]:
    parts = _url_parts(location, "sftp://user@host:port/path")
    try:
        port = parts.port
    except ValueError as exc:
        raise StorageError(f"{location!r}: bad port ({exc})") from None
    path = unquote(parts.path) or "/"
    if path.startswith("/~"):
        path = path[1:]
    return _sftp_fields(parts.hostname, port, parts.username, path, location)


def _sftp_fields(host: str, port: int | None, user: str | None, path: str, location: str) -> dict[str, Any]:
    """An sftp location; key and known_hosts come from a compute resource on the same server, if any."""
    from .. import compute

    if host.startswith("-"):
        raise StorageError(f"{host!r} is not a host name")
    match = next((r for r in compute.list_all() if r.remote and r.host == host and (port is None or r.port == port)
                  and (user is None or (r.user or _login_name()) == user)), None)
    root = _remote_path(path, host)
    if match is not None:
        ep = match.endpoint
        return {"location": location, "protocol": "sftp", "root": root, "host": host, "port": ep.port,
                "user": user or ep.user, "key": ep.key, "known_hosts": ep.known_hosts}
    return {"location": location, "protocol": "sftp", "root": root, "host": host, "port": port or 22,
            "user": user or _login_name()}


def _http(location: str) -> dict[str, Any]:
    parts = _url_parts(location, "https://host/path")
    return {"location": location, "protocol": "http", "root": location.rstrip("/"), "host": parts.hostname}


def _rclone(location: str) -> dict[str, Any]:
    rest = location[len("rclone:"):]
    remote, sep, path = rest.partition(":")
    if not sep or not remote:
        raise StorageError(f"{location!r}: use rclone:REMOTE:path with a remote from `rclone listremotes`")
    try:
        out = subprocess.run(["rclone", "listremotes"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise StorageError("rclone is not installed: install it (https://rclone.org) to use rclone remotes") from None
    known = [line.strip().rstrip(":") for line in out.stdout.splitlines() if line.strip()]
    if remote not in known:
        raise StorageError(f"no rclone remote named {remote!r} (configured: {', '.join(known) or 'none'}): "
                           "add it with `rclone config`")
    return {"location": location, "protocol": "rclone", "root": f"{remote}:{path}", "host": remote}


def _fsspec(location: str, proto: str) -> dict[str, Any]:
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(proto)
    except ValueError:
        raise StorageError(f"{location!r}: no installed filesystem handles {proto}:// — install the fsspec package "
                           f"for it (s3fs, gcsfs, msgraphfs, ...), or use a path, sftp://, https:// or "
                           "rclone:remote:path") from None
    except ImportError as exc:
        raise StorageError(f"{location!r}: {proto}:// needs a package that is not installed ({exc})") from None
    root = cls._strip_protocol(location)
    host = urlsplit(location).hostname or proto
    return {"location": location, "protocol": proto, "root": root, "host": host}


# -- records ---------------------------------------------------------------
def _from_entry(entry: Entry) -> Storage:
    data = dict(entry.data)
    data.setdefault("root", data.get("location", ""))
    known = {f for f in Storage.__dataclass_fields__} - {"name", "public", "owner"}
    return Storage(name=entry.name, public=entry.scope == "public", owner=entry.owner,
                   **{k: v for k, v in data.items() if k in known})


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid{os.getuid()}"


__all__ = ["KIND", "ReadOnlyStorageError", "Storage", "StorageError", "get", "info", "list_all",
           "parse_location", "register", "register_home", "remove"]
