"""`cybershuttle trust ...`: whose code you run (see cybershuttle.trust), and the prompt verbs ask with."""
from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from .output import print_json, print_table
from .verbs import Group, arg

if TYPE_CHECKING:
    from ..trust import Pin, Review

KIND = arg("kind", metavar="KIND", help="dataset, model, template or compute")
NAME = arg("name", help="the entry's name")

group = Group("trust")


@group.verb(
    "show", "show whose code an entry carries, the code itself, and whether you trust it",
    "cybershuttle trust show dataset cifar10", KIND, NAME, listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import trust

    review = trust.review(args.kind, args.name)
    state = trust.status(args.kind, args.name)
    if args.json:
        print_json({**review.to_dict(), "status": state})
        return
    print(review.text())
    print(f"status: {state}")


@group.verb(
    "add", "trust the code an entry carries as it is now (its owner changing it asks you again)",
    "cybershuttle trust add template tune", KIND, NAME)
def _add(args: argparse.Namespace) -> None:
    from .. import trust

    review = trust.add(args.kind, args.name)
    print(review.text())
    print(f"trusted {args.kind} {args.name!r} of {review.owner} (sha256 {review.sha256[:16]})")


@group.verb("list", "list what you trust: kind, name, owner and the content's hash",
            "cybershuttle trust list --json", listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import trust

    pins = trust.list_all()
    if args.json:
        print_json([p.to_dict() for p in pins])
        return
    print_table([{"kind": p.kind, "name": p.name, "owner": p.owner, "what": p.what, "sha256": p.sha256[:16],
                  "trusted": time.strftime("%Y-%m-%d %H:%M", time.localtime(p.trusted))} for p in pins],
                [("kind", "kind"), ("name", "name"), ("owner", "owner"), ("what", "code"), ("sha256", "sha256"),
                 ("trusted", "trusted")], empty="(you trust nobody's code yet)")


@group.verb("rm", "stop trusting an entry's code (its next use asks again)", "cybershuttle trust rm dataset cifar10",
            KIND, NAME)
def _rm(args: argparse.Namespace) -> None:
    from .. import trust

    pin = trust.remove(args.kind, args.name)
    print(f"no longer trusting {pin.kind} {pin.name!r} of {pin.owner}")


# -- how every verb asks (verbs.run_verb) ------------------------------------
def show(review: Review) -> None:
    """`--trust`: say what is being trusted, on stderr so stdout stays the verb's answer."""
    print(f"trusting: {review.text()}", file=sys.stderr, flush=True)


def ask(review: Review, pin: Pin | None) -> bool:
    """Ask the person at the terminal; anything but yes declines."""
    print(review.text(), file=sys.stderr)
    if pin is not None:
        print(f"(you trusted {pin.owner}'s earlier version on "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(pin.trusted))}; it changed since)", file=sys.stderr)
    print("Trust it and run it? [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def interactive() -> bool:
    """A person at a terminal who can answer a prompt."""
    return sys.stdin.isatty() and sys.stderr.isatty()
