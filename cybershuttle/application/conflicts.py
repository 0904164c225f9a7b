"""Conflicts found before anything is loaded.

Modules: two versions of one module, two members of one Lmod family (Lmod
would silently swap a loaded compiler for another), and explicit
`conflict(...)` lines of a modulefile. Python requirements: two
requirements on one package whose version specifiers cannot both hold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import CybershuttleError
from .records import Application


@dataclass(frozen=True)
class Conflict:
    first: str
    second: str
    reason: str

    def __str__(self) -> str:
        return f"{self.first} conflicts with {self.second}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConflictError(CybershuttleError):
    """What was asked for cannot be loaded together with what is already there."""

    http_status = 409

    def __init__(self, conflicts: list[Conflict], where: str) -> None:
        self.conflicts = conflicts
        lines = "; ".join(str(c) for c in conflicts)
        super().__init__(f"nothing was loaded: {lines} (in {where}). Remove one of them first, "
                         "or pick a version that fits")


def module_name(full: str) -> str:
    """`hello/2.0` -> `hello` (the package a module version belongs to)."""
    return full.rpartition("/")[0] if "/" in full else full


def module_conflicts(new: str, present: Iterable[str], apps: Iterable[Application]) -> list[Conflict]:
    """Conflicts between module `new` and the modules already `present`.

    A name without a version stands for its default version, and a module's
    package is the one the catalog gives (Lmod's own grouping), not a guess
    from the last `/`.
    """
    apps = list(apps)
    index = _version_index(apps)
    defaults = {a.name: a.default_version.full for a in apps if a.kind == "module" and a.default_version}
    new_full = defaults.get(new, new)
    new_pkg, new_info = index.get(new_full, (module_name(new_full), None))
    found = []
    for old in present:
        old_full = defaults.get(old, old)
        if old_full == new_full:
            continue
        old_pkg, old_info = index.get(old_full, (module_name(old_full), None))
        if old_pkg == new_pkg:
            found.append(Conflict(new, old, f"two versions of module {new_pkg}"))
            continue
        new_family = new_info.family if new_info else None
        old_family = old_info.family if old_info else None
        if new_family and new_family == old_family:
            found.append(Conflict(new, old, f"both belong to the Lmod family {new_family!r}, "
                                            "of which only one module can be loaded"))
            continue
        declared = (new_info.conflicts if new_info else []) + (old_info.conflicts if old_info else [])
        if any(c in (old, old_full, old_pkg, new, new_full, new_pkg) for c in declared):
            found.append(Conflict(new, old, "a modulefile declares conflict() with the other"))
    return found


def pip_conflicts(new: str, present: Iterable[str]) -> list[Conflict]:
    """Conflicts between requirement `new` and the requirements already `present`."""
    try:
        req = Requirement(new)
    except InvalidRequirement:
        return []  # a URL or path requirement: nothing to compare
    found = []
    for old in present:
        try:
            other = Requirement(old)
        except InvalidRequirement:
            continue
        if canonicalize_name(other.name) != canonicalize_name(req.name) or str(other.marker) != str(req.marker):
            continue
        if not satisfiable(req.specifier & other.specifier):
            found.append(Conflict(new, old, f"no version of {req.name} satisfies both {req.specifier or 'any'} "
                                            f"and {other.specifier or 'any'}"))
    return found


def satisfiable(spec: SpecifierSet) -> bool:
    """Whether some version satisfies every clause of `spec`.

    The clauses bound intervals whose ends are the versions they name, so a
    satisfying version, if any, is one of those versions or lies just beside
    one: each named version, a later micro release, an earlier one and the
    extremes are tried (pre-releases allowed, since `==2.0rc1` is legitimate).
    """
    if not len(spec):
        return True
    candidates: set[str] = {"0", "0.0.0.dev0", "999999"}
    for clause in spec:
        text = clause.version.rstrip(".*")
        try:
            v = Version(text)
        except InvalidVersion:
            continue  # an arbitrary-equality (===) string: tried as itself below
        release = list(v.release)
        candidates.update({str(v), text, f"{v.base_version}.1", f"{v.base_version}.0.1", f"{v.base_version}.post1"})
        for i in range(len(release)):
            bumped = release[: i + 1]
            bumped[-1] += 1
            candidates.add(".".join(map(str, bumped)))
            if release[i] > 0:
                lower = release[: i + 1]
                lower[-1] -= 1
                candidates.update({".".join(map(str, lower)), ".".join(map(str, lower)) + ".999999"})
        candidates.add(clause.version)
    return any(_contains(spec, c) for c in candidates)


def _contains(spec: SpecifierSet, candidate: str) -> bool:
    try:
        return spec.contains(candidate, prereleases=True)
    except InvalidVersion:
        return False


def _version_index(apps: Iterable[Application]) -> dict[str, tuple[str, Any]]:
    """Module version -> (its package, its Version record)."""
    return {v.full: (app.name, v) for app in apps if app.kind == "module" for v in app.versions}
