"""The Python packages of a resource's Python environment.

`uv pip list --format json` where uv exists, else the interpreter's own
`importlib.metadata` (what pip reads too, in ~50 ms instead of pip's ~1-2 s
start-up, and present where pip is not, as in many Debian /usr/bin/python3),
else `python -m pip list --format json` (a Python older than 3.8).
"""
from __future__ import annotations

import json
import shlex

from .records import Application, Version

SOURCE = "pip"

_METADATA = ("import json, importlib.metadata as m; print(json.dumps([{'name': d.metadata['Name'], "
             "'version': d.version} for d in m.distributions() if d.metadata['Name']]))")


def gather_command(python: str) -> str:
    py = shlex.quote(python)
    return f"""
echo "@@cs-section pip-json"
{{ command -v uv >/dev/null 2>&1 && uv pip list --python {py} --format json 2>/dev/null; }} \\
  || {py} -c {shlex.quote(_METADATA)} 2>/dev/null \\
  || {py} -m pip list --format json --disable-pip-version-check 2>/dev/null
echo
true
"""


def from_sections(sections: dict[str, str], resource: str | None) -> list[Application] | None:
    text = sections.get("pip-json", "").strip()
    if not text:
        return None
    start = text.find("[")
    packages = json.loads(text[start:] if start >= 0 else text)
    apps: dict[str, Application] = {}
    for pkg in packages:
        name, version = str(pkg.get("name") or ""), str(pkg.get("version") or "")
        if not name or name.lower() in apps:
            continue
        apps[name.lower()] = Application(
            name=name, source=SOURCE, resource=resource,
            versions=[Version(version=version, full=f"{name}=={version}" if version else name, default=True)],
        )
    return [apps[k] for k in sorted(apps)]
