"""The notebook side of a template: its `parameters` cell, cell markings and named outputs.

Conventions (all plain notebook metadata, so JupyterLab and papermill honour them):

- the `parameters` cell is the code cell tagged `parameters` (papermill's);
- read-only cells carry JupyterLab's `editable: false` / `deletable: false`;
- pre-run cells are tagged `skip-execution` (nbclient skips them) and marked
  `cybershuttle.pre_run`; a run keeps their stored outputs;
- a named output is a code cell tagged `output` (named after the variable its
  last line shows, e.g. a final line `loss`) or `output:NAME`; its result —
  the cell's `execute_result`, else its printed text — is the output's value.
  Files a run writes into its working directory are outputs too, named by
  their path in that directory.
"""
from __future__ import annotations

import ast
import copy
import json
from typing import TYPE_CHECKING, Any

from ..errors import CybershuttleError
from .spec import Param, infer

if TYPE_CHECKING:  # nbformat costs ~1 s to import (jsonschema): only verbs that read notebooks pay it
    import nbformat

PARAMETERS_TAG = "parameters"
OUTPUT_TAG = "output"
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag


class NotebookError(CybershuttleError):
    """A notebook that cannot serve as a template."""


def read(text: str, where: str) -> nbformat.NotebookNode:
    import nbformat

    try:
        return nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for bad input
        raise NotebookError(f"{where} is not a readable notebook: {exc}") from exc


def parameters_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the cell tagged `parameters`, or None."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return i
    return None


def inferred_params(nb: nbformat.NotebookNode, where: str) -> list[Param]:
    index = parameters_cell(nb)
    if index is None:
        raise NotebookError(f"{where} has no cell tagged 'parameters': tag the cell holding the defaults "
                            "(JupyterLab: Property Inspector -> Cell Tags) or give --input_file_format SPEC")
    return infer(nb.cells[index].source, f"{where}, cell {index} (parameters)")


def parameters_source(params: list[Param]) -> str:
    """The code of a generated parameters cell: one `name = default  # help` line each."""
    lines = []
    for p in params:
        note = ("required; " if p.required or p.default is None else "") + (p.help or p.type)
        lines.append(f"{p.name} = {p.default!r}  # {note}")
    return "\n".join(lines)


def with_parameters_cell(nb: nbformat.NotebookNode, params: list[Param]) -> nbformat.NotebookNode:
    """`nb` with a parameters cell generated from `params` (replacing one it had)."""
    import nbformat

    out = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(parameters_source(params),
                                     metadata={"tags": [PARAMETERS_TAG], "editable": True, "deletable": False})
    index = parameters_cell(out)
    if index is not None:
        out.cells[index] = cell
    else:
        first_code = next((i for i, c in enumerate(out.cells) if c.cell_type == "code"), len(out.cells))
        out.cells.insert(first_code, cell)
    return out


def mark_cells(nb: nbformat.NotebookNode, cells: dict[str, Any], *, default_read_only: bool) -> nbformat.NotebookNode:
    """Apply the spec's cell markings; clear outputs of cells that will run again.

    `cells` holds lists of indices into `nb` (or "all") for read_only,
    editable, pre_run and drop, and one index for parameters. The parameters
    cell always stays editable, is never pre-run and never dropped.
    """
    out = copy.deepcopy(nb)
    count = len(out.cells)

    def pick(key: str) -> set[int]:
        value = cells.get(key)
        if value == "all":
            return set(range(count))
        chosen = set(value or [])
        bad = sorted(i for i in chosen if not 0 <= i < count)
        if bad:
            raise NotebookError(f"cells.{key} names cell(s) {bad} but the notebook has cells 0-{count - 1}")
        return chosen

    if "parameters" in cells:  # a recorded cell that set the values becomes the parameters cell
        index = cells["parameters"]
        if not 0 <= index < count or out.cells[index].cell_type != "code":
            raise NotebookError(f"cells.parameters = {index} is not a code cell of the notebook (cells 0-{count - 1})")
        for cell in out.cells:
            if PARAMETERS_TAG in cell.metadata.get("tags", []):
                cell.metadata["tags"].remove(PARAMETERS_TAG)
        out.cells[index].metadata.setdefault("tags", []).append(PARAMETERS_TAG)
    read_only = pick("read_only") if "read_only" in cells else (set(range(count)) if default_read_only else set())
    read_only -= pick("editable")
    pre_run = pick("pre_run")
    params_at = parameters_cell(out)
    for i, cell in enumerate(out.cells):
        if i == params_at:
            cell.metadata["editable"], cell.metadata["deletable"] = True, False
            continue
        if i in read_only:
            cell.metadata["editable"] = False
            cell.metadata["deletable"] = False
        elif "editable" in cells and i in pick("editable"):
            cell.metadata["editable"] = True
            cell.metadata["deletable"] = True
        if cell.cell_type != "code":
            continue
        if i in pre_run:
            cell.metadata.setdefault("cybershuttle", {})["pre_run"] = True
            tags = cell.metadata.setdefault("tags", [])
            if SKIP_TAG not in tags:
                tags.append(SKIP_TAG)
        else:
            cell.outputs = []
            cell.execution_count = None
    drop = pick("drop") - ({params_at} if params_at is not None else set())
    out.cells = [c for i, c in enumerate(out.cells) if i not in drop]
    return out


