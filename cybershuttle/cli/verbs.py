"""A small declarative layer over argparse for `cybershuttle <module> <verb>`.

Each CLI module builds one `Group` of verbs. A verb declares its help, an
example (shown by `--help`), its arguments and a handler imported lazily, so
`cybershuttle --help` never imports the core.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:  # typing and dataclasses cost ~15 ms of a 100 ms budget for `--help`
    from typing import Any, Callable

    Handler = Callable[[argparse.Namespace], "int | None"]


class Arg:
    __slots__ = ("flags", "kwargs")

    def __init__(self, flags: tuple[str, ...], kwargs: dict[str, Any]) -> None:
        self.flags = flags
        self.kwargs = kwargs


def arg(*flags: str, **kwargs: Any) -> Arg:
    """One argument, as for `ArgumentParser.add_argument`.

    Long options get their twin spelling automatically: `--setup-file` also
    accepts `--setup_file` (the spelling scientists already type) and back.
    """
    return Arg(flags, kwargs)


class Verb:
    __slots__ = ("name", "help", "example", "args", "handler", "listing")

    def __init__(self, name: str, help: str, example: str, args: list[Arg] | None = None,
                 handler: Handler | None = None, listing: bool = False) -> None:
        self.name = name
        self.help = help
        self.example = example
        self.args = args or []
        self.handler = handler
        self.listing = listing


class Group:
    """The verbs of one CLI module (`storage`, `compute`, ...)."""

    def __init__(self, name: str, *, initialize: Callable[[str], list[str]] | None = None) -> None:
        self.name = name
        self.verbs: dict[str, Verb] = {}
        self._initialize_hook = initialize
        self.verb(
            "initialize",
            f"create (or reuse) your profile (you are your login user); registers the {name} defaults",
            f"cybershuttle {name} initialize",
            arg("user", nargs="?", help="your login name (optional; any other name is refused)"),
        )(self._initialize)

    def verb(self, name: str, help: str, example: str, *args: Arg, listing: bool = False) -> Callable[[Handler], Handler]:
        """Decorator declaring a working verb."""

        def register(handler: Handler) -> Handler:
            self.verbs[name] = Verb(name, help, example, list(args), handler, listing=listing)
            return handler

        return register

    def build(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=CliParser)
        sub.required = True
        for verb in self.verbs.values():
            p = sub.add_parser(
                verb.name,
                help=verb.help,
                description=verb.help,
                epilog=f"example:\n  {verb.example}",
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            for a in verb.args:
                p.add_argument(*_with_twins(a.flags), **a.kwargs)
            if verb.listing:
                p.add_argument("--json", action="store_true", help="print JSON instead of a table")
            # Every verb may reach someone else's code (a public resource's host, a dataset's command).
            p.add_argument("--trust", action="store_true",
                           help="run others' code this verb uses (shown on stderr) and trust it from now on; "
                                "see 'cybershuttle trust --help'")
            p.set_defaults(_verb=verb)

    def _initialize(self, args: argparse.Namespace) -> int:
        from .. import profile

        prof, created = profile.initialize(args.user)
        state = "created" if created else "already existed"
        print(f"profile {prof.user!r} {state}: {prof.root}")
        for line in self._initialize_hook(prof.user) if self._initialize_hook else []:
            print(line)
        return 0


class CliParser(argparse.ArgumentParser):
    """argparse whose errors become one-line UsageErrors (exit 2).

    Abbreviated options are off: a guessed `--res` must not silently mean `--resources`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def run_verb(args: argparse.Namespace, extra: list[str]) -> int:
    verb: Verb = args._verb
    if extra:
        raise UsageError(
            f"cybershuttle {args.module} {verb.name}: unrecognized arguments: {' '.join(extra)} "
            f"(see 'cybershuttle {args.module} {verb.name} --help')"
        )
    assert verb.handler is not None
    from .. import trust
    from . import trust as prompt

    # Others' code runs only when trusted: --trust, or a person answering at a terminal (cybershuttle.trust).
    with trust.granting(trust=getattr(args, "trust", False), show=prompt.show,
                        ask=prompt.ask if prompt.interactive() else None):
        return verb.handler(args) or 0


def _with_twins(flags: tuple[str, ...]) -> list[str]:
    out = list(flags)
    for flag in flags:
        if flag.startswith("--"):
            body = flag[2:]
            for twin in ("--" + body.replace("-", "_"), "--" + body.replace("_", "-")):
                if twin not in out:
                    out.append(twin)
    return out
