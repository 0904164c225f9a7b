"""Helpers for the REST tests (tests/test_rest_*.py): JSON calls through pytest-jupyter's
`jp_fetch`, a real server-sent-events reader, and running blocking core calls off the
event loop the test server shares with the test."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any, Callable

from tornado.httpclient import HTTPClientError

API = ("cybershuttle", "api", "v1")
SERVER_CONFIG = {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True},
                               "tornado_settings": {"cybershuttle_events_interval": 0.3}}}


async def call(jp_fetch, path: str, method: str = "GET", *, params: dict[str, Any] | None = None,
               json_body: Any = None, form: dict[str, Any] | None = None, timeout: float = 120) -> tuple[int, Any]:
    """(status, decoded JSON) of one request; 4xx/5xx are returned, not raised."""
    kwargs: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if form is not None:
        kwargs["body"] = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif method in ("POST", "PUT", "PATCH"):
        kwargs["body"] = json.dumps(json_body if json_body is not None else {})
        headers["Content-Type"] = "application/json"
    try:
        response = await jp_fetch(*API, path, method=method, params=params, headers=headers,
                                  request_timeout=timeout, **kwargs)
    except HTTPClientError as exc:
        if exc.response is None:
            raise
        return exc.code, json.loads(exc.response.body)
    return response.code, json.loads(response.body)


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking core call in a thread: the test server runs on this test's event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


class EventStream:
    """A client of `GET /events` over a plain socket (HTTP/1.0, so the body is the raw stream)."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.events: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> "EventStream":
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        # EventSource cannot set headers: a browser sends the token in the URL (or its login cookie).
        auth = f"Authorization: token {self.token}\r\n" if self.token else ""
        self._writer.write((f"GET {self.path} HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n"
                            f"{auth}Accept: text/event-stream\r\n\r\n").encode())
        await self._writer.drain()
        status = (await asyncio.wait_for(self._reader.readline(), 10)).decode()
        assert " 200 " in status, status
        while (line := (await self._reader.readline()).decode().strip()):
            key, _, value = line.partition(":")
            self.headers[key.lower()] = value.strip()
        return self

    async def next(self, timeout: float) -> dict[str, Any]:
        """The next event's JSON (comments and keepalives skipped)."""
        assert self._reader is not None
        deadline = time.monotonic() + timeout
        while True:
            data: list[str] = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no event within {timeout} s; seen: {self.events}")
                raw = await asyncio.wait_for(self._reader.readline(), remaining)
                if not raw:
                    raise EOFError(f"the event stream ended; seen: {self.events}")
                line = raw.decode().rstrip("\n")
                if line == "":
                    break
                if line.startswith("data: "):
                    data.append(line[6:])
            if data:
                event = json.loads("\n".join(data))
                self.events.append(event)
                return event

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event (already received or coming) for which `match` is true."""
        for event in self.events:
            if match(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.01, deadline - time.monotonic()))
            if match(event):
                return event

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
