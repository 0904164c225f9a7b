"""Sessions: recorded work that can be listed, replayed, exported and restored.

Three kinds, one store (see `store`):

* shell: `cybershuttle session start NAME` records a bash/zsh subshell on a pty
  (`shell`): every command line, its directory, exit code and time;
* python: `cybershuttle.session.start("session1")` records the cybershuttle
  calls that follow and, in IPython, each cell with the runtime it ran on
  (`python`);
* notebook: notebooks whose saves the Jupyter server snapshots (`notebook`).

    from cybershuttle import session
    session.start("session1")
    ...                                # runtime.request(...), cells, ...
    session.stop()
    print(session.export("session1", format="ipynb"))
    session.load("analysis1", dry_run=True)

Secrets are redacted before anything is written (`redact`).
"""
from __future__ import annotations

import json
import shlex
import time
from typing import Any, Callable

from . import notebook, python, redact, shell, store
from .notebook import Snapshot, attach, diff, post_save_hook, snapshots
from .shell import LoadResult, Step
from .store import Session, SessionError

__all__ = ["Session", "SessionError", "Snapshot", "LoadResult", "Step", "start", "stop", "list_all", "get", "load",
           "remove", "export", "snapshots", "diff", "restore", "attach", "post_save_hook", "record_shell"]

FORMATS = ("sh", "ipynb")


def start(name: str = "session1", *, notebook: str | None = None, state: bool = False) -> Session:
    """Record this process's cybershuttle calls (and IPython cells) into session `name`;
    `state`: the notebook's snapshots also checkpoint its runtimes' namespaces."""
    return python.start(name, notebook=notebook, state=state)


def stop(name: str | None = None) -> Session | None:
    """Stop recording: this process's Python session, or the shell session `name`.

    Without a name and with nothing recording here, nothing is stopped (None):
    a notebook must not end a terminal's recording by accident.
    """
    if python.current() is not None and (name is None or name == python.current()):
        return python.stop()
    return shell.stop(name) if name else None


def record_shell(name: str, *, shell_name: str | None = None) -> int:
    """Open a recording subshell (the CLI's `session start`); returns its exit status."""
    return shell.record(name, shell=shell_name)


def list_all(search: str | None = None) -> list[Session]:
    return store.list_all(search)


def get(name: str) -> Session:
    return store.get(name)


def remove(name: str) -> Session:
    return store.remove(name)


def load(name: str, *, dry_run: bool = False, from_step: int = 0, continue_on_error: bool = False,
         directory: str | None = None, overwrite: bool = False, restore_state: bool = False,
         echo: Callable[[str], None] | None = None) -> LoadResult:
    """Replay session `name`.

    Shell sessions run their commands again in their recorded directories;
    Python sessions make their recorded cybershuttle calls again; notebook
    sessions restore their notebooks (into `directory`, default where they
    were) and re-request their runtimes and mounts. Steps count from 1;
    `from_step` skips the ones before. The first failure stops the replay
    unless `continue_on_error`. `restore_state`: notebook sessions' runtimes start from
    the namespaces their last snapshot checkpointed.
    """
    session = store.get(name)
    if session.kind == "shell":
        return shell.replay(name, dry_run=dry_run, from_step=from_step, continue_on_error=continue_on_error, echo=echo)
    if session.kind == "notebook" and notebook.latest(name):
        report = notebook.restore(name, directory, dry_run=dry_run, overwrite=overwrite, echo=echo,
                                  restore_state=restore_state)
        return LoadResult(session=name, dry_run=dry_run, restored=report)
    result = LoadResult(session=name, dry_run=dry_run)
    for item in python.replay_calls(name, dry_run=dry_run, from_step=from_step, continue_on_error=continue_on_error,
                                    echo=echo):
        step = Step(number=item["number"], command=item["call"], cwd=session.cwd or "",
                    exit_code=None if item["ok"] is None else (0 if item["ok"] else 1),
                    redacted=redact.MARK in item["call"])
        result.steps.append(step)
        if item["ok"] is False and result.failed is None:
            result.failed = step
    return result


def restore(name: str, directory: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Restore a notebook session's notebooks into `directory` and re-request its runtimes and mounts."""
    return notebook.restore(name, directory, **kwargs)


def export(name: str, format: str = "ipynb") -> str:
    """Session `name` as a shell script (`sh`) or notebook JSON text (`ipynb`)."""
    if format not in FORMATS:
        raise SessionError(f"unknown export format {format!r}: use sh or ipynb")
    session = store.get(name)
    if session.kind == "shell":
        return shell.export_sh(name) if format == "sh" else _shell_notebook(session)
    if session.kind == "notebook" and notebook.latest(name) and format == "ipynb":
        return notebook.export_ipynb(name)
    if format == "sh":
        return _python_script(session)
    return _python_notebook(session)


# -- export helpers ------------------------------------------------------------------
def _new_notebook(session: Session, cells: list[Any]) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.created))
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Session `{session.name}`\n\nRecorded {when} ({session.kind} session)."),
                *cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["cybershuttle"] = {"session": session.name, "kind": session.kind}
    for i, cell in enumerate(nb.cells):
        cell.id = f"cs-{i:04d}"  # stable ids: exporting twice gives the same text
    return nbformat.writes(nb)


def _shell_notebook(session: Session) -> str:
    import nbformat

    cells = []
    for step in shell.steps(session.name):
        cell = nbformat.v4.new_code_cell(f"%%bash\ncd -- {shlex.quote(step.cwd)}\n{step.command}")
        cell.metadata["cybershuttle"] = {"step": step.number, "cwd": step.cwd, "recorded_exit": step.recorded_exit}
        cells.append(cell)
    return _new_notebook(session, cells)


def _python_notebook(session: Session) -> str:
    import nbformat

    cells = []
    for event in session.events():
        if event.get("type") == "cell":
            cell = nbformat.v4.new_code_cell(event["source"])
            cell.metadata["cybershuttle"] = {"runtime": event.get("runtime", "local")}
        elif event.get("type") == "call" and not event.get("in_cell"):
            module = event["call"].split(".", 1)[0]
            cell = nbformat.v4.new_code_cell(f"from cybershuttle import {module}\n\n{python.call_text(event)}")
            cell.metadata["cybershuttle"] = {"call": event["call"]}
        else:
            continue
        cells.append(cell)
    return _new_notebook(session, cells)


def _python_script(session: Session) -> str:
    calls = [e for e in session.events("call")]
    modules = sorted({e["call"].split(".", 1)[0] for e in calls})
    body = [f"from cybershuttle import {', '.join(modules)}"] if modules else []
    body += [python.call_text(e) for e in calls]
    cells = [e for e in session.events("cell")]
    note = (f"# {len(cells)} recorded cell(s) are in the notebook export "
            f"(cybershuttle session export {session.name} --format ipynb)\n") if cells else ""
    return (f"#!/usr/bin/env bash\n# cybershuttle session {session.name!r}: its cybershuttle calls, in order\n"
            f"{note}set -e\npython3 - <<'CYBERSHUTTLE_SESSION'\n"
            + "\n".join(body) + "\nCYBERSHUTTLE_SESSION\n")


def to_json(session: Session, events: bool = False) -> dict[str, Any]:
    data = session.to_dict()
    if events:
        data["events"] = session.events()
    return json.loads(json.dumps(data, default=str))
