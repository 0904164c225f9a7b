"""Reading a model's inputs: a folder, one file, or FASTA sequences.

Every form becomes a list of `Item(id, value)` in a stable order:

    --input_folder DIR     one input per regular file (sorted by name, hidden files
                           skipped): `.npy` -> array, `.json` -> JSON value, else text
    --input FILE           many inputs in one file: `.jsonl` one JSON value a line,
                           `.npy` one row each, `.json` a list, else one text a line
    --input_sequence FILE  one input per FASTA record; the value is the sequence,
                           the id the record's first word
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError, UsageError


@dataclass(frozen=True)
class Item:
    id: str
    value: Any


def read(*, input_folder: str | None = None, input: str | None = None,
         input_sequence: str | None = None) -> tuple[list[Item], str]:
    """The inputs and their form ("folder", "file" or "fasta"); exactly one source must be given."""
    given = [(k, v) for k, v in (("input_folder", input_folder), ("input", input),
                                 ("input_sequence", input_sequence)) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --input_folder DIR, --input FILE or --input_sequence FILE.fasta")
    key, value = given[0]
    path = Path(value).expanduser()
    if key == "input_folder":
        if not path.is_dir():
            raise CybershuttleError(f"input folder {value!r} is not a directory")
        items = [Item(p.name, _read_one(p)) for p in sorted(path.iterdir())
                 if p.is_file() and not p.name.startswith(".")]
        form = "folder"
    else:
        if not path.is_file():
            raise CybershuttleError(f"input file {value!r} does not exist")
        items = read_fasta(path.read_text()) if key == "input_sequence" else _read_many(path)
        form = "fasta" if key == "input_sequence" else "file"
    if not items:
        raise CybershuttleError(f"{value!r} holds no inputs")
    return items, form


def read_fasta(text: str) -> list[Item]:
    items: list[Item] = []
    header: str | None = None
    chunks: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                items.append(Item(header, "".join(chunks)))
            header = line[1:].split()[0] if line[1:].split() else f"seq{len(items) + 1}"
            chunks = []
        elif line and not line.startswith(";"):
            if header is None:
                raise CybershuttleError("the FASTA input has sequence lines before its first '>' header")
            chunks.append(line)
    if header is not None:
        items.append(Item(header, "".join(chunks)))
    return items


def write_fasta(items: list[Item]) -> str:
    return "".join(f">{i.id}\n{i.value}\n" for i in items)


def _read_one(path: Path) -> Any:
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path.read_text().strip()


def _read_many(path: Path) -> list[Item]:
    if path.suffix == ".npy":
        import numpy as np

        rows = np.load(path, allow_pickle=False)
        return [Item(str(i), row) for i, row in enumerate(rows)]
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise CybershuttleError(f"{path} must hold a JSON list of inputs")
        return [Item(str(i), v) for i, v in enumerate(data)]
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if path.suffix == ".jsonl":
        items = []
        for number, line in enumerate(lines):
            try:
                items.append(Item(str(number), json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CybershuttleError(f"{path}: input {number + 1} is not JSON ({exc.msg})") from exc
        return items
    return [Item(str(i), ln) for i, ln in enumerate(lines)]
