"""Lmod: what its spider knows (names, versions, descriptions, families,
conflicts, dependencies), read from its JSON and, failing that, from terse output.

Lmod's output differs across versions and sites, so the JSON is read
defensively (`package`/`versions`/`full` are the keys every Lmod 7-8 writes)
and the terse `module -t avail` listing is the fallback. What must never
happen is an empty catalog because a parser missed: when the JSON does not
parse and the terse output yields nothing although the command printed
something, `LmodOutputError` says so and shows the start of that output.

Conflicts and dependencies are not in the spider JSON, so the modulefiles
themselves are scanned for `conflict(...)`, `depends_on(...)`, `prereq(...)`
and `load(...)` lines (Lua and Tcl spellings) in the same round trip.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import CybershuttleError
from .records import Application, Version

SOURCE = "lmod"


class LmodOutputError(CybershuttleError):
    """Lmod printed something that none of the parsers understood."""


#: Bash printing the spider JSON and the directive lines of every modulefile,
#: each in its own section (see `catalog._sections`). Nothing when Lmod is absent.
GATHER = r"""
if [ -n "${LMOD_DIR:-}" ] && [ -x "$LMOD_DIR/spider" ]; then
  echo "@@cs-section lmod-json"
  "$LMOD_DIR/spider" -o jsonSoftwarePage "$MODULEPATH" 2>/dev/null
  echo; echo "@@cs-section lmod-directives"
  printf '%s\n' "$MODULEPATH" | tr ':' '\n' | while IFS= read -r d; do
    [ -n "$d" ] && [ -d "$d" ] && timeout 30 grep -rHE \
      '^[[:space:]]*(conflict|prereq|depends_on|always_load|load|module[[:space:]]+load)[[:space:](]' -- "$d" 2>/dev/null
  done
  true
fi
"""

#: The fallback listing (Lmod writes it to stderr, hence 2>&1).
TERSE = "module -t avail 2>&1"

_CALL = re.compile(r"""^\s*(conflict|prereq|depends_on|always_load|load)\s*\((.*)\)""")
_TCL = re.compile(r"""^\s*(conflict|prereq|module\s+load)\s+(.+)$""")
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def parse_spider_json(text: str, resource: str | None,
                      directives: dict[str, dict[str, list[str]]] | None = None) -> list[Application]:
    """Applications from `spider -o jsonSoftwarePage`; ValueError when it is not that JSON."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("the spider JSON is not a list of packages")
    directives = directives or {}
    apps: dict[str, Application] = {}
    for pkg in data:
        if not isinstance(pkg, dict) or not isinstance(pkg.get("versions"), list):
            raise ValueError(f"unexpected package entry in the spider JSON: {str(pkg)[:120]}")
        raw_versions = [v for v in pkg["versions"] if isinstance(v, dict) and v.get("full")]
        if not raw_versions:
            continue
        name = str(pkg.get("package") or _name_of(raw_versions[0]["full"]))
        any_marked = any(v.get("markedDefault") for v in raw_versions)
        default_name = pkg.get("defaultVersionName")
        raw_versions.sort(key=lambda v: str(v.get("wV") or v.get("canonicalVersionString") or v["full"]))
        versions = []
        for v in raw_versions:
            full = str(v["full"])
            version = str(v.get("versionName") or full.rpartition("/")[2])
            found = directives.get(str(v.get("path") or ""), {})
            is_default = bool(v.get("markedDefault")) if any_marked else version == default_name
            versions.append(Version(
                version=version, full=full, default=is_default,
                description=str(v.get("description") or pkg.get("description") or "").strip(),
                family=v.get("family") or None, conflicts=found.get("conflicts", []),
                depends=found.get("depends", []) + [str(p) for p in _parents(v)], path=v.get("path"),
            ))
        previous = apps.get(name)
        if previous:  # the same package in two MODULEPATH trees: one entry, all versions
            versions = previous.versions + [v for v in versions if v.full not in {p.full for p in previous.versions}]
        apps[name] = Application(name=name, source=SOURCE, versions=versions, resource=resource,
                                 description=str(pkg.get("description") or versions[-1].description).strip())
    return [apps[n] for n in sorted(apps, key=str.lower)]


