"""A template's input spec: the parameters a run may set, and checking inputs against it.

A spec file is TOML or YAML with a `parameters` table (or list)::

    [parameters.learning_rate]
    type = "float"          # int | float | str | bool | list
    default = 0.01
    min = 0.0
    max = 1.0
    help = "step size of the optimiser"

    [parameters.neurons]
    type = "int"
    choices = [100, 120]
    required = true         # a parameter without a default is required too

    [cells]                 # optional, for templates made from a session
    read_only = [1, 2]      # cell indices (0-based) of the source notebook, or "all"
    editable = [3]          # (a session's cells are read-only unless listed here)
    pre_run = [0]           # cells not run again: their stored outputs are kept
    parameters = 2          # this recorded cell becomes the generated parameters cell
    drop = [1]              # cells left out of the template (e.g. the one starting the recording)

Without a spec the parameters are inferred from the notebook's `parameters`
cell (papermill's convention): each `name = literal  # help` line becomes a
parameter whose type and default come from the literal.
"""
from __future__ import annotations

import ast
import io
import json
import keyword
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError

TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
                                      "list": (list,)}
_FIELDS = ("name", "type", "default", "help", "min", "max", "choices", "required")


class SpecError(CybershuttleError):
    """A spec file that cannot be read or describes a parameter wrongly."""


class InputError(CybershuttleError):
    """Input values that do not fit the template's spec; nothing was run."""


@dataclass(frozen=True)
class Param:
    """One parameter of a template."""

    name: str
    type: str = "str"
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Spec:
    """The parameters plus the optional cell markings of a spec file."""

    params: list[Param]
    cells: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [p.name for p in self.params]


