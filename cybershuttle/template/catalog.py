"""Templates in the catalog: made from a notebook or a recorded session, listed, removed.

A template entry holds the prepared notebook itself (so a public template in
the site catalog is complete for every user), its spec and the warnings found
when it was added.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import names
from ..errors import CybershuttleError
from ..registry import catalog
from . import notebook as nbtools
from . import spec as spec_file

if TYPE_CHECKING:
    import nbformat

KIND = "template"


@dataclass(frozen=True)
class Template:
    """One template (the notebook text is in `notebook`, left out of `to_dict`)."""

    name: str
    spec: list[dict[str, Any]]
    source: dict[str, str]
    notebook: str = field(repr=False, default="")
    warnings: list[str] = field(default_factory=list)
    created: float = 0.0
    scope: str = "private"

    @property
    def params(self) -> list[spec_file.Param]:
        return spec_file.from_dicts(self.spec)

    def nb(self) -> nbformat.NotebookNode:
        import nbformat

        return nbformat.reads(self.notebook, as_version=4)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notebook")
        return data


def add(name: str, *, session: str | None = None, notebook: str | None = None, spec: str | None = None,
        public: bool = False, replace: bool = False) -> Template:
    """Make template `name` from a notebook with a `parameters` cell, or from a recorded session.

    `spec` is a TOML/YAML input spec; without it the parameters are inferred
    from the notebook's `parameters` cell (a session needs a spec). Warnings —
    a later cell re-assigning a parameter — are kept on the template and
    returned with it.
    """
    import nbformat

    names.validate(name, "template name")
    if (session is None) == (notebook is None):
        raise CybershuttleError("give exactly one of --session S or --notebook NB.ipynb to make a template from")
    parsed = spec_file.load(spec) if spec else None
    if notebook is not None:
        path = Path(notebook)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CybershuttleError(f"cannot read notebook {path}: {exc.strerror}") from exc
        nb = _read(text, str(path))
        # Indices in the spec's `cells` refer to the file's own cells, so mark before inserting.
        nb = nbtools.mark_cells(nb, parsed.cells if parsed else {}, default_read_only=False)
        params = parsed.params if parsed else nbtools.inferred_params(nb, str(path))
        if nbtools.parameters_cell(nb) is None or (parsed and "parameters" in parsed.cells):
            nb = nbtools.with_parameters_cell(nb, params)
        source = {"kind": "notebook", "from": str(path.resolve())}
    else:
        if parsed is None:
            raise CybershuttleError("a template made from a session needs an input spec: add "
                                    "--input_file_format spec.toml (parameters with type, default, help)")
        from .. import session as session_mod

        text = session_mod.export(session, format="ipynb")
        nb = _read(text, f"the notebook exported from session {session!r}")
        # Indices in the spec's `cells` refer to the session's own cells, so mark before inserting.
        nb = nbtools.mark_cells(nb, parsed.cells, default_read_only=True)
        nb = nbtools.with_parameters_cell(nb, parsed.params)
        params = parsed.params
        source = {"kind": "session", "from": session}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    warnings = nbtools.reassignment_warnings(nb, [p.name for p in params])
    tmpl = Template(name=name, spec=[p.to_dict() for p in params], source=source, notebook=nbformat.writes(nb),
                    warnings=warnings, created=time.time(), scope="public" if public else "private")
    catalog().add(KIND, name, _to_data(tmpl), public=public, replace=replace)
    return tmpl


def get(name: str) -> Template:
    entry = catalog().get(KIND, name)
    return _from_data(entry.name, entry.scope, entry.data)


def list_all(search: str | None = None) -> list[Template]:
    return [_from_data(e.name, e.scope, e.data) for e in catalog().list(KIND, search)]


def remove(name: str) -> Template:
    """Remove a template; its recorded runs stay listed under its name until removed with it."""
    from .run import forget

    tmpl = get(name)
    catalog().remove(KIND, name)
    forget(name)
    return tmpl


# -- helpers ---------------------------------------------------------------


def _read(text: str, where: str) -> nbformat.NotebookNode:
    nb = nbtools.read(text, where)
    for cell in nb.cells:  # nbformat >= 4.5 wants ids; old notebooks get them here
        if not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:8]
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    return nb


def _to_data(tmpl: Template) -> dict[str, Any]:
    data = asdict(tmpl)
    data.pop("name")
    data.pop("scope")
    return data


def _from_data(name: str, scope: str, data: dict[str, Any]) -> Template:
    known = {"spec", "source", "notebook", "warnings", "created"}
    return Template(name=name, scope=scope, **{k: v for k, v in data.items() if k in known})
