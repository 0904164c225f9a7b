"""Notebook sessions: snapshots at each save, history, diffs, and restoring.

A notebook belongs to session S when its metadata says so
(`metadata.cybershuttle.session = "S"`, which `attach()` writes) or when S
was started inside that notebook's kernel (`cybershuttle.session.start()`).
The Jupyter server calls `post_save_hook` after every save (registered by
`cybershuttle_server.snapshots`); the hook stores a redacted copy of the
notebook in the session (0600) together with what was in use at that moment:
live runtimes (with their request, so `load` can ask for them again) and
mounted storage. Cells executed, and where, come from the kernel side
(`python`), into the same event log.

A notebook attached with `state=True` (`metadata.cybershuttle.state`) also
has its runtimes' namespaces checkpointed at each snapshot, under a label of
the session's (`runtime/durable.py`): the checkpoints stay in the runtime's
private directory on its resource and only their labels enter the session,
so no export, template or public entry can carry them. `restore(...,
restore_state=True)` resumes the runtimes from them.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import names
from ..errors import CybershuttleError
from . import store
from .redact import redact, redact_value
from .store import SessionError

META_KEY = "cybershuttle"


@dataclass
class Snapshot:
    """One saved state of one notebook in a session."""

    id: int  # 1, 2, ... across the session's notebooks, in save order
    notebook: str  # absolute path of the notebook when saved
    file: str  # the stored copy, relative to the session directory
    time: float
    sha256: str
    cells: int
    runtimes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    state: list[dict[str, Any]] = field(default_factory=list)  # {"runtime", "label", "saved", "skipped"} a runtime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- membership --------------------------------------------------------------------
def attach(name: str, notebook: str | os.PathLike[str], *, state: bool = False) -> store.Session:
    """Make `notebook` part of session `name` (created as a notebook session if new) and snapshot it now.

    `state`: each snapshot also checkpoints the namespaces of the runtimes in use.
    """
    path = Path(notebook).resolve()
    existing = store.find(name)
    if existing is not None and existing.kind == "shell":
        raise SessionError(f"session {name!r} is a shell session: group notebooks in a notebook session")
    nb = _read(path)
    meta = nb.setdefault("metadata", {}).setdefault(META_KEY, {})
    meta["session"] = names.validate(name, "session name")
    if state:
        meta["state"] = True
    _write_notebook(path, nb)
    if store.find(name) is None:
        store.create(name, "notebook", cwd=str(path.parent))
    store.add_notebook(name, str(path))
    take_snapshot(name, path, nb)
    return store.get(name)


def session_of(path: str | os.PathLike[str], nb: dict[str, Any] | None = None) -> str | None:
    """The session a notebook belongs to, if any."""
    nb = nb if nb is not None else _read(Path(path))
    named = nb.get("metadata", {}).get(META_KEY, {}).get("session")
    if isinstance(named, str):
        try:
            return names.validate(named, "session name")
        except CybershuttleError:
            return None
    return store.owner_of_notebook(str(Path(path).resolve()))


# -- the server's hook ------------------------------------------------------------------
def post_save_hook(model: dict[str, Any] | None = None, os_path: str | None = None,
                   contents_manager: Any = None, **_: Any) -> Snapshot | None:
    """Jupyter contents-manager post-save hook: snapshot a saved notebook that belongs to a session.

    Never raises (a failed snapshot must not fail the user's save); problems
    go to the contents manager's log.
    """
    if not os_path or not str(os_path).endswith(".ipynb") or (model or {}).get("type", "notebook") != "notebook":
        return None
    try:
        path = Path(os_path)
        nb = _read(path)
        name = session_of(path, nb)
        if name is None:
            return None
        existing = store.find(name)
        if existing is None:
            store.create(name, "notebook", cwd=str(path.parent))
        elif existing.kind == "shell":
            raise SessionError(f"the notebook names session {name!r}, which is a shell session")
        store.add_notebook(name, str(path.resolve()))
        return take_snapshot(name, path, nb)
    except Exception as exc:  # the save itself already succeeded; keep it that way
        log = getattr(contents_manager, "log", None)
        if log is not None:
            log.warning("cybershuttle: no session snapshot of %s: %s", os_path, exc)
        return None


def take_snapshot(name: str, path: Path, nb: dict[str, Any] | None = None) -> Snapshot | None:
    """Store the notebook's current content in session `name`; None when unchanged since its last snapshot."""
    nb = _redacted(nb if nb is not None else _read(path))
    data = (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    absolute = str(path.resolve())
    previous = [s for s in snapshots(name) if s.notebook == absolute]
    if previous and previous[-1].sha256 == digest:
        return None
    directory = store.directory(name) / "snapshots"
    directory.mkdir(mode=0o700, exist_ok=True)
    # A snapshot's id is its file's number; O_EXCL gives two saves at once distinct numbers.
    number = len(list(directory.glob("*.ipynb"))) + 1
    while True:
        file = directory / f"{number:04d}.ipynb"
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            number += 1
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    runtimes = _live_runtimes()
    keep = nb.get("metadata", {}).get(META_KEY, {}).get("state") or store.keeps_state(name, absolute)
    state = _checkpoints(name, number, runtimes) if keep else []
    snap = Snapshot(id=number, notebook=absolute, file=f"snapshots/{file.name}", time=time.time(), sha256=digest,
                    cells=len(nb.get("cells", [])), runtimes=runtimes, mounts=_mounts(),
                    datasets=_datasets(name), state=state)
    store.append(name, {"type": "snapshot", **snap.to_dict()})
    return snap


# -- history, diff, restore -------------------------------------------------------------
def snapshots(name: str) -> list[Snapshot]:
    """The session's snapshots, oldest first."""
    from dataclasses import fields

    known = {f.name for f in fields(Snapshot)}
    return [Snapshot(**{k: v for k, v in e.items() if k in known}) for e in store.get(name).events("snapshot")]


def snapshot_content(name: str, snapshot: int) -> dict[str, Any]:
    snap = _snapshot(name, snapshot)
    return json.loads((store.directory(name) / snap.file).read_text(encoding="utf-8"))


def diff(name: str, a: int, b: int) -> str:
    """A unified diff of the cell sources of snapshots `a` and `b` (ids as `snapshots()` lists them)."""
    texts = []
    for number in (a, b):
        snap = _snapshot(name, number)
        nb = snapshot_content(name, number)
        lines = []
        for i, cell in enumerate(nb.get("cells", []), start=1):
            lines.append(f"# ---- cell {i} ({cell.get('cell_type', 'code')}) ----\n")
            source = _source(cell)
            lines.extend(line if line.endswith("\n") else line + "\n" for line in source.splitlines())
        label = f"snapshot {number}: {os.path.basename(snap.notebook)} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(snap.time))}"
        texts.append((label, lines))
    return "".join(difflib.unified_diff(texts[0][1], texts[1][1], fromfile=texts[0][0], tofile=texts[1][0]))


def latest(name: str) -> dict[str, Snapshot]:
    """The newest snapshot of each notebook of the session, by notebook path."""
    out: dict[str, Snapshot] = {}
    for snap in snapshots(name):
        out[snap.notebook] = snap
    return out


def restore(name: str, directory: str | os.PathLike[str] | None = None, *, dry_run: bool = False,
            runtimes: bool = True, mounts: bool = True, overwrite: bool = False, restore_state: bool = False,
            echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Bring a notebook session back: its notebooks' last content, its runtimes and its mounts.

    Notebooks are written into `directory` (default: where they were) under
    their own names; an existing different file is kept unless `overwrite`.
    Runtimes recorded at the last snapshot are requested again
    (`cybershuttle.runtime.request` re-attaches to one still running), and
    mounted storage is mounted again. `restore_state`: a runtime whose
    namespace the snapshot checkpointed starts from that checkpoint.
    """
    say = echo or (lambda _: None)
    newest = latest(name)
    if not newest:
        raise SessionError(f"session {name!r} has no notebook snapshots: save a notebook of it first "
                           f"(or 'cybershuttle session export {name} --format ipynb')")
    report: dict[str, Any] = {"session": name, "notebooks": [], "runtimes": [], "mounts": [], "dry_run": dry_run}
    base_dir = Path(directory).resolve() if directory else None
    for path, snap in newest.items():
        target = (base_dir / os.path.basename(path)) if base_dir else Path(path)
        content = (store.directory(name) / snap.file).read_bytes()
        if target.exists() and target.read_bytes() != content and not overwrite:
            if _same_cells(target, content):
                report["notebooks"].append({"path": str(target), "snapshot": snap.id, "written": False})
                continue
            raise SessionError(f"{target} exists and differs from snapshot {snap.id}: pass a directory to restore "
                               "into, or overwrite=True (--overwrite) to replace it")
        say(f"notebook {target} <- snapshot {snap.id}")
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(target, content)
        report["notebooks"].append({"path": str(target), "snapshot": snap.id, "written": not dry_run})
    last = max(newest.values(), key=lambda s: s.id)
    if runtimes:
        saved = {s["runtime"]: s["label"] for s in last.state} if restore_state else {}
        for rt in last.runtimes:
            label = saved.get(rt["name"])
            say(f"runtime {rt['name']} on {rt['resource']}" + (f", its namespace from snapshot {last.id}" if label else ""))
            if not dry_run:
                from .. import runtime

                got, reattached = runtime.request(rt["name"], rt["resource"], resume=label or False,
                                                  **_request_kwargs(rt))
                rt = {**rt, "job_id": got.job_id, "reattached": reattached, "state": bool(label and not reattached)}
                if label and reattached:
                    say(f"runtime {rt['name']} is still running: its namespace is the live one, not the snapshot's")
            report["runtimes"].append(rt)
    if mounts:
        for mount in last.mounts:
            say(f"mount {mount['name']} at {mount['path']}" + (f" on runtime {mount['runtime']}" if mount.get("runtime") else ""))
            if not dry_run:
                mount = {**mount, "already": _mount_again(mount)}
            report["mounts"].append(mount)
    return report


def export_ipynb(name: str, notebook: str | None = None) -> str:
    """The newest snapshot (of `notebook`, else of the last saved notebook) as notebook JSON."""
    newest = latest(name)
    if not newest:
        raise SessionError(f"session {name!r} has no notebook snapshots yet")
    if notebook:
        wanted = [s for p, s in newest.items() if p == str(Path(notebook).resolve()) or os.path.basename(p) == notebook]
        if not wanted:
            raise SessionError(f"session {name!r} has no notebook {notebook!r} (it has: "
                               + ", ".join(os.path.basename(p) for p in newest) + ")")
        snap = wanted[0]
    else:
        snap = max(newest.values(), key=lambda s: s.id)
    return (store.directory(name) / snap.file).read_text(encoding="utf-8")


# -- helpers ---------------------------------------------------------------------------------
def _snapshot(name: str, number: int) -> Snapshot:
    for snap in snapshots(name):
        if snap.id == number:
            return snap
    ids = [s.id for s in snapshots(name)]
    raise SessionError(f"session {name!r} has no snapshot {number} (snapshots: "
                       + (", ".join(map(str, ids)) or "none") + ")")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SessionError(f"cannot read notebook {path}: {exc}") from exc


def _write_notebook(path: Path, nb: dict[str, Any]) -> None:
    _write_bytes(path, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode())


def _write_bytes(path: Path, data: bytes) -> None:
    # Keep the user's notebook mode; write whole then rename, through a partial file made exclusively
    # (a restore into a shared directory never writes through a name someone planted there).
    from ..storage.partial import write_whole

    mode = path.stat().st_mode & 0o777 if path.exists() and not path.is_symlink() else 0o644
    write_whole(str(path), data, mode)


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _redacted(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy with secrets redacted from cell sources and text outputs."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        cell["source"] = redact(_source(cell))
        for output in cell.get("outputs", []) or []:
            if "text" in output:
                output["text"] = redact("".join(output["text"]) if isinstance(output["text"], list) else output["text"])
            for mime, value in (output.get("data") or {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = redact("".join(value) if isinstance(value, list) else value)
                elif mime.endswith("json"):  # a displayed dict or config: its password/token fields
                    output["data"][mime] = redact_value(value)
    return nb


def _same_cells(path: Path, content: bytes) -> bool:
    try:
        mine, theirs = json.loads(path.read_text(encoding="utf-8")), json.loads(content)
    except (OSError, ValueError):
        return False
    return [_source(c) for c in mine.get("cells", [])] == [_source(c) for c in theirs.get("cells", [])]


def _live_runtimes() -> list[dict[str, Any]]:
    try:
        from .. import runtime

        return [{"name": r.name, "resource": r.resource, "request": r.request, "setup_file": r.setup_file}
                for r in runtime.list_all() if r.state in runtime.LIVE_STATES]
    except CybershuttleError:
        return []


def _checkpoints(name: str, snapshot: int, runtimes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checkpoint each runtime's namespace under a label of this snapshot (on the resource, private)."""
    from ..runtime import durable

    out = []
    for rt in runtimes:
        label = f"session-{name}-{snapshot}"
        try:
            result = durable.checkpoint(rt["name"], label=label)
        except CybershuttleError:
            continue  # not reachable now: this snapshot holds no state for it
        out.append({"runtime": rt["name"], "label": label, "saved": result["saved"], "skipped": result["skipped"]})
    return out


def _mounts() -> list[dict[str, Any]]:
    # What is mounted is context for the snapshot; a storage module that fails
    # to answer must not cost the user the snapshot itself.
    try:
        from .. import storage

        listing = getattr(storage, "mounts", None)
        if listing is None:
            return []
        return [{"name": m.name, "directory": os.path.dirname(m.path), "runtime": m.runtime, "path": m.path}
                for m in listing()]
    except Exception:
        return []


def _mount_again(mount: dict[str, Any]) -> bool:
    """Mount as recorded; True when it is mounted there already."""
    from .. import storage

    for current in storage.mounts():
        if current.name == mount["name"] and current.runtime == mount.get("runtime"):
            return True
    storage.mount(mount["name"], mount["directory"], runtime=mount.get("runtime"))
    return False


def _datasets(name: str) -> list[str]:
    """Datasets loaded while the session recorded (from its recorded calls)."""
    loaded = []
    for event in store.read_events(name):
        if event.get("type") == "call" and event.get("call") == "dataset.load" and event.get("ok"):
            target = (event.get("args") or [None])[0] or event.get("kwargs", {}).get("name")
            if target and target not in loaded:
                loaded.append(target)
    return loaded


def _request_kwargs(rt: dict[str, Any]) -> dict[str, Any]:
    req = rt.get("request") or {}
    kwargs: dict[str, Any] = {}
    for key in ("cpus", "walltime", "partition", "account", "qos", "nodes", "tasks_per_node"):
        if req.get(key):
            kwargs[key] = req[key]
    if req.get("memory_mb"):
        kwargs["memory"] = f"{req['memory_mb']}M"
    if req.get("gpus"):
        kwargs["gpus"] = req["gpus"]
    if rt.get("setup_file") and Path(rt["setup_file"]).exists():
        kwargs["setup_file"] = rt["setup_file"]
    return kwargs