def parse_terse(text: str, resource: str | None, source: str = SOURCE) -> list[Application]:
    """Applications from `module -t avail` (names and versions only; Lmod and Environment Modules)."""
    found: dict[str, list[Version]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.endswith(":") or line.endswith("/") or " " in line or line.startswith("-"):
            continue  # blank, a MODULEPATH directory header, a bare package header, or prose
        default = False
        for mark in ("(default)", "(D)", "<D>"):
            if line.endswith(mark):
                line, default = line[: -len(mark)], True
        line = re.sub(r"\([A-Za-z,]*\)$|<[A-Za-z,]*>$", "", line)  # other Lmod property marks
        if "/" not in line:
            name, version = line, ""
        else:
            name, _, version = line.rpartition("/")
        versions = found.setdefault(name, [])
        if all(v.full != line for v in versions):
            versions.append(Version(version=version, full=line, default=default))
    return [Application(name=n, source=source, versions=found[n], resource=resource)
            for n in sorted(found, key=str.lower)]


def parse_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """`path:line` grep output -> {modulefile path: {"conflicts": [...], "depends": [...]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, body = line.partition(":")
        if not sep:
            continue
        call = _CALL.match(body)
        if call:
            verb, targets = call.group(1), _QUOTED.findall(call.group(2))
        else:
            tcl = _TCL.match(body)
            if not tcl or path.endswith(".lua"):
                continue
            verb, targets = tcl.group(1).split()[0], tcl.group(2).split()
        key = "conflicts" if verb == "conflict" else "depends"
        entry = out.setdefault(path, {"conflicts": [], "depends": []})
        entry[key] += [t for t in targets if t not in entry[key]]
    return out


def from_sections(sections: dict[str, str], resource: str | None, terse: Any = None) -> list[Application] | None:
    """The Lmod part of a catalog, or None when the resource has no Lmod.

    `terse` is a callable returning `module -t avail` output; it is only
    called when the JSON cannot be read.
    """
    if "lmod-json" not in sections:
        return None
    text = sections["lmod-json"].strip()
    directives = parse_directives(sections.get("lmod-directives", ""))
    try:
        apps = parse_spider_json(text, resource, directives)
        if apps or terse is None:
            return apps
        # An empty spider answer (e.g. a stale spider cache) is checked against the listing.
        return parse_terse(terse(), resource)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        json_problem = str(exc)
    terse_text = terse() if terse else ""
    apps = parse_terse(terse_text, resource)
    if apps or not (text or terse_text.strip()):
        return apps
    shown = (text or terse_text).strip()[:300]
    raise LmodOutputError(
        f"Lmod on {resource or 'this machine'} printed output that could not be read as its spider JSON "
        f"({json_problem}) nor as `module -t avail` listing; refusing to show an empty catalog. "
        f"Start of the output: {shown!r}. Run `cybershuttle module avail --resource {resource or 'local'}` "
        "to see it whole, and report the Lmod version"
    )


def _name_of(full: str) -> str:
    return full.rpartition("/")[0] or full


def _parents(version: dict[str, Any]) -> list[str]:
    # Hierarchical sites: a module only visible after loading its parents
    # (e.g. a compiler); newer Lmod writes them as "parent" lists.
    parents = version.get("parent") or version.get("parentAA") or []
    out: list[str] = []
    for p in parents if isinstance(parents, list) else [parents]:
        if isinstance(p, list):
            out.extend(str(x) for x in p if x)
        elif isinstance(p, str) and p and p != "default":
            out.extend(x for x in p.split(":") if x and x != "default")
    return out
