"""Datasets: the catalog, paged in SQL (lists of 10,000 stay fast), and one dataset
with its locations nearest first."""
from __future__ import annotations

from typing import Any

import tornado.web

from cybershuttle import dataset

from .base import CybershuttleHandler, Route


def _page(query: str | None, limit: int | None, offset: int) -> tuple[list[dataset.Dataset], int]:
    # One worker-thread trip for both the page and the count.
    return dataset.list_all(query, limit=limit, offset=offset), dataset.count(query)


def _json(ds: dataset.Dataset, user: str) -> dict[str, Any]:
    # `mine`: the sidebar offers Remove only on what this server's user owns (the catalog refuses
    # the rest anyway); under JupyterHub the user is the OS user the server runs as.
    return {**ds.to_dict(), "mine": ds.owner == user}


def _user() -> str:
    from cybershuttle.registry import catalog

    return catalog().user


class DatasetsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Datasets sorted by name; ?q= searches names, descriptions, fields and locations."""
        query, limit, offset = self.paging()

        def read() -> tuple[list[dict[str, Any]], int]:
            items, total = _page(query, limit, offset)
            user = _user()
            return [_json(d, user) for d in items], total

        items, total = await self.call(read)
        self.write_list(items, total=total)

    @tornado.web.authenticated
    async def post(self) -> None:
        """Register a dataset as `cybershuttle dataset register` does.

        Body (form or JSON): name, location, description, public (true: in the site catalog,
        for everyone to see; only its owner can change or remove it).
        """
        fields = self.body()
        name, location = (str(fields.get(key) or "").strip() for key in ("name", "location"))
        if not name or not location:
            raise tornado.web.HTTPError(400, "a dataset needs a name and a location (a URL, a path or storage:/path)")
        public = str(fields.get("public", "")).lower() in ("1", "true", "yes", "on")
        ds = await self.call(dataset.register, name, location, public=public,
                             description=str(fields.get("description") or "").strip())
        self.write_json({**ds.to_dict(), "mine": True}, status=201)  # just registered: the caller owns it


class DatasetHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One dataset, with `where`: its locations nearest first for work on this machine
        (or on ?resource=NAME)."""
        resource = self.get_query_argument("resource", None) or None

        def read() -> dict[str, Any]:
            return {**dataset.get(name).to_dict(), "where": dataset.where(name, resource)}

        self.write_json(await self.call(read))


class DatasetRemoveHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Remove a dataset from the catalog (a public one: only its owner can)."""
        self.write_json((await self.call(dataset.remove, name)).to_dict())


def search(query: str) -> list[dict[str, Any]]:
    """Datasets matching `query` (the first 100; `/datasets?q=` pages through all)."""
    return [{"kind": "dataset", "name": d.name, "detail": d.description or (d.locations[0] if d.locations else "")}
            for d in dataset.list_all(query, limit=100)]


ROUTES = [
    Route("datasets", DatasetsHandler, ("GET", "POST"),
          "datasets (?q=, ?limit=, ?offset= paged in the catalog); POST registers one "
          '({"name", "location", "description"?, "public"?})'),
    Route("datasets/{name}", DatasetHandler, ("GET",), "one dataset and its locations nearest first (?resource=)"),
    Route("datasets/{name}/remove", DatasetRemoveHandler, ("POST",), "remove a dataset (a public one: its owner only)"),
]
