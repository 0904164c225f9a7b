"""`cybershuttle storage ...`"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .output import print_json, print_table
from .verbs import Group, arg


def _initialize(user: str) -> list[str]:
    from .. import storage

    entry, created = storage.register_home()
    return [f"storage {entry.name!r} {'registered' if created else 'already registered'}: {entry.data['location']}"]


group = Group("storage", initialize=_initialize)
NAME = arg("name", help="the storage's name")


@group.verb(
    "register", "register a storage under a name: a path, sftp://, host:/path, ftp:/path, https://, rclone:remote:path",
    "cybershuttle storage register --name lab --location /data/lab --read-only\n"
    "  cybershuttle storage register --name hpc --resource testcluster --location /scratch/csuser\n"
    "  cybershuttle storage register --name web --location https://example.org/data/",
    arg("--name", required=True), arg("--location", required=True, help="a path or URL (sftp://, host:/path, "
                                                                        "ftp:/path, https://, rclone:remote:path, ...)"),
    arg("--resource", metavar="R", help="a compute resource whose SSH settings reach the path"),
    arg("--read-only", action="store_true", help="refuse every write through Cybershuttle (mounts included)"),
    arg("--public", action="store_true", help="register in the site catalog, for every user"), listing=True)
def _register(args: argparse.Namespace) -> None:
    from .. import storage

    s = storage.register(args.name, args.location, read_only=args.read_only, resource=args.resource,
                         public=args.public)
    if args.json:
        print_json(s.to_dict())
        return
    where = f" on {s.resource}" if s.resource else (f" on {s.host}" if s.host else "")
    print(f"storage {s.name!r} registered: {s.protocol}{where}, {'read-only' if s.read_only else 'read-write'}, "
          f"{'public' if s.public else 'private'} ({s.location})")


@group.verb(
    "ls", "list registered storages, or the files of NAME[:/path] with sizes and times",
    "cybershuttle storage ls --json\n  cybershuttle storage ls hpc:/results",
    arg("target", nargs="?", help="NAME[:/path] to list the files of"),
    arg("--search", help="only storages whose name or location holds this text"), listing=True)
def _ls(args: argparse.Namespace) -> None:
    from .. import storage

    if args.target:
        entries = storage.ls(args.target)
        if args.json:
            print_json(entries)
            return
        print_table([{**e, "name": e["name"] + ("/" if e["type"] == "directory" else ""),
                      "size": "-" if e["type"] == "directory" else _size(e["size"]),
                      "mtime": _time(e["mtime"])} for e in entries],
                    [("size", "size"), ("mtime", "modified"), ("name", "name")], empty="(empty)")
        return
    items = storage.list_all(args.search)
    if args.json:
        print_json([s.to_dict() for s in items])
        return
    print_table([{"name": s.name, "protocol": s.protocol, "mode": "ro" if s.read_only else "rw",
                  "scope": "public" if s.public else "private", "location": s.location,
                  "where": s.resource or s.host or "this machine"} for s in items],
                [("name", "name"), ("protocol", "protocol"), ("mode", "mode"), ("scope", "scope"),
                 ("where", "where"), ("location", "location")])


@group.verb(
    "cp", "copy files between storages (or a path here), recursive, resumable, with a progress bar",
    "cybershuttle storage cp lab:/a.csv hpc:/b/ --checksum\n  cybershuttle storage cp -r hpc:/results ./results",
    arg("source", metavar="SRC", help="NAME:/path, or a path on this machine"),
    arg("target", metavar="DST", help="NAME:/path, or a path on this machine (ending in / : keep the name)"),
    arg("-r", "--recursive", action="store_true", help="copy directories"),
    arg("--checksum", action="store_true", help="verify SHA-256 of every file on both sides"),
    arg("--quiet", action="store_true", help="no progress bar"), listing=True)
def _cp(args: argparse.Namespace) -> None:
    from .. import storage

    show = not args.quiet and not args.json and sys.stderr.isatty()
    if show:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task("copying", total=None)

            def progress(done: int, total: int, current: str) -> None:
                bar.update(task, completed=done, total=total or None, description=current[-40:])

            result = storage.copy(args.source, args.target, recursive=args.recursive, checksum=args.checksum,
                                  progress=progress)
    else:
        result = storage.copy(args.source, args.target, recursive=args.recursive, checksum=args.checksum)
    if args.json:
        print_json(result.to_dict())
        return
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    rate = result.bytes / result.seconds / 1e6 if result.seconds else 0
    resumed = f", resumed after {_size(result.resumed_bytes)}" if result.resumed_bytes else ""
    verified = ", sha256 verified" if result.checksums else ""
    print(f"copied {result.files} file(s), {_size(result.bytes)} to {result.target} in {result.seconds:.1f} s "
          f"({rate:.0f} MB/s{resumed}{verified})")


@group.verb("rm", "remove a storage from the catalog (its files are left alone)", "cybershuttle storage rm lab", NAME)
def _rm(args: argparse.Namespace) -> None:
    from .. import storage

    s = storage.remove(args.name)
    print(f"storage {s.name!r} removed from the catalog ({s.location} itself is untouched)")


@group.verb("info", "show one storage", "cybershuttle storage info lab", NAME, listing=True)
def _info(args: argparse.Namespace) -> None:
    from .. import storage

    data = storage.info(args.name)
    if args.json:
        print_json(data)
        return
    print(f"{data['name']} ({data['protocol']}, {'read-only' if data['read_only'] else 'read-write'}, "
          f"{data['scope']}, owner {data['owner']})")
    print(f"  location:  {data['location']}")
    if data["resource"]:
        print(f"  resource:  {data['resource']}")
    if data["host"]:
        print(f"  host:      {data['host']}" + (f":{data['port']} as {data['user']}" if data.get("port") else ""))
    print(f"  path:      {storage.path(args.name + ':/')}")
    for m in data["mounts"]:
        print(f"  mounted:   {m['path']} ({m['method']}" + (f" on {m['host']}" if m["host"] else "") + ")")


@group.verb("mount", "make DIR/NAME show a storage's files (symlink, sshfs or rclone mount)",
            "cybershuttle storage mount hpc ~/mnt", NAME,
            arg("dir", nargs="?", help="the directory to hold the mount (default ~/cybershuttle-mounts)"),
            listing=True)
def _mount(args: argparse.Namespace) -> None:
    from .. import storage

    m = storage.mount(args.name, args.dir)
    if args.json:
        print_json(m.to_dict())
        return
    print(f"storage {m.name!r} mounted at {m.path} ({m.method}{', read-only' if m.read_only else ''})")


@group.verb("umount", "undo a mount", "cybershuttle storage umount hpc", NAME)
def _umount(args: argparse.Namespace) -> None:
    from .. import storage

    m = storage.umount(args.name)
    print(f"storage {m.name!r} unmounted from {m.path}")


@group.verb("mounts", "list active mounts", "cybershuttle storage mounts --json", listing=True)
def _mounts(args: argparse.Namespace) -> None:
    from .. import storage

    items = storage.mounts()
    if args.json:
        print_json([m.to_dict() for m in items])
        return
    print_table([{**m.to_dict(), "host": m.host or "this machine", "mode": "ro" if m.read_only else "rw"}
                 for m in items],
                [("name", "name"), ("path", "path"), ("method", "method"), ("mode", "mode"), ("host", "host")],
                empty="(no mounts)")


def _size(n: Any) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _time(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
