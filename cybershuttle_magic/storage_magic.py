"""`%storage`: named storage from a notebook.

    %storage mount hpc            # on the active runtime's host, else here
    %storage mount hpc /tmp/mnt   # DIR/NAME
    %storage umount hpc
    %storage mounts
    %storage ls [NAME[:/path]]
    %storage cp [-r] [--checksum] SRC DST

`mount` goes where the next cell runs: with a runtime active (`%switch_runtime
NAME`) the mount is made on that runtime's host, over the runtime's SSH
connection; without one, on this machine.
"""
from __future__ import annotations

import argparse
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class

from cybershuttle.errors import CybershuttleError

from .magics import MagicUsageError, _error, _Quiet, _split

USAGE = "usage: %storage mount NAME [DIR] | umount NAME | mounts | ls [NAME[:/path]] | cp [-r] [--checksum] SRC DST"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise MagicUsageError(f"%storage: {message} ({USAGE})")


def _parser() -> _Parser:
    parser = _Parser(prog="storage", add_help=False)
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    m = sub.add_parser("mount", add_help=False)
    m.add_argument("name")
    m.add_argument("dir", nargs="?")
    sub.add_parser("umount", add_help=False).add_argument("name")
    sub.add_parser("mounts", add_help=False)
    sub.add_parser("ls", add_help=False).add_argument("target", nargs="?")
    cp = sub.add_parser("cp", add_help=False)
    cp.add_argument("source")
    cp.add_argument("target")
    cp.add_argument("-r", "--recursive", action="store_true")
    cp.add_argument("--checksum", action="store_true")
    return parser


@magics_class
class StorageMagics(Magics):
    @line_magic
    def storage(self, line: str = "") -> None:
        """Named storage: `%storage mount NAME [DIR]`, `umount`, `mounts`, `ls`, `cp` (see `%storage?`)."""
        try:
            self._run(line)
        except CybershuttleError as exc:
            _error(exc)
            raise _Quiet(str(exc)) from None

    def _active_runtime(self) -> str | None:
        core = self.shell.magics_manager.registry.get("CybershuttleMagics")
        return getattr(core, "active", None)

    def _run(self, line: str) -> None:
        from cybershuttle import storage

        if not line.strip():
            print(USAGE)
            return
        args = _parser().parse_args(_split(line))
        runtime = self._active_runtime()
        if args.verb == "mount":
            m = storage.mount(args.name, args.dir, runtime=runtime)
            where = f" on {m.host} (runtime {runtime})" if m.host else " on this machine"
            print(f"storage {m.name!r} mounted at {m.path}{where} ({m.method}{', read-only' if m.read_only else ''})")
        elif args.verb == "umount":
            m = storage.umount(args.name, runtime=runtime if self._mounted_on(args.name, runtime) else None)
            print(f"storage {m.name!r} unmounted from {m.path}")
        elif args.verb == "mounts":
            items = storage.mounts()
            for m in items:
                print(f"{m.name}  {m.path}  {m.method}{' ro' if m.read_only else ''}  {m.host or 'this machine'}")
            if not items:
                print("(no mounts)")
        elif args.verb == "ls":
            _show_ls(storage, args.target)
        else:
            r = storage.copy(args.source, args.target, recursive=args.recursive, checksum=args.checksum)
            print(f"copied {r.files} file(s), {r.bytes} bytes to {r.target} in {r.seconds:.1f} s"
                  + (", sha256 verified" if r.checksums else ""))

    @staticmethod
    def _mounted_on(name: str, runtime: str | None) -> bool:
        from cybershuttle import storage

        return runtime is not None and any(m.name == name and m.runtime == runtime for m in storage.mounts())


def _show_ls(storage: Any, target: str | None) -> None:
    if target:
        for e in storage.ls(target):
            size = "-" if e["type"] == "directory" else e["size"]
            print(f"{size!s:>12}  {e['name']}{'/' if e['type'] == 'directory' else ''}")
        return
    for s in storage.list_all():
        print(f"{s.name}  {s.protocol}  {'ro' if s.read_only else 'rw'}  {s.location}")
