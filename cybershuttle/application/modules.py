"""`module list|avail|spider|load|unload` on a resource, the same way on every site.

Each call runs in a login shell (`bash -lc`), the only place `module`
exists on HPC systems, through the resource's shell: this machine, or the
pooled SSH connection. A login shell ends with the call, so `load`/`unload`
here check that the modules load and report what would then be loaded;
to keep modules loaded, add them to a setup file or load them into a
runtime (`cybershuttle.application.load(..., runtime=NAME)`).
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CybershuttleError, RemoteCommandError
from .lmod import parse_terse

ACTIONS = ("list", "avail", "spider", "load", "unload")
#: Which module system a login shell has (printed as one word).
_WHICH = ('if [ -n "${LMOD_DIR:-}" ]; then echo lmod; elif type module >/dev/null 2>&1; then echo envmodules; '
          'else echo none; fi')
_MARK = "@@cs-loaded"


class NoModuleSystemError(CybershuttleError):
    """The resource has no `module` command in a login shell."""


@dataclass(frozen=True)
class ModuleResult:
    resource: str
    action: str
    system: str  # "lmod" | "envmodules"
    modules: list[str] = field(default_factory=list)  # names listed, or loaded after load/unload
    output: str = ""  # what the module command printed (its messages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(action: str, names: list[str] | None = None, *, resource: str | None = None) -> ModuleResult:
    """Run `module ACTION NAMES...` on `resource` (default: this machine)."""
    if action not in ACTIONS:
        raise CybershuttleError(f"unknown module action {action!r}: use one of {', '.join(ACTIONS)}")
    names = list(names or [])
    for name in names:
        if not name or name.startswith("-"):
            raise CybershuttleError(f"{name!r} is not a module name")
    res = _resource(resource)
    quoted = " ".join(shlex.quote(n) for n in names)
    if action in ("load", "unload"):
        if not names:
            raise CybershuttleError(f"module {action}: name at least one module")
        body = f"module {action} {quoted} 2>&1 || exit $?; echo {_MARK}; module -t list 2>&1"
    elif action == "list":
        body = f"echo {_MARK}; module -t list 2>&1"
    else:
        body = f"echo {_MARK}; module -t {action} {quoted} 2>&1"
    script = f'system=$({_WHICH}); echo "$system"; [ "$system" = none ] && exit 0; {body}'
    shell = res.shell()
    result = shell.run(script, check=False, login_shell=True, timeout=120)
    system, _, rest = result.stdout.partition("\n")
    system = system.strip()
    if system == "none" or not system:
        raise NoModuleSystemError(f"{res.name} has no module system (no `module` command in a login shell): "
                                  "its software comes from its Python environment instead; see "
                                  f"`cybershuttle application list --resource {res.name}`")
    messages, _, listing = rest.partition(_MARK + "\n")
    if not result.ok:
        detail = [line.strip() for line in (rest or result.stderr).splitlines() if line.strip()][:3]
        raise RemoteCommandError(f"module {action} {' '.join(names)} failed on {res.name} "
                                 f"(exit {result.exit_code}): {' / '.join(detail) or 'no output'}")
    modules = [v.full for app in parse_terse(listing, res.name) for v in app.versions]
    if action in ("load", "unload") and "error" in messages.lower():
        raise RemoteCommandError(f"module {action} {' '.join(names)} on {res.name}: {messages.strip()}")
    if listing.strip() and not modules and "No modules" not in listing and "No module" not in listing:
        raise CybershuttleError(f"module {action} on {res.name} printed output that could not be read as a "
                                f"module listing: {listing.strip()[:300]!r}")
    return ModuleResult(res.name, action, system, modules, messages.strip())


def _resource(name: str | None) -> Any:
    from .catalog import resource_of

    return resource_of(name)


def run_in_runtime(runtime: str, action: str, names: list[str]) -> ModuleResult:
    """`module list|load|unload` inside a running runtime's kernel (the kernel keeps the result)."""
    from .. import runtime as runtimes
    from .loading import loaded_in_runtime, module_in_runtime

    rt = runtimes.get(runtime)
    if action == "list":
        return ModuleResult(rt.resource, action, "runtime", loaded_in_runtime(runtime))
    loaded, messages = module_in_runtime(runtime, action, names)
    return ModuleResult(rt.resource, action, "runtime", loaded, messages)
