"""`cybershuttle module ...`: the resource's module system, the same on every site."""
from __future__ import annotations

import argparse

from .output import print_json
from .verbs import Group, arg

RESOURCE = arg("--resource", metavar="R", help="the compute resource (default: local)")

group = Group("module")


def _show(result, as_json: bool, empty: str) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    if result.output:
        print(result.output)
    print("\n".join(result.modules) if result.modules else empty)


@group.verb("list", "list the modules a login shell on the resource has loaded",
            "cybershuttle module list --resource testcluster", RESOURCE, listing=True)
def _list(args: argparse.Namespace) -> None:
    from ..application import modules

    _show(modules.run("list", resource=args.resource), args.json, "(no modules loaded)")


@group.verb("avail", "list available modules", "cybershuttle module avail --resource testcluster",
            arg("names", nargs="*", metavar="NAME"), RESOURCE, listing=True)
def _avail(args: argparse.Namespace) -> None:
    from ..application import modules

    _show(modules.run("avail", args.names, resource=args.resource), args.json, "(no modules)")


@group.verb("spider", "search all modules (including ones hidden behind others)",
            "cybershuttle module spider hello --resource testcluster", arg("name", nargs="?"), RESOURCE, listing=True)
def _spider(args: argparse.Namespace) -> None:
    from ..application import modules

    _show(modules.run("spider", [args.name] if args.name else [], resource=args.resource), args.json,
          "(no modules)")


def _load_or_unload(action: str, args: argparse.Namespace) -> None:
    from .. import application
    from ..application import modules

    if args.runtime:
        if action == "unload":
            result = modules.run_in_runtime(args.runtime, "unload", args.names)
        else:
            for name in args.names:
                application.load(name, runtime=args.runtime)
            result = modules.run_in_runtime(args.runtime, "list", [])
        _show(result, args.json, "(no modules loaded)")
        return
    result = modules.run(action, args.names, resource=args.resource)
    if not args.json:
        print(f"{action}ed in a login shell on {result.resource}; that shell has ended. To keep modules loaded "
              "use `cybershuttle application load NAME --setup_file cybershuttle.yml` or --runtime RT.")
    _show(result, args.json, "(no modules loaded)")


RUNTIME = arg("--runtime", metavar="RT", help="do it inside this running runtime's kernel")


@group.verb("load", "load modules (in a login shell, or inside a runtime with --runtime, where conflicts with "
            "what is loaded are refused first)",
            "cybershuttle module load hello/2.0 --resource testcluster",
            arg("names", nargs="+", metavar="NAME"), RESOURCE, RUNTIME, listing=True)
def _load(args: argparse.Namespace) -> None:
    _load_or_unload("load", args)


@group.verb("unload", "unload modules (in a login shell, or inside a runtime with --runtime)",
            "cybershuttle module unload hello --resource testcluster",
            arg("names", nargs="+", metavar="NAME"), RESOURCE, RUNTIME, listing=True)
def _unload(args: argparse.Namespace) -> None:
    _load_or_unload("unload", args)
