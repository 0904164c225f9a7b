"""Where a dataset's copies live, and which one is nearest to the work.

A location is written one of three ways and kept in the catalog as text:

* a URL, `http(s)://host/path` (downloaded into the cache);
* `STORAGE:PATH`, a path on a registered storage (`cybershuttle storage register`);
* a path on this machine (made absolute when registered).

Nearest first, for work running on this machine or on compute resource R:

0. on the host where the work runs: a local path or a local storage (work
   here); a storage on R or on R's host when R is a workstation (`ssh`);
1. on the same compute resource: a storage on a Slurm resource R or on its
   login host (the cluster's shared filesystem, seen from the job's node);
2. everywhere else (other storages, URLs), in the order they were added.

Tiers 0 and 1 are used in place; the others are fetched into the cache.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import CybershuttleError, NotFoundError

HERE, SAME_RESOURCE, ELSEWHERE = 0, 1, 2
TIER_WORDS = {HERE: "on the host where the work runs", SAME_RESOURCE: "on the same compute resource",
              ELSEWHERE: "elsewhere (fetched into the cache)"}

_STORAGE_SPEC = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,127}):(.*)", re.S)
_URL_SCHEMES = ("http", "https")


class LocationError(CybershuttleError):
    """A dataset location that cannot be understood or reached."""


@dataclass(frozen=True)
class Location:
    """One parsed location: `kind` is "url", "storage" or "path"."""

    text: str
    kind: str
    storage: str | None = None
    path: str = ""


def parse(text: str, *, check: bool = True) -> Location:
    """Parse (and with `check`, validate) one location as a user typed it."""
    if not isinstance(text, str) or not text.strip():
        raise LocationError("a dataset location is required: a URL, STORAGE:PATH or a local path")
    text = text.strip()
    if "://" in text:
        return _url(text)
    spec = _STORAGE_SPEC.fullmatch(text)
    if spec and not text.startswith(("/", ".", "~")):
        name, path = spec.group(1), spec.group(2) or "/"
        if check:
            _storage_module().get(name)  # NotFoundError naming the known storages
        return Location(f"{name}:{path}", "storage", storage=name, path=path)
    local = Path(text).expanduser()
    if check:
        local = local.resolve()
        if not local.exists():
            raise NotFoundError(f"no file or directory {str(local)!r} on this machine: check the path, "
                                "or give a URL or STORAGE:PATH")
    return Location(str(local), "path", path=str(local))


def template_fields(url: str) -> list[str]:
    """The `{placeholders}` of an API URL template (bare identifiers only)."""
    found: list[str] = []
    try:
        parts = list(string.Formatter().parse(url))
    except ValueError as exc:
        raise LocationError(f"the URL template {url!r} has unbalanced braces ({exc})") from exc
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise LocationError(f"the URL template {url!r} has a bad placeholder {{{field}}}: "
                                "use plain names such as {page}")
        found.append(field)
    return found


def rank(loc: Location, resource: Any | None) -> int:
    """The location's tier (see the module doc) for work on `resource` (None: here)."""
    if loc.kind == "url":
        return ELSEWHERE
    work_here = resource is None or not resource.host
    if loc.kind == "path":
        return HERE if work_here else ELSEWHERE
    try:
        info = _storage_module().get(loc.storage)
    except CybershuttleError:
        return ELSEWHERE  # a storage removed since: tried last, and its error reported then
    if resource is None or work_here:
        return HERE if info.host is None else ELSEWHERE
    same_server = info.host == resource.host and info.port in (None, resource.port)
    if info.resource == resource.name or same_server:
        # a Slurm job runs on a compute node: the storage is the cluster's, not that node's
        from ..compute import schedulers

        return SAME_RESOURCE if schedulers.for_resource(resource).runs_on_nodes else HERE
    return ELSEWHERE


def nearest(locs: list[Location], resource: Any | None) -> list[tuple[int, Location]]:
    """Locations with their tiers, nearest first (stable: equal tiers keep their order)."""
    return sorted(((rank(loc, resource), loc) for loc in locs), key=lambda pair: pair[0])


def _url(text: str) -> Location:
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise LocationError(f"{text!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        return parse(parts.path)
    if scheme not in _URL_SCHEMES:
        raise LocationError(
            f"{text!r}: datasets are fetched over http(s) only; for {scheme}:// register a storage first "
            f"(`cybershuttle storage register --location {text} --name S`) and use S:/path"
        )
    if not parts.hostname:
        raise LocationError(f"{text!r} has no host name: write it as {scheme}://HOST/PATH")
    if parts.username is not None or parts.password is not None:
        raise LocationError(
            f"the URL for host {parts.hostname} carries credentials: they would be stored in the catalog; "
            "register an API dataset with --auth-env VAR instead"
        )
    del port
    return Location(text, "url")


def _storage_module() -> Any:
    from .. import storage

    return storage
