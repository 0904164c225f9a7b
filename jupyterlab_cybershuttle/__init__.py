"""Ships the prebuilt JupyterLab sidebar (built from `src/` into `labextension/`)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # The sidebar is built by the hatch build hook; before it exists there is nothing to serve.
    if not (HERE / "labextension" / "package.json").is_file():
        return []
    return [{"src": "labextension", "dest": "jupyterlab-cybershuttle"}]
