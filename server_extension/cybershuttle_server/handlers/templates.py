"""Templates: list, one template with its input spec (the sidebar builds its form from it),
its runs, and starting a run."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import tornado.web

from cybershuttle import template
from cybershuttle.template.run import recent as recent_runs
from cybershuttle.template.sweep import live as live_sweeps
from cybershuttle.errors import UsageError

from . import events
from .base import CybershuttleHandler, Route, in_own_thread

log = logging.getLogger("cybershuttle_server")
_RUN_FIELDS = ("inputs", "resource", "output", "wait")
_APPEAR_POLL_S = 0.1
_RECENT_S = 600.0  # a run or sweep that ended this long ago still has its event (a late watcher sees the end)


class TemplatesHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Templates; ?q= searches."""
        query = self.get_query_argument("q", None) or None
        self.write_page(await self.call(template.list_all, query))


class TemplateHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One template: `spec` lists its parameters {name, type, default, help, min, max, choices, required}."""
        self.write_json((await self.call(template.get, name)).to_dict())


class TemplateRunsHandler(CybershuttleHandler):
    post_action = "execute"

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """The template's runs, oldest first, with live states of sweep points."""
        self.write_page(await self.call(template.runs, name))

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Run the template once. Body: {"inputs": {...}, "resource"?, "output"? (relative to the
        Jupyter root), "wait"?}. Inputs are checked first: a wrong one is a 400 naming every problem.

        By default the reply is the run as soon as it is recorded (202, status RUNNING): a run
        queued on a cluster can take hours, and its end is seen in GET .../runs. With
        "wait": true the reply is the finished run (201).
        """
        body = self.body()
        unknown = sorted(set(body) - set(_RUN_FIELDS))
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(_RUN_FIELDS)}")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise UsageError('"inputs" must be an object of parameter values, e.g. {"learning_rate": 0.1}')
        output = self.server_path(body["output"], "output") if body.get("output") else None
        resource = body.get("resource") or None
        wait = body.get("wait", False) in (True, "true", "1", 1)
        before = {r.id for r in await self.call(template.runs, name, refresh=False)}
        started = in_own_thread(template.run, name, inputs, resource=resource, output=output)
        if wait:
            self.write_json((await started).to_dict(), status=201)
            return
        while not started.done():
            fresh = [r for r in await self.call(template.runs, name, refresh=False) if r.id not in before]
            if fresh:
                started.add_done_callback(_log_failure)
                self.write_json(fresh[-1].to_dict(), status=202)
                return
            await asyncio.sleep(_APPEAR_POLL_S)
        self.write_json(started.result().to_dict(), status=201)  # finished (or was refused) before we looked


class TemplateSweepsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """The template's sweeps with live progress: point counts by state, `eta_s`, and the unfinished
        tasks (state, points done; queue `position` and Slurm's `estimated_start` while pending)."""
        self.write_page([p.to_dict() for p in await self.call(template.progress, name)])


class SweepRerunHandler(CybershuttleHandler):
    post_action = "execute"

    @tornado.web.authenticated
    async def post(self, name: str, sweep_id: str) -> None:
        """Submit the sweep's FAILED and NOT_RUN points again, as one new array (202: the runs, PENDING)."""
        runs = await self.call(template.rerun, name, sweep_id=sweep_id)
        self.write_json({"items": [r.to_dict() for r in runs], "total": len(runs)}, status=202)


def sweep_events() -> dict[tuple[str, str], dict[str, Any]]:
    """Events for the sidebar's runs and sweep views: a sweep's progress (`progress` changes as points
    end), and each single run's state; unfinished ones, and those that ended lately (so their end is seen)."""
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for p in live_sweeps():
        data = p.to_dict()
        events[("sweep", p.sweep)] = {"kind": "sweep", "id": p.sweep, "template": p.template, "resource": p.resource,
                                      "state": data["state"], "final": p.final,
                                      "progress": {k: data[k] for k in ("total", "counts", "eta_s", "tasks")}}
    recent = time.time() - _RECENT_S
    for r in recent_runs(recent):
        events[("run", r.id)] = {"kind": "run", "id": r.id, "template": r.template, "state": r.status,
                                 "final": r.final}
    return events


def _log_failure(future: "asyncio.Future[Any]") -> None:
    # The run records its own failures; only something outside it (a bug) would be lost here.
    if not future.cancelled() and future.exception() is not None:
        log.error("cybershuttle_server: a template run started from the browser failed: %s", future.exception())


def search(query: str) -> list[dict[str, Any]]:
    return [{"kind": "template", "name": t.name, "detail": f"{len(t.spec)} parameter(s)"}
            for t in template.list_all(query)]


ROUTES = [
    Route("templates", TemplatesHandler, ("GET",), "templates"),
    Route("templates/{name}", TemplateHandler, ("GET",), "one template, with its input spec"),
    Route("templates/{name}/runs", TemplateRunsHandler, ("GET", "POST"),
          'GET: the runs; POST: run once ({"inputs": {...}, "resource"?, "output"?, "wait"?})'),
    Route("templates/{name}/sweeps", TemplateSweepsHandler, ("GET",),
          "the sweeps with live progress (counts, time left, pending tasks' queue places)"),
    Route("templates/{name}/sweeps/{id}/rerun", SweepRerunHandler, ("POST",),
          "submit a sweep's failed and not-run points again, as one new array"),
]

events.SOURCES.append(sweep_events)
