"""`cybershuttle application ...`"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .output import print_json, print_table
from .verbs import Group, arg

RESOURCE = arg("--resource", metavar="R", help="the compute resource (default: local)")
REFRESH = arg("--refresh", action="store_true", help="ask the resource again instead of using the cached catalog")

group = Group("application")


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        from rich.console import Console

        Console(stderr=True).print(f"[dim]{text}…[/dim]")


def _rows(apps: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for a in apps:
        versions = [v.version + ("*" if v.default and len(a.versions) > 1 else "") for v in a.versions if v.version]
        rows.append({"name": a.name, "kind": a.kind, "source": a.source if a.source != "registered"
                     else f"registered ({a.scope})", "versions": ", ".join(versions) or "-",
                     "description": (a.description or (a.versions[0].description if a.versions else "")
                                     or a.command or "")[:70]})
    return rows


COLUMNS = [("name", "name"), ("kind", "kind"), ("source", "source"), ("versions", "versions"),
           ("description", "description")]


@group.verb("list", "list what a resource offers: Lmod/Environment Modules, conda environments, Python packages "
            "and registered executables (cached per resource)",
            "cybershuttle application list --resource testcluster --json", RESOURCE, REFRESH,
            arg("--kind", choices=["module", "python", "conda", "executable"], help="only this kind"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import application

    apps = application.list_all(args.resource, refresh=args.refresh, progress=_progress)
    if args.kind:
        apps = [a for a in apps if a.kind == args.kind]
    if args.json:
        print_json([a.to_dict() for a in apps])
        return
    print_table(_rows(apps), COLUMNS, empty="(nothing found)")
    when = application.gathered_at(args.resource)
    if when:
        print(f"(gathered {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}; --refresh asks again)")


@group.verb("search", "search names, versions and descriptions in a resource's catalog",
            "cybershuttle application search compiler --resource testcluster", arg("text"), RESOURCE, REFRESH,
            listing=True)
def _search(args: argparse.Namespace) -> None:
    from .. import application

    apps = application.search(args.text, args.resource, refresh=args.refresh)
    if args.json:
        print_json([a.to_dict() for a in apps])
        return
    print_table(_rows(apps), COLUMNS, empty=f"(nothing matches {args.text!r})")


@group.verb("show", "show one application: versions, default, family, conflicts, dependencies",
            "cybershuttle application show hello --resource testcluster", arg("name"), RESOURCE, listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import application

    app = application.get(args.name, args.resource)
    if args.json:
        print_json(app.to_dict())
        return
    print(f"{app.name} ({app.kind}, from {app.source}" + (f", {app.scope}, owner {app.owner}" if app.scope else "")
          + (f", on {app.resource}" if app.resource else "") + ")")
    if app.description:
        print(f"  {app.description}")
    if app.command:
        print(f"  command: {app.command}")
    for v in app.versions:
        if not v.version:
            continue
        extra = [f"family {v.family}"] if v.family else []
        extra += [f"conflicts with {', '.join(v.conflicts)}"] if v.conflicts else []
        extra += [f"needs {', '.join(v.depends)}"] if v.depends else []
        print(f"  {v.full}{' (default)' if v.default else ''}" + (f": {'; '.join(extra)}" if extra else ""))


@group.verb("load", "add an application to a setup file (modules under additional_dependencies.modules, Python "
            "packages under pip) and/or load it into a running runtime; conflicts stop it first",
            "cybershuttle application load hello/2.0 --setup_file cybershuttle.yml --resource testcluster",
            arg("name", metavar="NAME[/VERSION]"), RESOURCE, arg("--setup-file", default="cybershuttle.yml"),
            arg("--runtime", metavar="RT", help="also load it into this running runtime (`module load` in its kernel)"),
            arg("--no-setup-file", action="store_true", help="with --runtime: leave the setup file alone"),
            listing=True)
def _load(args: argparse.Namespace) -> None:
    from .. import application

    result = application.load(args.name, setup_file=None if args.no_setup_file else args.setup_file,
                              resource=args.resource, runtime=args.runtime)
    if args.json:
        print_json(result.to_dict())
        return
    if result.setup_file:
        if result.setup_changed:
            note = "" if result.comments_kept else " (rewritten whole: its comments could not be kept)"
            print(f"added {result.item} to {result.setup_section} in {result.setup_file}{note}")
        else:
            print(f"{result.item} is already in {result.setup_file}")
    if result.runtime:
        print(f"loaded {result.item} in runtime {result.runtime}"
              + (f"; modules now loaded: {', '.join(result.loaded)}" if result.loaded else ""))
        if result.messages:
            print(result.messages)


@group.verb("register", "register an executable of your own (--public: in the site catalog, for every user)",
            "cybershuttle application register --name mytool --command '~/bin/mytool' --public",
            arg("--name", required=True), arg("--command", required=True), arg("--description", default=""),
            arg("--public", action="store_true"), listing=True)
def _register(args: argparse.Namespace) -> None:
    from .. import application

    app = application.register(args.name, args.command, description=args.description, public=args.public)
    if args.json:
        print_json(app.to_dict())
        return
    print(f"registered {app.name} ({app.scope}): {app.command}")
