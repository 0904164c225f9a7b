"""`cybershuttle storage ...`"""
from __future__ import annotations

import argparse

from .output import print_json, print_table
from .verbs import Group, arg

ISSUE = "Storage and datasets"


def _initialize(user: str) -> list[str]:
    from .. import storage

    entry, created = storage.register_home()
    return [f"storage {entry.name!r} {'registered' if created else 'already registered'}: {entry.data['location']}"]


group = Group("storage", initialize=_initialize)


@group.verb(
    "ls",
    "list registered storages (or, planned, the files of NAME[:/path])",
    "cybershuttle storage ls --json",
    arg("target", nargs="?", help="NAME[:/path] to list files of (not built yet)"),
    listing=True,
)
def _ls(args: argparse.Namespace) -> None:
    from .. import storage
    from ..errors import NotBuiltError

    if args.target:
        name = args.target.split(":", 1)[0]
        storage.get(name)  # an unknown name is reported as such, before "not built"
        raise NotBuiltError(f"listing files of {args.target!r} is not built yet (planned in: {ISSUE})")
    entries = storage.ls()
    if args.json:
        print_json([e.to_dict() for e in entries])
    else:
        print_table(
            [{"name": e.name, "location": e.data.get("location"), "protocol": e.data.get("protocol"),
              "mode": "ro" if e.data.get("read_only") else "rw", "scope": e.scope} for e in entries],
            [("name", "name"), ("protocol", "protocol"), ("mode", "mode"), ("scope", "scope"), ("location", "location")],
        )


NAME = arg("name", help="the storage's name")

group.planned("register", "register a storage under a name", "cybershuttle storage register --name lab --location /data/lab --read-only", ISSUE,
              arg("--name", required=True), arg("--location", required=True, help="a path or URL (sftp://, host:/path, rclone:remote:path, ...)"),
              arg("--resource", metavar="R", help="a compute resource whose SSH settings reach the path"),
              arg("--read-only", action="store_true"), arg("--public", action="store_true"))
group.planned("cp", "copy files between storages, recursive, resumable", "cybershuttle storage cp lab:/a.csv hpc:/b/ --checksum", ISSUE,
              arg("source", metavar="SRC"), arg("target", metavar="DST"), arg("--checksum", action="store_true"))
group.planned("rm", "remove a storage from the catalog", "cybershuttle storage rm lab", ISSUE, NAME)
group.planned("info", "show one storage", "cybershuttle storage info lab", ISSUE, NAME, listing=True)
group.planned("mount", "make DIR/NAME show a storage's files", "cybershuttle storage mount lab ~/mnt", ISSUE, NAME, arg("dir", nargs="?"))
group.planned("umount", "undo a mount", "cybershuttle storage umount lab", ISSUE, NAME)
group.planned("mounts", "list active mounts", "cybershuttle storage mounts --json", ISSUE, listing=True)
