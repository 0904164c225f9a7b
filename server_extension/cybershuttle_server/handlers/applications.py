"""Applications: what a resource offers (modules, conda environments, Python packages,
registered executables), searched, and loaded into a setup file or a running runtime."""
from __future__ import annotations

from typing import Any

import tornado.web

from cybershuttle import application, compute
from cybershuttle.errors import UsageError

from .base import CybershuttleHandler, Route


class ApplicationsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """?resource=NAME (default this machine), ?q= search, ?refresh=1 asks the resource again
        instead of using the day-old cache."""
        resource = self.get_query_argument("resource", None) or None
        query = self.get_query_argument("q", None) or None
        refresh = self.flag("refresh")
        if query:
            apps = await self.call(application.search, query, resource, refresh=refresh)
        else:
            apps = await self.call(application.list_all, resource, refresh=refresh)
        self.write_page(apps)


class ApplicationLoadHandler(CybershuttleHandler):
    post_action = "execute"

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body: version?, setup_file? (relative to the Jupyter root), runtime?, resource?.
        Adds NAME[/VERSION] to the setup file and/or loads it into the runtime, after the
        conflict checks; returns what changed."""
        body = self.body()
        unknown = sorted(set(body) - {"version", "setup_file", "runtime", "resource"})
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: use version, setup_file, runtime, resource")
        spec = f"{name}/{body['version']}" if body.get("version") else name
        setup_file = self.server_path(body["setup_file"], "setup_file") if body.get("setup_file") else None
        result = await self.call(application.load, spec, setup_file=setup_file, resource=body.get("resource") or None,
                                 runtime=body.get("runtime") or None)
        self.write_json(result.to_dict())


def search(query: str) -> list[dict[str, Any]]:
    """Applications of this machine matching `query`, from the catalog already gathered.

    A search never gathers (that asks the machine for its modules and packages,
    seconds of work) nor registers `local`: `/applications` does both.
    """
    if not any(r.name == "local" for r in compute.list_all()) or application.gathered_at("local") is None:
        return []
    return [{"kind": "application", "name": a.name, "detail": f"{a.kind} on {a.resource or 'any resource'}"}
            for a in application.search(query, "local")]


ROUTES = [
    Route("applications", ApplicationsHandler, ("GET",),
          "applications of ?resource= (default this machine); ?q= searches, ?refresh=1 re-reads the resource"),
    Route("applications/{name}/load", ApplicationLoadHandler, ("POST",),
          "add to a setup file and/or load into a runtime ({version?, setup_file?, runtime?, resource?})"),
]
