"""Adding one dependency to a cybershuttle.yml without disturbing the rest.

Scientists keep comments, key order, quoting and odd spacing in these files,
so the file is edited as text: PyYAML's node positions say where the list
is, and one line (or one flow list) is inserted there. The result is then
parsed again and must equal the old data plus the one new item; if it does
not (a layout this editor did not foresee), the data is written out whole
instead, which keeps every key but loses comments, and the result says so.
Either way `cybershuttle.setupfile.parse` must accept the file before it
replaces the old one (atomically, keeping its mode).
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .. import setupfile
from ..errors import SetupFileError

Section = Literal["modules", "pip"]
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/=<>~!+]*")
_NEW_FILE = "# Written by `cybershuttle application load`.\n"


@dataclass(frozen=True)
class Edit:
    path: str
    section: str  # the key path the item went to, e.g. "additional_dependencies.modules"
    item: str
    changed: bool  # False: the item was already there
    kept_comments: bool = True


def add(path: str | os.PathLike[str], section: Section, item: str) -> Edit:
    """Add `item` to the `section` list of the setup file at `path` (created when missing)."""
    file = Path(path)
    if not file.exists():
        text = _NEW_FILE
        current = None
    else:
        current = setupfile.load(file)
        text = file.read_text(encoding="utf-8-sig")
    if current is not None and item in (current.modules if section == "modules" else current.pip):
        return Edit(str(file), _where(current, section), item, changed=False)
    _refuse_legacy_modules(current, section)
    data = yaml.safe_load(text) if text.strip() else None
    data = data if isinstance(data, dict) else {}
    keys = _target_keys(data, section)
    expected = _with_item(data, keys, item)
    new_text = _insert(text, keys, item)
    kept = new_text is not None and _loads(new_text) == expected
    if not kept:
        new_text = yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, default_flow_style=False)
    setupfile.parse(new_text, str(file))  # refuse to write a file the reader would refuse
    _replace(file, new_text)
    return Edit(str(file), ".".join(str(k) for k in keys if not isinstance(k, int)), item, True, kept)


def check(path: str | os.PathLike[str], section: Section) -> None:
    """Raise what `add` would raise about the file itself, changing nothing."""
    if Path(path).exists():
        _refuse_legacy_modules(setupfile.load(path), section)


def _refuse_legacy_modules(current: setupfile.SetupFile | None, section: Section) -> None:
    if current is not None and current.layout == "legacy" and section == "modules":
        raise SetupFileError(
            f"{current.path}: this file uses the older `environment:` layout, which has no place for modules; "
            f"move its dependencies to `additional_dependencies: {{modules, conda, pip}}` and run this again"
        )


# -- where the item goes -------------------------------------------------------
def _target_keys(data: dict[str, Any], section: Section) -> list[Any]:
    """Key path of the list to extend (ints index into lists)."""
    env = data.get("environment")
    if section == "pip" and isinstance(env, dict) and "additional_dependencies" not in data:
        deps = env.get("dependencies")
        if isinstance(deps, list):
            for i, entry in enumerate(deps):
                if isinstance(entry, dict) and "pip" in entry:
                    return ["environment", "dependencies", i, "pip"]
            return ["environment", "dependencies", len(deps), "pip"]
    return ["additional_dependencies", section]


def _with_item(data: dict[str, Any], keys: list[Any], item: str) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for key, nxt in zip(keys, keys[1:]):
        if isinstance(node, list) and key == len(node):
            node.append({})
        elif isinstance(node, dict) and not isinstance(node.get(key), (dict, list)):
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if not isinstance(node.get(last), list):
        node[last] = []
    node[last].append(item)
    return out


def _where(current: setupfile.SetupFile, section: Section) -> str:
    return "environment.dependencies.pip" if current.layout == "legacy" and section == "pip" else \
        f"additional_dependencies.{section}"


# -- the text edit -------------------------------------------------------------
def _insert(text: str, keys: list[Any], item: str) -> str | None:
    """`text` with `item` inserted at `keys`, or None when the layout is not one handled here."""
    try:
        root = yaml.compose(text) if text.strip() else None
    except yaml.YAMLError:
        return None
    if root is None or (isinstance(root, yaml.MappingNode) and not root.value and root.flow_style):
        return None if root is not None else _append_block(text, keys, item, indent=0)
    parent: yaml.Node = root
    for depth, key in enumerate(keys):
        child = _child(parent, key)
        if child is None:
            rest = keys[depth:]
            if isinstance(parent, yaml.MappingNode) and not parent.flow_style and isinstance(key, str):
                return _add_key(text, parent, rest, item)
            if isinstance(parent, yaml.SequenceNode) and not parent.flow_style and parent.value:
                return _add_block_item(text, parent, {rest[1]: [item]})
            return None
        parent = child
    return _extend(text, parent, keys[-1], item)


def _child(node: yaml.Node, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _extend(text: str, node: yaml.Node, key: str, item: str) -> str | None:
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _add_block_item(text, node, item)
    if isinstance(node, yaml.SequenceNode) and node.flow_style:
        old = [text[v.start_mark.index:v.end_mark.index] for v in node.value]
        flow = "[" + ", ".join(old + [_scalar(item, flow=True)]) + "]"
        return text[: node.start_mark.index] + flow + text[node.end_mark.index:]
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and node.value in ("", "~", "null"):
        if node.value:
            return text[: node.start_mark.index] + f"[{_scalar(item, flow=True)}]" + text[node.end_mark.index:]
        return None  # `key:` with nothing after it: its position is not reliable; rewrite instead
    return None


def _add_block_item(text: str, seq: yaml.SequenceNode, item: Any) -> str:
    """A new `- item` line under the last one, at the dash column of the list."""
    column = seq.start_mark.column
    pos = _after_line(text, seq.value[-1].end_mark)
    if isinstance(item, dict):
        (key, values), = item.items()
        line = " " * column + f"- {key}:\n" + "".join(" " * (column + 4) + f"- {_scalar(v)}\n" for v in values)
    else:
        line = " " * column + f"- {_scalar(item)}\n"
    return _splice(text, pos, line)


def _add_key(text: str, mapping: yaml.MappingNode, keys: list[Any], item: str) -> str | None:
    """New `key:` lines (nested as needed) at the end of a block mapping."""
    if not mapping.value:
        return None
    column = mapping.value[0][0].start_mark.column
    pos = _after_line(text, mapping.value[-1][1].end_mark)
    return _splice(text, pos, _block(keys, item, column))


def _append_block(text: str, keys: list[Any], item: str, indent: int) -> str:
    sep = "" if not text or text.endswith("\n") else "\n"
    return text + sep + _block(keys, item, indent)


def _block(keys: list[Any], item: str, column: int) -> str:
    lines = []
    for depth, key in enumerate(keys):
        lines.append(" " * (column + 2 * depth) + f"{key}:")
    lines.append(" " * (column + 2 * len(keys)) + f"- {_scalar(item)}")
    return "\n".join(lines) + "\n"


def _after_line(text: str, mark: yaml.Mark) -> int:
    """Index of the start of the line after `mark` (a mark at column 0 is already there)."""
    if mark.column == 0:
        return mark.index
    newline = text.find("\n", mark.index)
    return len(text) if newline < 0 else newline + 1


def _splice(text: str, pos: int, insert: str) -> str:
    if pos >= len(text) and text and not text.endswith("\n"):
        return text + "\n" + insert
    return text[:pos] + insert + text[pos:]


def _scalar(item: str, flow: bool = False) -> str:
    plain = _PLAIN.fullmatch(item) and _loads(item) == item
    if plain and not (flow and any(c in item for c in ",[]{}")):
        return item
    return json.dumps(item)  # a JSON string is a valid double-quoted YAML scalar


def _loads(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _replace(file: Path, text: str) -> None:
    # Through an exclusive partial file, renamed: a setup file in a shared project directory is never
    # written through a name someone planted there (the old fixed temporary name could be).
    from ..storage.partial import write_whole

    mode = file.stat().st_mode & 0o777 if file.exists() and not file.is_symlink() else 0o644
    write_whole(str(file), text.encode("utf-8"), mode)
