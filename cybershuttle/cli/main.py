"""Entry point of the `cybershuttle` command.

Startup is kept fast: only argparse and this file load for `--help`; a
module's verbs (and the core they call) are imported when that module is
named on the command line.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import CybershuttleError, UsageError
from .verbs import CliParser, run_verb

#: CLI module -> one-line description (the module's verbs live in cli/<name>.py)
MODULES: dict[str, str] = {
    "storage": "named storage: local paths, sftp, HPC paths, http, cloud drives; ls, cp, mount",
    "dataset": "datasets over storage or URLs, cached read-only, loaded from the nearest copy",
    "compute": "compute resources (local, ssh, slurm), jobs, usage and runtime kernelspecs",
    "runtime": "remote kernels on a resource: request, list, status, restart, stop, connect (any Jupyter client)",
    "session": "recorded shell and notebook sessions: start, show, replay, export",
    "template": "notebook templates run through papermill; parameter sweeps as Slurm job arrays",
    "application": "one searchable catalog of what each resource offers (Lmod, conda, pip, your own)",
    "module": "a uniform wrapper over a resource's module system (Lmod, Environment Modules)",
    "model": "AI and computational models: register, run for inference, load to modify",
    "setup": "check a cybershuttle.yml setup file and print what it asks for",
    "site": "the site (public) catalog: where it is, its schema, `migrate` from SQLite to PostgreSQL",
    "trust": "whose code you run: show, add, list, rm trusted entries (others' commands, notebooks, hosts)",
}

_EXAMPLES = """\
examples:
  cybershuttle compute initialize
  cybershuttle storage ls --json
  cybershuttle setup validate cybershuttle.yml
  cybershuttle dataset register --name cifar10 --location https://host/cifar.tar.gz --after_download_command 'tar -xz'

Every verb has --help with an example; add --debug to see a traceback.
"""

#: How the CLI words a next step the core suggests (CybershuttleError.next_step).
_NEXT_STEPS = {
    "runtime.request": "cybershuttle runtime request {} --resource R",
    "runtime.wait": "cybershuttle runtime status {} --wait",
    "runtime.stop": "cybershuttle runtime stop {}",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _dispatch(argv)
    except CybershuttleError as exc:
        if debug:
            raise
        hint = _NEXT_STEPS.get(exc.next_step[0], "").format(exc.next_step[1]) if exc.next_step else ""
        print(f"cybershuttle: error: {exc}" + (f" (`{hint}`)" if hint else ""), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cybershuttle: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line unless --debug
        if debug:
            raise
        print(f"cybershuttle: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _dispatch(argv: list[str]) -> int:
    parser = CliParser(
        prog="cybershuttle",
        description="Cybershuttle: your notebook's data, compute and environments behind names.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"cybershuttle {__version__}")
    modules = parser.add_subparsers(dest="module", metavar="MODULE", parser_class=CliParser)
    modules.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in MODULES:
        raise UsageError(f"unknown module {chosen!r}: choose one of {', '.join(MODULES)} (see 'cybershuttle --help')")
    for name, help_text in MODULES.items():
        sub = modules.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            group = importlib.import_module(f"cybershuttle.cli.{name}").group
            group.build(sub)
    args, extra = parser.parse_known_args(argv)
    return run_verb(args, extra)


if __name__ == "__main__":
    sys.exit(main())
