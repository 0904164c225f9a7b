"""A template's runs as one table: one row per run (a sweep's point is a run).

Columns: `run`, `sweep`, `point`, then one per parameter, `state`, one per
named output (a cell tagged `output`; a name that is also a parameter's gets
`output.` in front), `run_time_s` and `error`. `results()` gives a pandas
DataFrame when pandas is installed, else the rows as dicts; `write()` saves
them as CSV, JSON or Parquet (Parquet needs pyarrow).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError, UsageError
from .run import output_value, runs

FORMATS = ("csv", "json", "parquet")
_FIXED = ("run", "sweep", "point", "state", "run_time_s", "error")


def rows(name: str, sweep: str | None = None) -> list[dict[str, Any]]:
    """One dict per run of template `name` (of one sweep, when given), oldest first, states refreshed."""
    records = [r for r in runs(name) if sweep is None or r.sweep == sweep]
    params = _ordered(k for r in records for k in r.parameters)
    outputs = _ordered(k for r in records for k in r.outputs)
    taken = set(_FIXED) | set(params)
    out_col = {k: f"output.{k}" if k in taken else k for k in outputs}
    table = []
    for r in sorted(records, key=lambda r: (r.sweep or "", r.point if r.point is not None else -1, r.started)):
        row: dict[str, Any] = {"run": r.id, "sweep": r.sweep, "point": r.point}
        row.update({k: r.parameters.get(k) for k in params})
        row["state"] = r.status
        row.update({out_col[k]: output_value(r, k) if k in r.outputs else None for k in outputs})
        row["run_time_s"] = r.run_time
        row["error"] = r.error
        table.append(row)
    return table


def results(name: str, sweep: str | None = None) -> Any:
    """The runs of `name` as a pandas DataFrame (one row per run), or a list of dicts without pandas."""
    table = rows(name, sweep)
    try:
        import pandas
    except ImportError:
        return table
    return pandas.DataFrame(table, columns=list(table[0]) if table else list(_FIXED))


def write(name: str, fmt: str, to: str | Path | None = None, sweep: str | None = None) -> tuple[Path, int]:
    """Write the table to `to` (default: ./<template>-results.<fmt>); returns (path, rows)."""
    if fmt not in FORMATS:
        raise UsageError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet
        except ImportError:
            raise CybershuttleError("--format parquet needs pyarrow, which is not installed here: "
                                    "`pip install pyarrow`, or use --format csv or json") from None
    table = rows(name, sweep)
    path = Path(to or f"{name}-results.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(table, indent=2, default=str, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else list(_FIXED))
        writer.writeheader()
        writer.writerows({k: _flat(v) for k, v in row.items()} for row in table)
        path.write_text(buf.getvalue())
    else:
        columns = list(table[0]) if table else list(_FIXED)
        # A column must have one type: values that are not plain scalars are stored as their JSON text.
        data = {c: _column([row.get(c) for row in table]) for c in columns}
        pyarrow.parquet.write_table(pyarrow.table(data), path)
    return path, len(table)


def _ordered(keys: Any) -> list[str]:
    return list(dict.fromkeys(keys))


def _flat(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else value


def _column(values: list[Any]) -> list[Any]:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int} or kinds <= {float, int} or kinds <= {str} or kinds <= {bool}:
        return [float(v) if kinds == {float, int} and v is not None else v for v in values]
    return [None if v is None else json.dumps(v, default=str) for v in values]