def reassignment_warnings(nb: nbformat.NotebookNode, names: list[str]) -> list[str]:
    """One line per later cell that assigns a parameter: injected values would be overwritten there."""
    start = parameters_cell(nb)
    if start is None:
        return []
    wanted = set(names)
    warnings = []
    for i, cell in enumerate(nb.cells[start + 1:], start=start + 1):
        if cell.cell_type != "code" or cell.metadata.get("cybershuttle", {}).get("pre_run"):
            continue
        for name, line in _assigned_names(cell.source):
            if name in wanted:
                label = f"cell {i}" + (f" (id {cell['id']})" if cell.get("id") else "")
                warnings.append(f"{label} re-assigns parameter {name!r} (line {line}): a value given to a run "
                                "would be silently overwritten there; rename the variable or move the assignment "
                                "into the parameters cell")
    return warnings


def named_outputs(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The values of the cells tagged `output` / `output:NAME` of an executed notebook."""
    values: dict[str, Any] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        names = [t.split(":", 1)[1] for t in tags if t.startswith(OUTPUT_TAG + ":")]
        if OUTPUT_TAG in tags:
            names.append(_shown_name(cell.source) or f"cell{i}")
        for name in names:
            values[name] = _cell_value(cell)
    return values


def restore_pre_run(executed: nbformat.NotebookNode, template: nbformat.NotebookNode) -> None:
    """Put the stored outputs of pre-run cells back (papermill clears every output at start)."""
    stored = {c.get("id"): c.outputs for c in template.cells
              if c.cell_type == "code" and c.metadata.get("cybershuttle", {}).get("pre_run")}
    for cell in executed.cells:
        if cell.cell_type == "code" and cell.get("id") in stored:
            cell.outputs = copy.deepcopy(stored[cell.get("id")])


def executed_error(nb: nbformat.NotebookNode) -> str | None:
    """'cell N: Name: message' of the first error, N counting the template's own cells."""
    added = {"injected-parameters", "papermill-error-cell-tag", "cybershuttle-setup"}
    own = [c for c in nb.cells if not added & set(c.metadata.get("tags", []))]
    for i, cell in enumerate(own):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                return f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
    return None


# -- helpers ---------------------------------------------------------------
def _python(source: str) -> ast.Module | None:
    """A cell's source as Python, with IPython magics and shell escapes turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def _assigned_names(source: str) -> list[tuple[str, int]]:
    """Names bound at a cell's top level (not inside functions or classes), with their lines."""
    tree = _python(source)
    if tree is None:
        return []
    found: list[tuple[str, int]] = []

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node: ast.Name) -> None:
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                found.append((node.id, node.lineno))

        def visit_alias(self, node: ast.alias) -> None:
            bound = node.asname or node.name.split(".")[0]
            found.append((bound, getattr(node, "lineno", 0)))

        def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
            found.append((node.name, node.lineno))  # its body binds locals only

        visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

        def visit_ClassDef(self, node: ast.ClassDef) -> None:
            found.append((node.name, node.lineno))

        def visit_Lambda(self, node: ast.Lambda) -> None:
            return

        def _comprehension(self, node: ast.AST) -> None:
            return  # comprehension variables do not leak in Python 3

        visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    Visitor().visit(tree)
    return found


def _shown_name(source: str) -> str | None:
    tree = _python(source)
    if tree and tree.body and isinstance(tree.body[-1], ast.Expr) and isinstance(tree.body[-1].value, ast.Name):
        return tree.body[-1].value.id
    return None


def _cell_value(cell: nbformat.NotebookNode) -> Any:
    results = [o for o in cell.get("outputs", []) if o.get("output_type") in ("execute_result", "display_data")]
    if results:
        data = results[-1].get("data", {})
        if "application/json" in data:
            return data["application/json"]
        text = data.get("text/plain")
        if text is not None:
            text = text if isinstance(text, str) else "".join(text)
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
    streams = [o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
               and o.get("name") == "stdout"]
    text = "".join(t if isinstance(t, str) else "".join(t) for t in streams).strip()
    if text:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return None
