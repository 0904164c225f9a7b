"""Job and runtime state changes pushed to the browser as server-sent events.

`GET /events` is a `text/event-stream`; each event's data is one JSON object
`{"kind": "job", "id", "state", ...}` or `{"kind": "runtime", "name", "state", ...}`.

One `Watcher` per server asks the resources for job states (one batched query
of each resource's scheduler, in a worker thread) every
`cybershuttle_events_interval` seconds (tornado setting, default 3) — and only
while at least one browser is subscribed: with no subscriber nothing polls.
Each subscriber first receives the current state of every active job and live
runtime, then only changes.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

import tornado.web
from tornado.iostream import StreamClosedError

from cybershuttle import compute, runtime

from .base import CybershuttleHandler, Route, run_blocking

log = logging.getLogger("cybershuttle_server")

DEFAULT_INTERVAL_S = 3.0
DEFAULT_KEEPALIVE_S = 15.0
_QUEUE_LIMIT = 1000  # a subscriber this far behind is dropped (it reconnects and gets a fresh snapshot)

Key = tuple[str, str]


class Watcher:
    """Polls job and runtime states while anyone listens; fans changes out to subscribers."""

    def __init__(self, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.interval = interval
        self.polls = 0  # how many polls ran (tests check that none run without subscribers)
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._states: dict[Key, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=_QUEUE_LIMIT)
        if self.running:
            for event in self._states.values():
                if _active(event) and not queue.full():
                    queue.put_nowait(event)
        else:
            # States seen before the last pause may be stale: the first poll sends a fresh snapshot.
            self._states = {}
            self._task = asyncio.ensure_future(self._run())
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers and self._task is not None:
            # Stop now rather than after the next sleep: a server shutting down must not leave it pending.
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        first = True
        while self._subscribers:
            try:
                current = await run_blocking(poll_states)
            except Exception:  # never let one bad poll end the stream; the next one may work
                log.exception("cybershuttle_server: polling job and runtime states failed")
                current = None
            self.polls += 1
            if current is not None:
                for key, event in current.items():
                    before = self._states.get(key)
                    changed = before is None and (not first or _active(event))
                    changed = changed or (before is not None and before["state"] != event["state"])
                    changed = changed or (before is not None and before.get("progress") != event.get("progress"))
                    if changed:
                        self._broadcast(event)
                self._states = current
                first = False
            await asyncio.sleep(self.interval)

    def _broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                _close(queue)


def _close(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Wake a subscriber so it ends its stream (its queue is full, so make room first)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def poll_states() -> dict[Key, dict[str, Any]]:
    """Current job and runtime states (blocking: asks every resource with unfinished jobs)."""
    states: dict[Key, dict[str, Any]] = {}
    jobs = compute.jobs(include_finished=True)
    by_id = {}
    for job in jobs:
        by_id[job.id] = job
        states[("job", job.id)] = {"kind": "job", "id": job.id, "name": job.name, "resource": job.resource,
                                   "state": job.state, "exit_code": job.exit_code, "final": job.final,
                                   "reason": job.reason}
    # The core decides which runtimes died with their jobs (and records why); this only reports it.
    for rt in runtime.reconcile(by_id):
        states[("runtime", rt.name)] = {"kind": "runtime", "name": rt.name, "resource": rt.resource,
                                        "job_id": rt.job_id, "state": rt.state, "message": rt.message}
    # What a starting runtime's job is doing (building its conda environment can take minutes).
    from cybershuttle.compute import environment

    starting = {e["job_id"]: e for e in states.values()
                if e["kind"] == "runtime" and e["state"] == "REQUESTED" and e.get("job_id") in by_id}
    for job_id, line in environment.setup_progress([by_id[j] for j in starting if not by_id[j].final]).items():
        starting[job_id]["progress"] = line
    for source in SOURCES:
        try:
            states.update(source())
        except Exception:  # one kind's failure must not hide the others' events
            log.exception("cybershuttle_server: polling %s failed", getattr(source, "__name__", source))
    return states


#: Other kinds of events, each added by the handler module that owns the kind (templates: sweep
#: progress and runs): a function returning {(kind, id): event}. Such an event carries "final";
#: a change of its "state" or "progress" is sent.
SOURCES: list[Callable[[], dict[Key, dict[str, Any]]]] = []


def _active(event: dict[str, Any]) -> bool:
    if event["kind"] == "runtime":
        return event["state"] in runtime.LIVE_STATES
    return not event["final"]


def watcher_for(settings: dict[str, Any]) -> Watcher:
    """The server's one watcher (kept in the tornado settings)."""
    watcher = settings.get("cybershuttle_watcher")
    if watcher is None:
        watcher = Watcher(float(settings.get("cybershuttle_events_interval", DEFAULT_INTERVAL_S)))
        settings["cybershuttle_watcher"] = watcher
    return watcher


class EventsHandler(CybershuttleHandler):
    _queue: asyncio.Queue[dict[str, Any] | None] | None = None

    @tornado.web.authenticated
    async def get(self) -> None:
        """The event stream; a comment line every keepalive interval keeps proxies from closing it."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        watcher = watcher_for(self.settings)
        keepalive = float(self.settings.get("cybershuttle_events_keepalive", DEFAULT_KEEPALIVE_S))
        self._queue = queue = watcher.subscribe()
        try:
            self.write("retry: 3000\n: subscribed\n\n")
            await self.flush()
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), keepalive)
                except asyncio.TimeoutError:
                    self.write(": keepalive\n\n")
                else:
                    if event is None:  # the connection closed, or this subscriber fell too far behind
                        break
                    # No `event:` field: every event reaches EventSource.onmessage; `kind` tells them apart.
                    self.write(f"data: {json.dumps(event)}\n\n")
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            watcher.unsubscribe(queue)
        if not self.request.connection.stream.closed():  # type: ignore[union-attr]
            self.finish()

    def on_connection_close(self) -> None:
        if self._queue is not None:
            _close(self._queue)


ROUTES = [
    Route("events", EventsHandler, ("GET",),
          "server-sent events: job and runtime state changes, one JSON object per event"),
]
