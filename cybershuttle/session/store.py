"""Where sessions live: a catalog entry per session plus an append-only event log.

The catalog (kind "session", private scope) holds what a listing needs: the
session's kind, state, who records it, which notebooks it groups. What
happens in a session is appended, one JSON object per line, to
`<profile>/sessions/<name>/events.jsonl` (0600): a recording subshell, a
kernel and the Jupyter server may all append to one session at once, and an
O_APPEND write under flock keeps each line whole without a database round
trip per command. Notebook snapshots sit next to it in `snapshots/`.

Every event is redacted (see `redact`) before it reaches the file.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .. import names, profile
from ..errors import CybershuttleError, NotFoundError
from ..registry import catalog
from .redact import redact_value

KIND = "session"
EVENTS_FILE = "events.jsonl"
KINDS = ("shell", "python", "notebook")


class SessionError(CybershuttleError):
    """A session that cannot be recorded, replayed or restored as asked."""


@dataclass
class Session:
    """One session as listed; `events()` reads what was recorded."""

    name: str
    kind: str  # shell | python | notebook
    state: str = "stopped"  # recording | stopped
    created: float = 0.0
    stopped: float | None = None
    shell: str | None = None  # the recording shell (bash, zsh)
    cwd: str | None = None  # where recording started
    recorder_pid: int | None = None
    notebooks: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """The recorded events in order, optionally only those of one type."""
        return [e for e in read_events(self.name) if type is None or e.get("type") == type]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"] = str(directory(self.name))
        return data


# -- catalog side ------------------------------------------------------------
def create(name: str, kind: str, **fields: Any) -> Session:
    """Register a new session and its (empty) event log."""
    names.validate(name, "session name")
    if kind not in KINDS:
        raise SessionError(f"unknown session kind {kind!r}: use one of {', '.join(KINDS)}")
    session = Session(name=name, kind=kind, created=time.time(), **fields)
    data = asdict(session)
    data.pop("name")
    data.pop("counts")
    catalog().private.add(KIND, name, data, catalog().user)
    path = directory(name)
    _touch(path / EVENTS_FILE)
    return session


def find(name: str) -> Session | None:
    names.validate(name, "session name")
    entry = catalog().private.find(KIND, name)
    return None if entry is None else _session(entry.name, entry.data)


def get(name: str) -> Session:
    """The session `name`, or NotFoundError naming the sessions there are."""
    session = find(name)
    if session is None:
        known = ", ".join(e.name for e in catalog().private.list(KIND)) or "none yet"
        raise NotFoundError(f"no session named {name!r} (sessions: {known}); "
                            "'cybershuttle session list' shows them, 'cybershuttle session start NAME' records one")
    return session


def list_all(search: str | None = None) -> list[Session]:
    return [_session(e.name, e.data) for e in catalog().private.list(KIND, search)]


def update(name: str, **changes: Any) -> Session:
    """Change catalog fields of a session atomically."""
    entry = catalog().private.update(KIND, name, lambda data: data.update(changes))
    return _session(entry.name, entry.data)


def add_notebook(name: str, path: str, *, state: bool = False) -> None:
    """Group notebook `path` in session `name`; `state`: its snapshots also checkpoint its runtimes."""
    def change(data: dict[str, Any]) -> None:
        if path not in data.setdefault("notebooks", []):
            data["notebooks"].append(path)
        if state and path not in data.setdefault("state_notebooks", []):
            data["state_notebooks"].append(path)

    catalog().private.update(KIND, name, change)


def keeps_state(name: str, path: str) -> bool:
    """Whether notebook `path`'s snapshots in session `name` checkpoint its runtimes (asked at each save)."""
    entry = catalog().private.find(KIND, name)
    return entry is not None and any(os.path.realpath(p) == os.path.realpath(path)
                                     for p in entry.data.get("state_notebooks", []))


def owner_of_notebook(path: str) -> str | None:
    """The session that groups notebook `path`, read from the catalog alone (this runs at every save)."""
    for entry in catalog().private.list(KIND):
        if entry.data.get("kind") != "shell" and path in entry.data.get("notebooks", []):
            return entry.name
    return None


def remove(name: str) -> Session:
    session = get(name)
    if session.state == "recording" and _alive(session.recorder_pid):
        raise SessionError(f"session {name!r} is still recording (process {session.recorder_pid}): "
                           f"stop it first with 'cybershuttle session stop {name}'")
    catalog().private.remove(KIND, name)
    shutil.rmtree(directory(name), ignore_errors=True)
    return session


# -- event log ---------------------------------------------------------------
def directory(name: str) -> Path:
    """The session's private directory (0700) in the profile."""
    names.validate(name, "session name")
    path = profile.active().subdir("sessions") / name
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def append(name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Redact `event` and append it as one line; returns what was written."""
    clean = redact_value(event)
    clean.setdefault("time", time.time())
    line = (json.dumps(clean, ensure_ascii=False, default=str) + "\n").encode()
    path = directory(name) / EVENTS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # closing releases the lock
    return clean


def read_events(name: str) -> list[dict[str, Any]]:
    path = directory(name) / EVENTS_FILE
    if not path.exists():
        return []
    return list(_parse(path))


def write_private(path: Path, data: bytes) -> None:
    """Write a file 0600, atomically (readers never see half a snapshot)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- internals -----------------------------------------------------------------
def _parse(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write; the rest is intact


def _session(name: str, data: dict[str, Any]) -> Session:
    from dataclasses import fields

    known = {f.name for f in fields(Session)}
    session = Session(name=name, **{k: v for k, v in data.items() if k in known and k not in ("name", "counts")})
    if session.state == "recording" and session.kind == "shell" and not _alive(session.recorder_pid):
        session.state = "stopped"  # the recorder died without saying so (killed terminal)
    counts: dict[str, int] = {}
    path = profile.active().root / "sessions" / name / EVENTS_FILE
    if path.exists():
        for event in _parse(path):
            counts[event.get("type", "?")] = counts.get(event.get("type", "?"), 0) + 1
    session.counts = counts
    return session


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _touch(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
