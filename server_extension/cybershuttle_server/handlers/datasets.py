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


class DatasetsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Datasets sorted by name; ?q= searches names, descriptions, fields and locations."""
        query, limit, offset = self.paging()
        items, total = await self.call(_page, query, limit, offset)
        self.write_list(items, total=total)


class DatasetHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One dataset, with `where`: its locations nearest first for work on this machine
        (or on ?resource=NAME)."""
        resource = self.get_query_argument("resource", None) or None

        def read() -> dict[str, Any]:
            return {**dataset.get(name).to_dict(), "where": dataset.where(name, resource)}

        self.write_json(await self.call(read))


def search(query: str) -> list[dict[str, Any]]:
    """Datasets matching `query` (the first 100; `/datasets?q=` pages through all)."""
    return [{"kind": "dataset", "name": d.name, "detail": d.description or (d.locations[0] if d.locations else "")}
            for d in dataset.list_all(query, limit=100)]


ROUTES = [
    Route("datasets", DatasetsHandler, ("GET",), "datasets (?q=, ?limit=, ?offset= paged in the catalog)"),
    Route("datasets/{name}", DatasetHandler, ("GET",), "one dataset and its locations nearest first (?resource=)"),
]
