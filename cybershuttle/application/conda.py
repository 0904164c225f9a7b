"""conda environments on a resource (`micromamba`, `mamba` or `conda env list --json`).

Untested against a real conda: none can be installed on the machines these
tests run on. The JSON read is `{"envs": [prefix, ...]}`, which conda,
mamba and micromamba all print.
"""
from __future__ import annotations

import json
import posixpath

from .records import Application, Version

SOURCE = "conda"

GATHER = r"""
for c in micromamba mamba conda; do
  if command -v "$c" >/dev/null 2>&1; then
    echo "@@cs-section conda-json"; "$c" env list --json 2>/dev/null; echo; break
  fi
done
true
"""


def from_sections(sections: dict[str, str], resource: str | None) -> list[Application] | None:
    text = sections.get("conda-json", "").strip()
    if not text:
        return None
    start = text.find("{")
    envs = json.loads(text[start:] if start >= 0 else text).get("envs", [])
    apps = []
    for prefix in envs:
        prefix = str(prefix)
        # The root prefix is the one environment not under an `envs/` directory.
        name = posixpath.basename(prefix.rstrip("/")) if "/envs/" in prefix else "base"
        apps.append(Application(name=name, source=SOURCE, resource=resource,
                                description=f"conda environment at {prefix}",
                                versions=[Version(version="", full=name, default=True, path=prefix)]))
    return apps
