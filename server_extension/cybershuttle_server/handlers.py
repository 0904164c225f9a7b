"""REST handlers. Each is a thin layer over the `cybershuttle` core.

`ROUTES` is the single list of what the API serves: the index route returns
it, and the test that checks authentication walks it.
"""
from __future__ import annotations

import json
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

API_PREFIX = "cybershuttle/api/v1"


class CybershuttleHandler(APIHandler):
    """Base: JSON out, core errors become JSON 4xx with the core's message."""

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        from cybershuttle.errors import CybershuttleError

        if isinstance(exc, CybershuttleError):
            self.set_status(exc.http_status)
            message = str(exc)
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


class IndexHandler(CybershuttleHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        """The list of routes this API serves."""
        base = self.settings.get("base_url", "/")
        self.write_json({"version": _version(),
                         "routes": [{"path": route_url(base, path), "methods": methods,
                                     "help": help_text} for path, _, methods, help_text in ROUTES]})


#: (path under the prefix, handler, methods, help) — the one list of routes.
ROUTES: list[tuple[str, type[CybershuttleHandler], list[str], str]] = [
    ("", IndexHandler, ["GET"], "this list of routes"),
]


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [(route_url(base, path).rstrip("/") + "/?", handler) for path, handler, _, _ in ROUTES])


def route_url(base: str, path: str) -> str:
    """The absolute URL path of a route (the index ends with a slash)."""
    return url_path_join(base, API_PREFIX, path) + ("" if path else "/")


def _version() -> str:
    from cybershuttle import __version__

    return __version__
