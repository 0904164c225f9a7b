"""fsspec filesystems for registered storages: `fs("lab")`, `open("lab:/a.csv")`.

Every storage is seen through a `StorageFileSystem`, an fsspec directory
filesystem rooted at the storage: paths are relative to its root, `..` cannot
leave it, and a read-only storage refuses every write before anything reaches
the files. Underneath:

- `file`: fsspec's local filesystem;
- `sftp`: `PooledSFTPFileSystem`, fsspec's sftp filesystem over the SFTP
  session of the Cybershuttle SSH pool (host keys checked, one login shared
  with commands and kernels) instead of a paramiko client of its own;
- `http`: `HTTPReadFileSystem`, read-only over the standard library (range
  requests, directory index pages), so http needs no aiohttp;
- `rclone`: `RcloneFileSystem`, which drives the `rclone` command, so every
  cloud drive rclone knows works without its own Python package;
- anything else: the installed fsspec implementation of that protocol.
"""
from __future__ import annotations

import json
import posixpath
import subprocess
from datetime import datetime
from typing import IO, Any

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.sftp import SFTPFileSystem
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from .. import names, ssh
from ..errors import InvalidNameError, UsageError
from .catalog import ReadOnlyStorageError, Storage, StorageError, get

# -- specs -----------------------------------------------------------------


def split(spec: str) -> tuple[str, str]:
    """`"NAME:/path"` -> `("NAME", "/path")`; a bare `"NAME"` is the storage's root."""
    if not isinstance(spec, str) or not spec:
        raise UsageError("a storage path looks like NAME:/path (for example lab:/data/a.csv)")
    name, sep, path = spec.partition(":")
    names.validate(name, "storage name")
    path = path if sep else "/"
    return name, "/" + path.lstrip("/") if path else "/"


def is_spec(text: str) -> bool:
    """Whether `text` reads as `NAME:path` rather than a path on this machine."""
    name, sep, _ = text.partition(":")
    if not sep or "/" in name or name in (".", "~"):
        return False
    try:
        names.validate(name)
    except InvalidNameError:
        return False
    return True


def relative(path: str) -> str:
    """A storage path normalised and confined: '' is the root; `..` may not climb above it."""
    depth = 0
    for part in (path or "").split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            raise InvalidNameError(f"path {path!r} leaves the storage's root: use a path inside it")
    norm = posixpath.normpath("/" + (path or "").lstrip("/"))
    return "" if norm == "/" else norm.lstrip("/")


def fs(name: str) -> StorageFileSystem:
    """The storage as an fsspec filesystem rooted at it (paths like '/a/b.csv')."""
    return StorageFileSystem(get(name))


