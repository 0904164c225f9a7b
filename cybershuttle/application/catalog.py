"""One catalog of what a resource offers, gathered in one login-shell round
trip and cached per resource in the user's private catalog.

Sources: Lmod (spider JSON, terse fallback), Environment Modules
(`module avail --json`), conda environments, the packages of the resource's
Python, and the executables users registered (those are not per resource).
The cache lives until `refresh=True` or until it is older than a day:
module trees change when a site installs software, not every minute.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from .. import names
from ..errors import CybershuttleError, NotFoundError
from ..registry import catalog
from . import conda, envmodules, lmod, python_env
from .records import Application, Version

if TYPE_CHECKING:  # compute imports paramiko (~0.5 s); a cached listing never needs it
    from .. import compute

CACHE_KIND = "application-cache"
REGISTERED_KIND = "application"
MAX_AGE_S = 24 * 3600
_SECTION = "@@cs-section "


def resource_of(name: str | None) -> "compute.Resource":
    """The named resource; None means this machine (registered on first use)."""
    from .. import compute

    if name is None or name == "local":
        try:
            return compute.get("local")
        except NotFoundError:
            return compute.register_local()[0]
    return compute.get(name)


def gather(res: "compute.Resource", progress: Callable[[str], None] | None = None) -> list[Application]:
    """Ask `res` what it offers now (no cache)."""
    python = res.python or res.facts.get("python") or "python3"
    script = "\n".join([lmod.GATHER, envmodules.GATHER, conda.GATHER, python_env.gather_command(python)])
    shell = res.shell()
    if progress:
        progress(f"asking {res.name} for its modules, conda environments and Python packages")
    result = shell.run(script, check=False, login_shell=True, timeout=300)
    sections = _sections(result.stdout)

    def terse() -> str:
        if progress:
            progress(f"{res.name}: the spider JSON could not be read; reading `module -t avail`")
        return shell.run(lmod.TERSE, check=False, login_shell=True, timeout=120).stdout

    apps: list[Application] = []
    for part in (lmod.from_sections(sections, res.name, terse),
                 envmodules.from_sections(sections, res.name, terse),
                 conda.from_sections(sections, res.name),
                 _python(sections, res.name)):
        apps.extend(part or [])
    return apps


def list_all(resource: str | None = None, *, refresh: bool = False,
             progress: Callable[[str], None] | None = None) -> list[Application]:
    """Everything `resource` offers plus the registered executables, cached per resource."""
    name = names.validate(resource or "local", "resource name")
    cat = catalog()
    entry = cat.private.find(CACHE_KIND, name)
    fresh = entry is not None and time.time() - entry.data.get("gathered", 0) < MAX_AGE_S
    if refresh or not fresh:
        res = resource_of(resource)
        apps = gather(res, progress)
        cat.private.add(CACHE_KIND, res.name, {"gathered": time.time(), "items": [a.to_dict() for a in apps]},
                        cat.user, replace=True)
    else:
        assert entry is not None
        apps = [Application.from_dict(item) for item in entry.data.get("items", [])]
    return apps + registered()


def gathered_at(resource: str | None = None) -> float | None:
    """When the cached catalog of `resource` was gathered (None: not yet)."""
    entry = catalog().private.find(CACHE_KIND, names.validate(resource or "local", "resource name"))
    return entry.data.get("gathered") if entry else None


def search(text: str, resource: str | None = None, *, refresh: bool = False) -> list[Application]:
    """Applications whose name, description or versions contain `text` (any case)."""
    needle = text.lower()
    out = []
    for app in list_all(resource, refresh=refresh):
        hay = " ".join([app.name, app.description, app.command or ""] +
                       [f"{v.full} {v.description}" for v in app.versions]).lower()
        if needle in hay:
            out.append(app)
    return out


def get(name: str, resource: str | None = None) -> Application:
    """The application `name` (a module before a registered executable, a Python package, a conda env)."""
    apps = list_all(resource)
    matches = [a for a in apps if a.name == name] or [a for a in apps if a.name.lower() == name.lower()]
    if not matches:
        close = sorted({a.name for a in apps if name.lower() in a.name.lower()})[:8]
        hint = f"similar: {', '.join(close)}" if close else "see `cybershuttle application list`"
        where = resource or "local"
        raise NotFoundError(f"no application named {name!r} on {where} ({hint}); if it was installed "
                            f"recently, add --refresh to `cybershuttle application list --resource {where}`")
    order = {"lmod": 0, "envmodules": 0, "registered": 1, "pip": 2, "conda": 3}
    return sorted(matches, key=lambda a: order.get(a.source, 9))[0]


def register(name: str, command: str, *, description: str = "", public: bool = False) -> Application:
    """Register an executable of your own (public ones go to the site catalog)."""
    names.validate(name, "application name")
    if not command or not command.strip():
        raise CybershuttleError(f"application {name!r}: give the command that runs it (--command)")
    if "\n" in command or "\0" in command:
        raise CybershuttleError(f"application {name!r}: the command must be one line")
    entry = catalog().add(REGISTERED_KIND, name, {"command": command, "description": description}, public=public)
    return _from_entry(entry)


def unregister(name: str) -> Application:
    """Remove a registered executable (only its owner can remove a public one)."""
    return _from_entry(catalog().remove(REGISTERED_KIND, name))


def registered() -> list[Application]:
    return [_from_entry(e) for e in catalog().list(REGISTERED_KIND)]


def _from_entry(entry: Any) -> Application:
    return Application(name=entry.name, source="registered", description=entry.data.get("description", ""),
                       command=entry.data.get("command"), scope=entry.scope, owner=entry.owner,
                       versions=[Version(version="", full=entry.name, default=True)])


def _python(sections: dict[str, str], resource: str) -> list[Application] | None:
    try:
        return python_env.from_sections(sections, resource)
    except ValueError as exc:
        raise CybershuttleError(f"the Python package list of {resource} could not be read ({exc}); "
                                f"run `python3 -m pip list --format json` there to see why") from exc


def _sections(stdout: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(_SECTION):
            current = out.setdefault(line[len(_SECTION):].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in out.items()}
