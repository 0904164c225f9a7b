"""Storage: list, show, browse (ls), mount/umount and copy between storages."""
from __future__ import annotations

from typing import Any

import tornado.web

from cybershuttle import storage
from cybershuttle.errors import UsageError
from cybershuttle.storage.mounting import DEFAULT_DIR

from . import permissions
from .base import CybershuttleHandler, Route


def _listing(query: str | None) -> list[dict[str, Any]]:
    mounted: dict[str, list[dict[str, Any]]] = {}
    for m in storage.mounts():
        mounted.setdefault(m.name, []).append(m.to_dict())
    return [{**s.to_dict(), "mounts": mounted.get(s.name, [])} for s in storage.list_all(query)]


class StorageListHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Storages with where they are mounted; ?q= searches."""
        self.write_page(await self.call(_listing, self.get_query_argument("q", None) or None))


class StorageItemHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One storage: its record, scope and mounts."""
        self.write_json(await self.call(storage.info, name))


class StorageLsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """The entries at ?path= (default the storage's root), directories first:
        {name, path, type, size, mtime}. Paths cannot climb above the storage's root."""
        path = self.get_query_argument("path", "/") or "/"
        self.write_page(await self.call(storage.ls, f"{name}:{path}"),
                        search=lambda e: e["name"])


class StorageMountHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body: {"directory"?, "runtime"?}. Here, the directory is relative to the Jupyter root
        (so the mount shows in the file browser; default ~/cybershuttle-mounts); with a runtime
        it is a directory on the runtime's host."""
        body = self.body()
        unknown = sorted(set(body) - {"directory", "runtime"})
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: use directory, runtime")
        runtime = body.get("runtime") or None
        directory = body.get("directory") or None
        if directory and not runtime:
            directory = self.server_path(directory, "directory")
        # The mount point (DIRECTORY/NAME) must not be where files run code (see permissions).
        point = f"{directory or DEFAULT_DIR}/{name}"
        where = permissions.lexical(point) if runtime else permissions.resolved_local(point)
        owner = (await self.call(storage.get, name)).owner
        terminal = f"cybershuttle storage mount {name} DIR"
        permissions.check(where, "mounting", f"storage {name!r} (owner {owner})", terminal)
        await self.call(permissions.check_mounted_root, name, terminal)
        self.write_json((await self.call(storage.mount, name, directory, runtime=runtime)).to_dict())


class StorageUmountHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body: {"runtime"?}: undo the mount (here, or on the runtime's host)."""
        runtime = self.body().get("runtime") or None
        self.write_json((await self.call(storage.umount, name, runtime=runtime)).to_dict())


class StorageCopyHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        """Body: {"src": "NAME:/path", "dst": "NAME:/path", "recursive"?, "checksum"?}.

        Both sides must be storage paths (files of this machine are reached through a
        storage such as `home`), so the browser can only copy what a storage exposes.
        """
        body = self.body()
        unknown = sorted(set(body) - {"src", "dst", "recursive", "checksum"})
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: use src, dst, recursive, checksum")
        for side in ("src", "dst"):
            value = body.get(side)
            if not isinstance(value, str) or ":" not in value:
                raise UsageError(f'"{side}" must be a storage path NAME:/path (for example home:/data/a.csv), '
                                 f"got {value!r}")
            storage.split(value)  # a bad storage name is refused before anything is read
        source, target = storage.split(body["src"])[0], storage.split(body["dst"])[0]
        owners = {n: (await self.call(storage.get, n)).owner for n in (source, target)}
        terminal = f"cybershuttle storage cp {'-r ' if body.get('recursive') else ''}{body['src']} {body['dst']}"
        guard = permissions.write_guard("copying", f"storage {target!r}", owners[target], terminal)
        reads = permissions.read_guard("copying", f"storage {source!r}", owners[source], terminal)
        result = await self.call(storage.copy, body["src"], body["dst"], recursive=bool(body.get("recursive")),
                                 checksum=bool(body.get("checksum")), guard=guard, read_guard=reads)
        self.write_json(result.to_dict())


def search(query: str) -> list[dict[str, Any]]:
    return [{"kind": "storage", "name": s.name, "detail": s.location} for s in storage.list_all(query)]


ROUTES = [
    Route("storage", StorageListHandler, ("GET",), "storages and their mounts"),
    # Before storage/{name}: "copy" is this action, not a storage's name.
    Route("storage/copy", StorageCopyHandler, ("POST",),
          'copy between storages ({"src": "NAME:/path", "dst": "NAME:/path", "recursive"?, "checksum"?})'),
    Route("storage/{name}", StorageItemHandler, ("GET",), "one storage: record, scope, mounts"),
    Route("storage/{name}/ls", StorageLsHandler, ("GET",), "browse a storage (?path=/p)"),
    Route("storage/{name}/mount", StorageMountHandler, ("POST",), 'mount ({"directory"?, "runtime"?})'),
    Route("storage/{name}/umount", StorageUmountHandler, ("POST",), 'unmount ({"runtime"?})'),
]
