"""Environment Modules (the Tcl `modulecmd`, 4.5 and later): `module avail --json`.

Used where `module` exists but Lmod does not. Environment Modules prints its
listings on stderr, hence `2>&1`. When the JSON cannot be read (versions
before 4.5 have no `--json`), the terse listing is read instead. Only the
parsers are exercised by the tests: Environment Modules cannot be installed
next to the test cluster's Lmod without changing every login shell here.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from .lmod import LmodOutputError, parse_directives, parse_terse
from .records import Application, Version

SOURCE = "envmodules"

GATHER = r"""
if [ -z "${LMOD_DIR:-}" ] && { [ -n "${MODULES_CMD:-}" ] || type module >/dev/null 2>&1; }; then
  echo "@@cs-section envmodules-json"
  module avail --json 2>&1
  echo; echo "@@cs-section envmodules-directives"
  printf '%s\n' "${MODULEPATH:-}" | tr ':' '\n' | while IFS= read -r d; do
    [ -n "$d" ] && [ -d "$d" ] && timeout 30 grep -rHE '^[[:space:]]*(conflict|prereq|module[[:space:]]+load)[[:space:]]' \
      -- "$d" 2>/dev/null
  done
  true
fi
"""
TERSE = "module -t avail 2>&1"


def parse_avail_json(text: str, resource: str | None,
                     directives: dict[str, dict[str, list[str]]] | None = None) -> list[Application]:
    """`{modulepath: {"name/version": {"name", "type", "symbols", "pathname"}}}` -> applications."""
    start = text.find("{")
    data = json.loads(text[start:] if start >= 0 else text)
    if not isinstance(data, dict):
        raise ValueError("`module avail --json` did not print an object")
    found: dict[str, list[Version]] = {}
    for entries in data.values():
        if not isinstance(entries, dict):
            raise ValueError("`module avail --json`: a modulepath entry is not an object")
        for key, entry in entries.items():
            entry = entry if isinstance(entry, dict) else {}
            if entry.get("type") == "directory":
                continue
            full = str(entry.get("name") or key)
            name, _, version = full.rpartition("/") if "/" in full else (full, "", "")
            symbols: list[Any] = entry.get("symbols") or []
            versions = found.setdefault(name, [])
            declared = (directives or {}).get(str(entry.get("pathname") or ""), {})
            if all(v.full != full for v in versions):
                versions.append(Version(version=version, full=full, default="default" in symbols,
                                        path=entry.get("pathname"), conflicts=declared.get("conflicts", []),
                                        depends=declared.get("depends", [])))
    return [Application(name=n, source=SOURCE, versions=found[n], resource=resource)
            for n in sorted(found, key=str.lower)]


def from_sections(sections: dict[str, str], resource: str | None,
                  terse: Callable[[], str] | None = None) -> list[Application] | None:
    """The Environment Modules part of a catalog, or None when there is none."""
    if "envmodules-json" not in sections:
        return None
    text = sections["envmodules-json"].strip()
    try:
        return parse_avail_json(text, resource, parse_directives(sections.get("envmodules-directives", "")))
    except ValueError as exc:
        problem = str(exc)
    terse_text = terse() if terse else ""
    apps = parse_terse(terse_text, resource, SOURCE)
    if apps or not (text or terse_text.strip()):
        return apps
    raise LmodOutputError(
        f"Environment Modules on {resource or 'this machine'} printed output that is neither `module avail "
        f"--json` ({problem}) nor a terse listing; refusing to show an empty catalog. Start of the output: "
        f"{(text or terse_text).strip()[:300]!r}"
    )
