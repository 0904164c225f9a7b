"""Sessions: list, one session with its recorded events (and notebook snapshots), and load
(replay a shell or Python session; restore a notebook session's notebooks, runtimes and mounts)."""
from __future__ import annotations

from typing import Any

import tornado.web

from cybershuttle import session
from cybershuttle.errors import UsageError

from .base import CybershuttleHandler, Route

_LOAD_OPTIONS = {"dry_run": bool, "from_step": int, "continue_on_error": bool, "directory": str, "overwrite": bool}


class SessionsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Sessions (shell, python, notebook); ?q= searches their names."""
        query = self.get_query_argument("q", None) or None
        found = await self.call(session.list_all, query)
        self.write_page(found)


class SessionHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One session with its recorded events; notebook sessions also list their snapshots."""

        def read() -> dict[str, Any]:
            found = session.get(name)
            data = session.to_json(found, events=True)
            if found.kind == "notebook":
                data["snapshots"] = [s.to_dict() for s in session.snapshots(name)]
            return data

        self.write_json(await self.call(read))


class SessionLoadHandler(CybershuttleHandler):
    post_action = "execute"

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Load (replay or restore) a session. Body: dry_run, from_step, continue_on_error,
        directory (relative to the Jupyter root), overwrite. Returns the steps run (or that would run) and, for a notebook
        session, what was restored; `output` holds the progress lines."""
        options = load_options(self.body())
        if options.get("directory"):  # where restored notebooks are written: under the Jupyter root
            options["directory"] = self.server_path(options["directory"], "directory")
        lines: list[str] = []
        result = await self.call(session.load, name, echo=lines.append, **options)
        self.write_json({**result.to_dict(), "output": lines})


def load_options(body: dict[str, Any]) -> dict[str, Any]:
    """The body's load options, checked: unknown keys and wrong types are refused by name."""
    unknown = sorted(set(body) - set(_LOAD_OPTIONS))
    if unknown:
        raise UsageError(f"unknown load option(s) {', '.join(unknown)}: use {', '.join(_LOAD_OPTIONS)}")
    options: dict[str, Any] = {}
    for key, value in body.items():
        wanted = _LOAD_OPTIONS[key]
        if wanted is bool and isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        elif wanted is int and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise UsageError(f"load option {key} must be {'a number' if wanted is int else wanted.__name__}, "
                             f"got {value!r}")
        options[key] = value
    return options


def search(query: str) -> list[dict[str, Any]]:
    return [{"kind": "session", "name": s.name, "detail": f"{s.kind} session, {s.state}"}
            for s in session.list_all(query)]


ROUTES = [
    Route("sessions", SessionsHandler, ("GET",), "sessions (shell, python, notebook)"),
    Route("sessions/{name}", SessionHandler, ("GET",), "one session: its events and notebook snapshots"),
    Route("sessions/{name}/load", SessionLoadHandler, ("POST",),
          "replay or restore a session ({dry_run, from_step, continue_on_error, directory, overwrite})"),
]
