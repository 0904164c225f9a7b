"""The model catalog: what a model is called, what kind it is, where it lives.

Private models live in the user's catalog; `public=True` puts one in the site
catalog for every user. The loader is worked out from the location once, at
registration, so a bad location is refused before anyone tries to run it:

    ai            a saved PyTorch file (TorchScript or a pickled nn.Module; a path
                  here or `STORAGE:/path`), or a Python entry point `pkg.module:factory`
    computational a command line (see `cybershuttle.model.command` for its
                  `{input}`/`{output}` convention)
    ai4science    a template name (`template:NAME` or `NAME`), run by cybershuttle.template
"""
from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import names
from ..errors import CybershuttleError, UsageError
from ..registry import catalog

KIND = "model"
KINDS = ("ai", "computational", "ai4science")
ENTRY_POINT = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
STORAGE_SPEC = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*):(/.*)")


@dataclass(frozen=True)
class Model:
    """One registered model as every front end sees it."""

    name: str
    kind: str          # ai | computational | ai4science
    loader: str        # torch-file | entry-point | command | template
    location: str
    description: str = ""
    scope: str = "private"
    owner: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(name: str, kind: str, location: str, *, public: bool = False, description: str = "",
             replace: bool = False) -> Model:
    """Check the location for its kind and add the model to the private (or site) catalog."""
    names.validate(name, "model name")
    if kind not in KINDS:
        raise UsageError(f"model kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(location, str) or not location.strip():
        raise UsageError(f"model {name!r} needs a location (a saved model, pkg.module:factory, a program or a template)")
    loader, location = _classify(kind, location.strip())
    entry = catalog().add(KIND, name, {"kind": kind, "loader": loader, "location": location,
                                       "description": description}, public=public, replace=replace)
    return _from_entry(entry)


def get(name: str) -> Model:
    """The model called `name` (private shadows public); NotFoundError names the known ones."""
    return _from_entry(catalog().get(KIND, names.validate(name, "model name")))


def list_all(search: str | None = None) -> list[Model]:
    """Every model the active user can see: the public ones and their own private ones."""
    return [_from_entry(e) for e in catalog().list(KIND, search)]


def remove(name: str) -> Model:
    """Remove a model from the catalog (a public one only by its owner)."""
    return _from_entry(catalog().remove(KIND, names.validate(name, "model name")))


def _classify(kind: str, location: str) -> tuple[str, str]:
    if kind == "computational":
        try:
            words = shlex.split(location)
        except ValueError as exc:
            raise UsageError(f"the command {location!r} cannot be parsed ({exc}): quote it as in a shell") from exc
        if not words:
            raise UsageError("a computational model needs a command line as its location")
        return "command", location
    if kind == "ai4science":
        template = location.removeprefix("template:")
        names.validate(template, "template name")
        return "template", template
    if ENTRY_POINT.fullmatch(location):
        return "entry-point", location
    if STORAGE_SPEC.fullmatch(location):
        return "torch-file", location
    path = Path(location).expanduser()
    if not path.is_file():
        raise CybershuttleError(
            f"the model location {location!r} is neither a file here, a storage path (NAME:/path) nor an entry "
            "point (pkg.module:factory): give one of these")
    return "torch-file", str(path.resolve())


def _from_entry(entry: Any) -> Model:
    d = entry.data
    return Model(name=entry.name, kind=d["kind"], loader=d["loader"], location=d["location"],
                 description=d.get("description", ""), scope=entry.scope, owner=entry.owner)