def open(spec: str, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """Open `NAME:/path` like the built-in open (binary and text modes)."""
    name, path = split(spec)
    return fs(name).open(path, mode, **kwargs)


def path(spec: str) -> str:
    """Where `NAME:/path` is: a local path when the storage is on this machine, else its URL."""
    name, rel = split(spec)
    storage = get(name)
    sub = relative(rel)
    if storage.local:
        return str(names.confine(storage.root, sub)) if sub else storage.root
    if storage.protocol == "sftp":
        ep = storage.endpoint
        root = storage.root if storage.root.startswith("/") else "/~/" + storage.root.lstrip("./")
        return f"sftp://{ep.user}@{ep.host}:{ep.port}" + posixpath.join(root, sub).rstrip("/")
    if storage.protocol == "rclone":
        return "rclone:" + _join_rclone(storage.root, sub)
    if storage.protocol == "http":
        return storage.root + ("/" + sub if sub else "")
    return f"{storage.protocol}://" + posixpath.join(storage.root, sub).rstrip("/")


def ls(spec: str = "home:/") -> list[dict[str, Any]]:
    """The entries of `NAME:/path`: name, path, type (file/directory), size, mtime (epoch seconds)."""
    name, rel = split(spec)
    filesystem = fs(name)
    sub = relative(rel)
    try:
        info = filesystem.info(sub)
    except FileNotFoundError:
        raise StorageError(f"{spec!r} does not exist") from None
    entries = filesystem.ls(sub, detail=True) if info.get("type") == "directory" else [info]
    out = []
    for e in entries:
        entry_path = "/" + relative(e["name"])
        out.append({"name": posixpath.basename(entry_path) or "/", "path": entry_path,
                    "type": "directory" if e.get("type") == "directory" else "file",
                    "size": e.get("size"), "mtime": _mtime(e)})
    return sorted(out, key=lambda e: (e["type"] != "directory", e["name"]))


# -- the storage view ------------------------------------------------------

_WRITERS = ("rm_file", "rm", "delete", "cp_file", "copy", "pipe", "pipe_file", "write_text", "put_file", "put",
            "mkdir", "makedirs", "rmdir", "mv", "touch", "write_bytes")


class StorageFileSystem(DirFileSystem):
    """One storage: rooted, confined, and read-only when registered so."""

    cachable = False

    def __init__(self, storage: Storage) -> None:
        base, root = base_filesystem(storage)
        super().__init__(path=root, fs=base)
        # DirFileSystem strips the protocol; keep the root exactly as the base expects it.
        self.path = root
        self.storage = storage

    def _join(self, path: Any) -> Any:
        if isinstance(path, str):
            sub = relative(path)
            if not self.path:
                return sub
            if not sub:
                return self.path
            return self.path.rstrip("/") + "/" + sub if self.path != "/" else "/" + sub
        if isinstance(path, dict):
            return {self._join(p): v for p, v in path.items()}
        return [self._join(p) for p in path]

    def _relpath(self, path: Any) -> Any:
        if isinstance(path, str):
            root = self.path.rstrip("/")
            if path.rstrip("/") == root or not root:
                return "" if path.rstrip("/") == root else path
            if path.startswith(root + "/"):
                return path[len(root) + 1:]
            return path
        return [self._relpath(p) for p in path]

    def open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            self._refuse(f"open {path!r} for writing")
        return super().open(path, mode, *args, **kwargs)

    def _refuse(self, what: str) -> None:
        if self.storage.read_only:
            raise ReadOnlyStorageError(
                f"storage {self.storage.name!r} is read-only: cannot {what}. Copy the files to a writable "
                f"storage (cybershuttle storage cp {self.storage.name}:/... OTHER:/...) and change them there")


def _guarded(method: str) -> Any:
    base = getattr(DirFileSystem, method)

    def guarded(self: StorageFileSystem, *args: Any, **kwargs: Any) -> Any:
        self._refuse(f"{method.lstrip('_').replace('_', ' ')} {args[0] if args else ''}".strip())
        return base(self, *args, **kwargs)

    guarded.__name__ = method
    return guarded


for _name in _WRITERS:
    for _variant in (_name, "_" + _name):
        if hasattr(DirFileSystem, _variant):
            setattr(StorageFileSystem, _variant, _guarded(_variant))


def base_filesystem(storage: Storage) -> tuple[AbstractFileSystem, str]:
    """The filesystem under a storage and the storage's root in it."""
    if storage.protocol == "file":
        return fsspec.filesystem("file"), storage.root
    if storage.protocol == "sftp":
        return PooledSFTPFileSystem(storage.endpoint), storage.root
    if storage.protocol == "http":
        return HTTPReadFileSystem(), storage.root
    if storage.protocol == "rclone":
        remote, _, root = storage.root.partition(":")
        return RcloneFileSystem(remote), root
    try:
        filesystem = fsspec.filesystem(storage.protocol, **storage.options)
    except (ValueError, ImportError) as exc:
        raise StorageError(f"storage {storage.name!r}: the {storage.protocol}:// filesystem is not available "
                           f"here ({exc}): install its fsspec package") from None
    return filesystem, storage.root


# -- sftp over the pool ----------------------------------------------------


class PooledSFTPFileSystem(SFTPFileSystem):
    """fsspec's sftp filesystem on the pooled SSH connection (host keys checked by the pool)."""

    protocol = ("cybershuttle-sftp",)
    cachable = False

    def __init__(self, endpoint: ssh.Endpoint) -> None:
        AbstractFileSystem.__init__(self)
        self.endpoint = endpoint
        self.host = endpoint.host
        self.temppath = "/tmp"
        self.ssh_kwargs: dict[str, Any] = {}
        self.ftp.normalize(".")  # connect now: a wrong key or host key is reported at once

    @property  # type: ignore[override]
    def ftp(self) -> Any:
        # Asked of the pool every time: a dropped connection is re-established.
        return ssh.connect(self.endpoint).sftp()

    @ftp.setter
    def ftp(self, value: Any) -> None:
        pass  # the pool owns the session

    def _connect(self) -> None:
        pass

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return path if isinstance(path, str) else list(path)

    def ls(self, path: str, detail: bool = False, **kwargs: Any) -> Any:
        try:
            return super().ls(path or ".", detail=detail)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                raise FileNotFoundError(path) from None
            raise

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().info(path or ".")
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == 2:
                raise FileNotFoundError(path) from None
            raise


# -- rclone remotes --------------------------------------------------------


class RcloneFileSystem(AbstractFileSystem):
    """Files of one rclone remote, through the `rclone` command (its config: RCLONE_CONFIG or the default)."""

    protocol = ("cybershuttle-rclone",)
    cachable = False
    root_marker = ""

    def __init__(self, remote: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote = remote

    def _target(self, path: str) -> str:
        return _join_rclone(f"{self.remote}:", path)

    def _rclone(self, *args: str, input: bytes | None = None) -> bytes:
        proc = subprocess.run(["rclone", *args], capture_output=True, input=input, timeout=3600, check=False)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            if "not found" in detail[0] or "directory not found" in detail[0]:
                raise FileNotFoundError(args[-1])
            raise OSError(f"rclone {args[0]} {args[-1]}: {detail[0]}")
        return proc.stdout

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return path.rstrip("/") if isinstance(path, str) and path != "/" else path

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        path = path.rstrip("/")
        items = json.loads(self._rclone("lsjson", self._target(path)) or b"[]")
        out = [{"name": f"{path}/{i['Name']}" if path else i["Name"], "size": i.get("Size", 0),
                "type": "directory" if i.get("IsDir") else "file", "mtime": i.get("ModTime")} for i in items]
        return out if detail else [o["name"] for o in out]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = path.rstrip("/")
        item = json.loads(self._rclone("lsjson", "--stat", self._target(path)) or b"null")
        if not item:
            raise FileNotFoundError(path)
        return {"name": path, "size": item.get("Size", 0), "type": "directory" if item.get("IsDir") else "file",
                "mtime": item.get("ModTime")}

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        args = ["cat"]
        if start:
            args += ["--offset", str(start)]
        if end is not None:
            args += ["--count", str(end - (start or 0))]
        return self._rclone(*args, self._target(path))

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self._rclone("rcat", self._target(path), input=value)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self._rclone("mkdir", self._target(path))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self._rclone("mkdir", self._target(path))

    def rm_file(self, path: str) -> None:
        self._rclone("deletefile", self._target(path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rmdir(self, path: str) -> None:
        self._rclone("rmdir", self._target(path))

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self._rclone("moveto", self._target(path1), self._target(path2))

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if "a" in mode:
            raise StorageError("rclone remotes cannot append to a file: copy it whole")
        return _RcloneFile(self, path, mode, block_size=block_size or 8 << 20, autocommit=autocommit,
                           cache_options=cache_options, **kwargs)


class _RcloneFile(AbstractBufferedFile):
    """Reads by ranges (`rclone cat --offset --count`); writes stream into one `rclone rcat`."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    def _initiate_upload(self) -> None:
        self._proc = subprocess.Popen(["rclone", "rcat", self.fs._target(self.path)], stdin=subprocess.PIPE,
                                      stderr=subprocess.PIPE)

    def _upload_chunk(self, final: bool = False) -> bool:
        if not hasattr(self, "_proc"):
            self._initiate_upload()
        assert self._proc.stdin is not None
        self._proc.stdin.write(self.buffer.getvalue())
        if final:
            self._proc.stdin.close()
            err = self._proc.stderr.read() if self._proc.stderr else b""
            if self._proc.wait() != 0:
                raise OSError(f"rclone rcat {self.path}: {err.decode(errors='replace').strip()}")
        return True


# -- http(s), read-only ------------------------------------------------------


class HTTPReadFileSystem(AbstractFileSystem):
    """Files under an http(s) URL: sizes from HEAD, reads by Range requests, listings from index pages."""

    protocol = ("cybershuttle-http",)
    cachable = False
    root_marker = ""

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return path

    def _request(self, url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(url, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise FileNotFoundError(url) from None
            raise OSError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"{url}: {exc.reason}") from None

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        from email.utils import parsedate_to_datetime

        with self._request(path, "HEAD") as resp:
            page = "text/html" in resp.headers.get("Content-Type", "") and not path.endswith((".html", ".htm"))
            kind = "directory" if path.endswith("/") or page else "file"
            modified = resp.headers.get("Last-Modified")
            return {"name": path, "type": kind, "size": int(resp.headers.get("Content-Length") or 0),
                    "mtime": parsedate_to_datetime(modified).timestamp() if modified else None}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        import html
        import re as re_
        from urllib.parse import unquote as unquote_
        from urllib.parse import urljoin

        base = path.rstrip("/") + "/"
        with self._request(base) as resp:
            page = resp.read().decode(errors="replace")
        names_: list[str] = []
        for href in re_.findall(r'href="([^"?#]+)"', page):
            target = urljoin(base, html.unescape(href))
            if target.startswith(base) and target != base and "/" not in target[len(base):].rstrip("/"):
                names_.append(unquote_(target[len(base):]))
        out = []
        for name in dict.fromkeys(names_):
            full = base + name.rstrip("/")
            out.append(self.info(base + name) if not name.endswith("/") else
                       {"name": full, "type": "directory", "size": 0, "mtime": None})
            out[-1]["name"] = full
        return out if detail else [o["name"] for o in out]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        with self._request(path, headers=headers) as resp:
            data = resp.read()
            if headers and resp.status == 200:  # the server ignored Range
                data = data[start or 0:end]
            return data

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if mode != "rb":
            raise StorageError(f"{path} is on http: it can only be read")
        return _RangeFile(self, path, mode, block_size=block_size or 8 << 20, cache_options=cache_options,
                          size=self.info(path)["size"])


class _RangeFile(AbstractBufferedFile):
    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)


def _join_rclone(root: str, sub: str) -> str:
    remote, _, base = root.partition(":")
    if not sub:
        return f"{remote}:{base}"
    return f"{remote}:{base.rstrip('/')}/{sub}" if base else f"{remote}:{sub}"


def _mtime(entry: dict[str, Any]) -> float | None:
    value = entry.get("mtime", entry.get("modified", entry.get("LastModified", entry.get("last_modified"))))
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
