"""Durable runtimes in a notebook: the walltime warning, checkpoints, resume, extension, idle stop.

    %request_runtime hpc --resource R --walltime 60 --warn-before 5 [--no-checkpoint] [--idle-timeout 30]
    %request_runtime hpc --resource R --walltime 60 --resume     # a new job; the namespace restored first
    %checkpoint_runtime hpc                                      # now (also automatic at the warning)
    %extend_runtime hpc --walltime +30                           # where the site allows it

The core is `cybershuttle.runtime.durable`; this module only parses and words.
"""
from __future__ import annotations

import argparse
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """The durable options of `%request_runtime` (the CLI's `runtime request` has the same)."""
    from cybershuttle.runtime.durable import minutes

    p.add_argument("--warn-before", "--warn_before", dest="warn_before", type=minutes,
                   help="minutes (or 30s, 1h) before the walltime to warn and checkpoint (default 5)")
    p.add_argument("--no-checkpoint", "--no_checkpoint", dest="no_checkpoint", action="store_true",
                   help="warn only; take no checkpoint at the warning")
    p.add_argument("--idle-timeout", "--idle_timeout", dest="idle_timeout", type=minutes,
                   help="minutes (or 20s, 1h) without a cell after which the runtime checkpoints and gives its "
                        "job back (0: never, whatever the site's default)")
    p.add_argument("--journal-mb", "--journal_mb", dest="journal_mb", type=float,
                   help="how much recent output the runtime keeps for re-attaching notebooks (default 64)")
    p.add_argument("--resume", action="store_true", help="restore the namespace of its last checkpoint first")


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """`options` and `resume` for runtime.request, from the parsed line."""
    from cybershuttle.runtime import durable

    options = durable.Options(warn_before_min=args.warn_before, checkpoint=not args.no_checkpoint,
                              idle_timeout_min=args.idle_timeout,
                              journal_mb=args.journal_mb or durable.DEFAULT_JOURNAL_MB)
    return {"options": options, "resume": args.resume}


def print_status(rt: Any) -> None:
    """The durable lines of `%stat_runtime`: the walltime warning, what a resume restored."""
    from cybershuttle.runtime import durable

    warning = durable.warning(rt)
    if warning:
        print(f"  warning:   {warning['text']}")
    restored = durable.restored(rt)
    if restored:
        print(f"  resumed:   {restored['text']}")


@magics_class
class DurableMagics(Magics):
    @line_magic
    def checkpoint_runtime(self, line: str) -> None:
        """Save a runtime's namespace now (dill; what cannot be saved is named): `%checkpoint_runtime NAME`."""
        self._guard(self._checkpoint, line)

    @line_magic
    def extend_runtime(self, line: str) -> None:
        """Raise a runtime's time limit where the site allows it: `%extend_runtime NAME --walltime +30`."""
        self._guard(self._extend, line)

    def _checkpoint(self, line: str) -> None:
        from cybershuttle.runtime import durable

        from .magics import _parser, _split

        p = _parser("checkpoint_runtime", "save a runtime's namespace into its private directory")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        print("\n".join(durable.report(args.name, durable.checkpoint(args.name))))

    def _extend(self, line: str) -> None:
        from cybershuttle.runtime import durable

        from .magics import MagicUsageError, _parser, _split

        p = _parser("extend_runtime", "raise a runtime's time limit")
        p.add_argument("name")
        p.add_argument("--walltime", required=True, help="+MINUTES to add")
        args = p.parse_args(_split(line))
        minutes = args.walltime.lstrip("+")
        if not minutes.isdigit():
            raise MagicUsageError(f"%extend_runtime {args.name}: give --walltime +MINUTES (got {args.walltime!r})")
        done = durable.extend(args.name, int(minutes))
        print(f"runtime {args.name}: job {done['job']} got {done['added_min']} more minute(s)")

    def _guard(self, fn: Any, line: str) -> None:
        from .magics import CybershuttleMagics

        CybershuttleMagics._guard(self, fn, line)  # type: ignore[arg-type]  # the same short red line
