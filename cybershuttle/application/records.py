"""The records the application catalog is made of.

An `Application` is one thing a resource offers under one name: a module
(Lmod or Environment Modules) with its versions, a Python package of the
resource's environment, a conda environment, or an executable a user
registered. Versions carry what conflict checks need (family, conflicts).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Where an application comes from; `kind` groups them by how they are loaded.
SOURCES = ("lmod", "envmodules", "pip", "conda", "registered")
KIND_OF_SOURCE = {"lmod": "module", "envmodules": "module", "pip": "python", "conda": "conda",
                  "registered": "executable"}


@dataclass(frozen=True)
class Version:
    """One version of an application (for a module: one modulefile)."""

    version: str
    full: str  # what `module load` takes, e.g. "hello/2.0"; "numpy==2.1.0" for a package
    default: bool = False
    description: str = ""
    family: str | None = None
    conflicts: list[str] = field(default_factory=list)
    depends: list[str] = field(default_factory=list)
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Version":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Application:
    """One name in the catalog of a resource."""

    name: str
    source: str  # one of SOURCES
    versions: list[Version] = field(default_factory=list)
    description: str = ""
    resource: str | None = None  # None for registered executables (they are everywhere)
    command: str | None = None  # registered executables only
    scope: str | None = None  # registered executables: "private" or "public"
    owner: str | None = None

    @property
    def kind(self) -> str:
        return KIND_OF_SOURCE.get(self.source, self.source)

    @property
    def default_version(self) -> Version | None:
        marked = [v for v in self.versions if v.default]
        if marked:
            return marked[0]
        return self.versions[-1] if self.versions else None

    def version(self, wanted: str | None) -> Version | None:
        """The version named `wanted` (or the default one when None)."""
        if wanted is None:
            return self.default_version
        for v in self.versions:
            if wanted in (v.version, v.full):
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind
        data["default"] = self.default_version.version if self.default_version else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Application":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "versions"}
        return cls(versions=[Version.from_dict(v) for v in data.get("versions", [])], **known)
