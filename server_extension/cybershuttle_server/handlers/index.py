"""The index of routes and the search across every kind of named thing."""
from __future__ import annotations

import asyncio
from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join

from cybershuttle.errors import CybershuttleError

from .base import CybershuttleHandler, Route, run_blocking

API_PREFIX = "cybershuttle/api/v1"


def route_url(base: str, path: str) -> str:
    """The absolute URL path of a route (the index ends with a slash)."""
    return url_path_join(base, API_PREFIX, path) + ("" if path else "/")


class IndexHandler(CybershuttleHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        """The list of routes this API serves."""
        from cybershuttle import __version__

        from . import ROUTES

        base = self.settings.get("base_url", "/")
        self.write_json({"version": __version__,
                         "routes": [{"path": route_url(base, r.path), "methods": list(r.methods), "help": r.help}
                                    for r in ROUTES]})


class SearchHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Everything whose name or description contains ?q= : [{kind, name, detail}]."""
        from . import SEARCHES

        query, limit, offset = self.paging()
        if not query:
            raise tornado.web.HTTPError(400, "give the text to look for as ?q=TEXT")
        found = await asyncio.gather(*(run_blocking(fn, query) for fn in SEARCHES), return_exceptions=True)
        items: list[dict[str, Any]] = []
        errors: list[str] = []
        for result in found:
            if isinstance(result, CybershuttleError):
                errors.append(str(result))  # one kind failing leaves the others' results useful
            elif isinstance(result, BaseException):
                raise result
            else:
                items.extend(result)
        end = None if limit is None else offset + limit
        self.write_json({"items": items[offset:end], "total": len(items), "errors": errors})


ROUTES = [
    Route("", IndexHandler, ("GET",), "this list of routes"),
    Route("search", SearchHandler, ("GET",), "?q=TEXT across every kind: [{kind, name, detail}]"),
]
