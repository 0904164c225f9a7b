"""Named storage: a name over a location reached through fsspec.

    from cybershuttle import storage
    storage.register("lab", "/data/lab", read_only=True)
    storage.register("hpc", "/scratch/u", resource="testcluster")   # sftp with the resource's SSH settings
    storage.ls("hpc:/")                                               # [{name, path, type, size, mtime}]
    storage.copy("lab:/a.csv", "hpc:/in/", checksum=True)
    with storage.open("hpc:/in/a.csv") as f: ...
    storage.mount("hpc")                                              # ~/cybershuttle-mounts/hpc

Modules: `catalog` (records, what a typed location means), `filesystems`
(fsspec views of storages), `transfer` (copies between any two storages, with the
OpenSSH fast path), `mounting` (symlinks and FUSE mounts).
"""
from __future__ import annotations

from .catalog import (
                      KIND,
                      ReadOnlyStorageError,
                      Storage,
                      StorageError,
                      get,
                      info,
                      list_all,
                      parse_location,
                      register,
                      register_home,
                      remove,
)
from .filesystems import fs, ls, open, path, split
from .mounting import Mount, mount, mounts, umount
from .transfer import CopyResult, copy

__all__ = [
    "KIND", "CopyResult", "Mount", "ReadOnlyStorageError", "Storage", "StorageError", "copy", "fs", "get", "info",
    "list_all", "ls", "mount", "mounts", "open", "parse_location", "path", "register", "register_home", "remove",
    "split", "umount",
]
