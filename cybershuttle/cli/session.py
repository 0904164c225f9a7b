"""`cybershuttle session ...`"""
from __future__ import annotations

import argparse
import sys
import time

from .output import print_json, print_table
from .verbs import Group, arg

NAME = arg("name", help="the session's name")

group = Group("session")


@group.verb("start", "open a recording subshell: each command, its directory, exit code and time are kept "
            "until 'exit' or 'cybershuttle session stop'",
            "cybershuttle session start analysis1", NAME,
            arg("--shell", choices=["bash", "zsh"], help="shell to record (default: $SHELL if bash or zsh, else bash)"))
def _start(args: argparse.Namespace) -> int:
    from .. import session

    print(f"recording session {args.name!r}; type 'exit' or 'cybershuttle session stop' to end it", file=sys.stderr)
    code = session.record_shell(args.name, shell_name=args.shell)
    s = session.get(args.name)
    print(f"session {args.name!r} stopped: {s.counts.get('command', 0)} command(s) recorded", file=sys.stderr)
    return code


@group.verb("stop", "stop recording the current session (or the one named)", "cybershuttle session stop",
            arg("name", nargs="?", help="the session (default: the one this shell records)"))
def _stop(args: argparse.Namespace) -> None:
    from ..session import shell

    s = shell.stop(args.name)
    print(f"session {s.name!r} stopped")


@group.verb("list", "list recorded sessions", "cybershuttle session list --json",
            arg("--search", help="only sessions whose name or details contain this text"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import session

    items = session.list_all(args.search)
    if args.json:
        print_json([s.to_dict() for s in items])
        return
    print_table([{"name": s.name, "kind": s.kind, "state": s.state, "steps": _steps(s),
                  "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created))} for s in items],
                [("name", "name"), ("kind", "kind"), ("state", "state"), ("steps", "recorded"),
                 ("created", "created")], empty="(no sessions; 'cybershuttle session start NAME' records one)")


@group.verb("show", "show a session's commands, calls, cells and notebook snapshots",
            "cybershuttle session show analysis1", NAME, listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import session

    s = session.get(args.name)
    if args.json:
        print_json(session.to_json(s, events=True))
        return
    print(f"{s.name}: {s.kind} session, {s.state}"
          + (f", recorded with {s.shell} in {s.cwd}" if s.shell else "")
          + f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.created))}")
    for nb in s.notebooks:
        print(f"  notebook: {nb}")
    number = {"command": 0, "call": 0}
    for event in s.events():
        kind = event.get("type")
        when = time.strftime("%H:%M:%S", time.localtime(event.get("time", 0)))
        if kind == "command":
            number["command"] += 1
            print(f"  [{number['command']}] {when} {event.get('cwd')}$ {event['command']}  "
                  f"(exit {event.get('exit_code')}, {event.get('duration', 0):.2f}s)")
        elif kind == "call":
            number["call"] += 1
            from ..session import python

            print(f"  [{number['call']}] {when} {python.call_text(event)}" + ("" if event.get("ok") else
                                                                             f"  (failed: {event.get('error')})"))
        elif kind == "cell":
            first = event["source"].strip().splitlines()[0] if event["source"].strip() else ""
            print(f"  cell {when} on {event.get('runtime')}: {first[:70]}")
        elif kind == "snapshot":
            in_use = ", ".join(r["name"] for r in event.get("runtimes", [])) or "no runtimes"
            print(f"  snapshot {event['id']} {when}: {event['notebook']} ({event.get('cells')} cells; {in_use})")


@group.verb("load", "replay a session: commands in their directories, calls, or a notebook session's notebooks, "
            "runtimes and mounts", "cybershuttle session load analysis1 --dry-run --from 3",
            NAME, arg("--dry-run", action="store_true", help="print what would run"),
            arg("--from", dest="start", type=int, metavar="N", default=0, help="start at step N (as 'show' numbers them)"),
            arg("--continue-on-error", action="store_true", help="do not stop at the first failure"),
            arg("--directory", metavar="DIR", help="notebook sessions: restore the notebooks into DIR"),
            arg("--overwrite", action="store_true", help="notebook sessions: replace notebooks that changed since"),
            arg("--restore-state", action="store_true",
                help="notebook sessions: runtimes start from the namespaces their last snapshot checkpointed"),
            listing=True)
def _load(args: argparse.Namespace) -> int:
    from .. import session

    echo = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = session.load(args.name, dry_run=args.dry_run, from_step=args.start,
                          continue_on_error=args.continue_on_error, directory=args.directory,
                          overwrite=args.overwrite, restore_state=args.restore_state, echo=echo)
    if args.json:
        print_json(result.to_dict())
    elif args.dry_run and result.restored is None:
        for step in result.steps:
            mark = "  (a secret was redacted here)" if step.redacted else ""
            print(f"[{step.number}] {step.cwd}$ {step.command}{mark}" if step.cwd else f"[{step.number}] {step.command}")
    elif result.failed is not None:
        print(f"step {result.failed.number} failed (exit {result.failed.exit_code}): {result.failed.command}",
              file=sys.stderr)
    failed = [s for s in result.steps if s.exit_code not in (0, None)]
    return 1 if failed else 0


@group.verb("export", "export a session as a shell script or notebook (to stdout, or --output FILE)",
            "cybershuttle session export analysis1 --format ipynb --output analysis1.ipynb", NAME,
            arg("--format", choices=["sh", "ipynb"], default="sh"),
            arg("--output", metavar="FILE", help="write here instead of stdout"))
def _export(args: argparse.Namespace) -> None:
    from .. import session

    text = session.export(args.name, format=args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


@group.verb("diff", "diff two snapshots of a notebook session (cell sources)", "cybershuttle session diff analysis1 1 3",
            NAME, arg("a", type=int, help="a snapshot id ('session show' lists them)"), arg("b", type=int))
def _diff(args: argparse.Namespace) -> None:
    from .. import session

    text = session.diff(args.name, args.a, args.b)
    sys.stdout.write(text or f"snapshots {args.a} and {args.b} have the same cells\n")


@group.verb("rm", "remove a session and everything recorded in it", "cybershuttle session rm analysis1", NAME)
def _rm(args: argparse.Namespace) -> None:
    from .. import session

    session.remove(args.name)
    print(f"session {args.name!r} removed")


def _steps(s) -> str:  # type: ignore[no-untyped-def]
    parts = [f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(s.counts.items())]
    return ", ".join(parts) or "-"
