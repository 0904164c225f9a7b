"""REST handlers, one small module per kind of thing, each a thin layer over the core.

`ROUTES` is the single list of what the API serves: `setup_handlers` installs
it, the index route returns it, and the authentication test walks it.
`SEARCHES` are the per-kind search functions `/search` runs.
"""
from __future__ import annotations

from typing import Any

from . import applications, compute, datasets, events, index, models, sessions, storage, templates
from .base import CybershuttleHandler, Route
from .index import API_PREFIX, route_url

ROUTES: list[Route] = [*index.ROUTES, *storage.ROUTES, *datasets.ROUTES, *compute.ROUTES, *events.ROUTES,
                       *sessions.ROUTES, *templates.ROUTES, *applications.ROUTES, *models.ROUTES]
SEARCHES = [storage.search, datasets.search, compute.search, sessions.search, templates.search,
            applications.search, models.search]


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [(route_url(base, r.pattern).rstrip("/") + "/?", r.handler) for r in ROUTES])


__all__ = ["API_PREFIX", "ROUTES", "SEARCHES", "CybershuttleHandler", "Route", "route_url", "setup_handlers"]