# -- reading ---------------------------------------------------------------
def read_document(path: str | Path, what: str) -> Any:
    """A TOML, YAML or JSON file as Python data; errors name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {what} {p}: {exc.strerror}") from exc
    if p.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{p}: not valid TOML: {exc}") from exc
    if p.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{p}: not valid JSON: {exc}") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SpecError(f"{p}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc


def load(path: str | Path) -> Spec:
    """Read and check a spec file (.toml, .yml/.yaml or .json)."""
    doc = read_document(path, "input spec")
    if not isinstance(doc, dict) or "parameters" not in doc:
        raise SpecError(f"{path}: expected a top-level 'parameters' table (name -> type, default, help, ...)")
    raw = doc["parameters"]
    items: list[dict[str, Any]] = []
    if isinstance(raw, dict):
        for name, body in raw.items():
            if not isinstance(body, dict):
                raise SpecError(f"{path}: parameters.{name} must be a table with type, default, help, ...")
            items.append({"name": name, **body})
    elif isinstance(raw, list):
        for i, body in enumerate(raw):
            if not isinstance(body, dict) or "name" not in body:
                raise SpecError(f"{path}: parameters[{i}] must be a table with at least a name")
            items.append(dict(body))
    else:
        raise SpecError(f"{path}: 'parameters' must be a table or a list of tables")
    params = [_param(item, str(path)) for item in items]
    _no_duplicates(params, str(path))
    cells = doc.get("cells") or {}
    if not isinstance(cells, dict) or set(cells) - {"read_only", "editable", "pre_run", "drop", "parameters"}:
        raise SpecError(f"{path}: 'cells' may hold read_only, editable, pre_run, drop (lists of cell indices or "
                        "\"all\") and parameters (one cell index)")
    for key, value in cells.items():
        if key == "parameters":
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpecError(f"{path}: cells.parameters must be one cell index (0-based)")
        elif value != "all" and not (isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                                   for i in value)):
            raise SpecError(f"{path}: cells.{key} must be a list of cell indices (0-based) or \"all\"")
    return Spec(params, dict(cells))


def from_dicts(items: list[dict[str, Any]]) -> list[Param]:
    """Params from their stored dict form (the catalog's)."""
    return [Param(**{k: v for k, v in item.items() if k in _FIELDS}) for item in items]


def infer(source: str, where: str = "the parameters cell") -> list[Param]:
    """Parameters from the source of a `parameters` cell: `name = literal  # help`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise SpecError(f"{where} is not valid Python (line {exc.lineno}): {exc.msg}") from exc
    comments = _line_comments(source)
    params: list[Param] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except ValueError:
            raise SpecError(f"{where}, line {node.lineno}: {target} = {ast.unparse(value)} is not a literal; "
                            "give a spec file (--input_file_format) or use a plain value") from None
        params = [p for p in params if p.name != target]
        params.append(Param(name=target, type=_type_of(default), default=default,
                            help=comments.get(node.lineno, ""), required=default is None))
    return params


# -- checking inputs -------------------------------------------------------
def validate(params: list[Param], inputs: dict[str, Any], *, where: str = "the inputs") -> dict[str, Any]:
    """The full set of values (defaults filled in), or InputError naming every problem at once."""
    values, problems = check(params, inputs)
    if problems:
        raise InputError(f"{where} do not fit the template; nothing was run: " + "; ".join(problems))
    return values


def check(params: list[Param], inputs: Any) -> tuple[dict[str, Any], list[str]]:
    """The values (defaults filled in) and one line per problem of `inputs`."""
    if not isinstance(inputs, dict):
        return {}, [f"expected a mapping of parameter names to values, got {type(inputs).__name__}"]
    by_name = {p.name: p for p in params}
    problems: list[str] = []
    unknown = [k for k in inputs if k not in by_name]
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(map(repr, unknown))} (the template takes "
                        f"{', '.join(by_name) or 'no parameters'})")
    values: dict[str, Any] = {}
    for p in params:
        if p.name not in inputs:
            if p.required or p.default is None:
                problems.append(f"{p.name!r} is required ({p.type}{': ' + p.help if p.help else ''})")
            else:
                values[p.name] = p.default
            continue
        value = inputs[p.name]
        problem = _check_value(p, value)
        if problem:
            problems.append(problem)
        else:
            values[p.name] = float(value) if p.type == "float" else value
    return values, problems


def load_inputs(path: str | Path) -> dict[str, Any]:
    """An input file (YAML, TOML or JSON): a mapping of parameter names to values."""
    doc = read_document(path, "input file")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping of parameter names to values; nothing was run")
    return doc


# -- helpers ---------------------------------------------------------------
def _param(item: dict[str, Any], where: str) -> Param:
    name = item.get("name")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise SpecError(f"{where}: parameter {name!r}: unknown key(s) {', '.join(unknown)} (use {', '.join(_FIELDS[1:])})")
    check_name(name, where)
    ptype = item.get("type") or (_type_of(item["default"]) if item.get("default") is not None else "str")
    if ptype not in TYPES:
        raise SpecError(f"{where}: parameter {name!r}: type must be one of {', '.join(TYPES)}, got {ptype!r}")
    for bound in ("min", "max"):
        b = item.get(bound)
        if b is not None and (ptype not in ("int", "float") or isinstance(b, bool) or not isinstance(b, (int, float))):
            raise SpecError(f"{where}: parameter {name!r}: {bound} needs a number and an int or float parameter")
    choices = item.get("choices")
    if choices is not None and (not isinstance(choices, list) or not choices):
        raise SpecError(f"{where}: parameter {name!r}: choices must be a non-empty list")
    required = item.get("required", False)
    if not isinstance(required, bool):
        raise SpecError(f"{where}: parameter {name!r}: required must be true or false")
    param = Param(name=name, type=ptype, default=item.get("default"), help=str(item.get("help") or ""),
                  min=item.get("min"), max=item.get("max"), choices=choices, required=required)
    for c in choices or []:
        problem = _check_value(_without_choices(param), c)
        if problem:
            raise SpecError(f"{where}: parameter {name!r}: choice {c!r}: {problem}")
    if param.default is not None:
        problem = _check_value(param, param.default)
        if problem:
            raise SpecError(f"{where}: parameter {name!r}: its default does not fit: {problem}")
    return param


def _without_choices(p: Param) -> Param:
    return Param(p.name, p.type, None, p.help, p.min, p.max, None, p.required)


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SpecError(f"{where}: parameter name {name!r} must be a Python identifier (letters, digits, '_'; "
                        "non-ASCII letters such as λ are fine)")
    return name


def _check_value(p: Param, value: Any) -> str | None:
    allowed = TYPES[p.type]
    if isinstance(value, bool) and p.type != "bool" or not isinstance(value, allowed):
        return f"{p.name!r} must be {p.type}, got {type(value).__name__} {value!r}"
    if p.min is not None and value < p.min:
        return f"{p.name!r} = {value!r} is below its minimum {p.min!r}"
    if p.max is not None and value > p.max:
        return f"{p.name!r} = {value!r} is above its maximum {p.max!r}"
    if p.choices is not None and value not in p.choices:
        return f"{p.name!r} = {value!r} is not one of {', '.join(map(repr, p.choices))}"
    return None


def _type_of(value: Any) -> str:
    for name in ("bool", "int", "float", "str", "list"):
        if type(value) is TYPES[name][0]:
            return name
    return "str"


def _no_duplicates(params: list[Param], where: str) -> None:
    seen: set[str] = set()
    for p in params:
        if p.name in seen:
            raise SpecError(f"{where}: parameter {p.name!r} is declared twice")
        seen.add(p.name)


def _line_comments(source: str) -> dict[int, str]:
    """Trailing `# comment` text by line number (the help of a parameter)."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return out
