"""What every REST handler shares: the route record, JSON in and out, errors,
list paging, and running blocking core calls off the event loop.

The core (`cybershuttle.*`) is synchronous and may wait on SSH, Slurm or the
disk for seconds. Handlers never call it on the tornado event loop: `call()`
runs it in a thread pool, so one slow cluster delays only its own requests.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from tornado.web import HTTPError

from cybershuttle import ssh
from cybershuttle.errors import CybershuttleError, SSHError

T = TypeVar("T")

#: Threads for blocking core calls. Enough that several slow clusters do not
#: starve quick catalog reads; each request holds one thread at most.
_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cybershuttle-api")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class Route:
    """One REST route: `path` under the API prefix, with `{name}` placeholders."""

    path: str
    handler: type["CybershuttleHandler"]
    methods: tuple[str, ...]
    help: str

    @property
    def pattern(self) -> str:
        """The tornado URL pattern: each placeholder matches one path segment, passed positionally."""
        return _PLACEHOLDER.sub("([^/]+)", self.path)

    def example(self, value: str = "nosuch") -> str:
        """The path with every placeholder filled (tests walk these)."""
        return _PLACEHOLDER.sub(value, self.path)


#: The resource name Jupyter's Authorizer sees for this API (as "contents" or "kernels" for others').
AUTH_RESOURCE = "cybershuttle"


class CybershuttleHandler(APIHandler):
    """Base: JSON out; core errors become JSON 4xx with the core's own message.

    Authentication is each method's `@tornado.web.authenticated`. Authorization goes
    through the server's Authorizer (JupyterHub and other deployments restrict users
    with it): GET needs "read" on resource "cybershuttle", POST needs `post_action`.
    """

    #: "write" changes the catalog or a resource; "execute" runs code (replays, runs, loads, starts);
    #: `permissions` says what each reaches.
    post_action = "write"
    #: Per-method actions where one route's methods differ (POST starts a process, DELETE stops it).
    method_actions: dict[str, str] = {}

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        user = self.current_user
        if user is None:
            return  # @authenticated refuses it with 403
        from .permissions import action_for

        action = action_for(self, self.request.method or "GET")
        if not await ensure_async(self.authorizer.is_authorized(self, user, action, AUTH_RESOURCE)):
            raise HTTPError(403, f"user {user.username!r} is not allowed to {action} Cybershuttle resources "
                                 "on this server: ask its administrator")

    # -- output --------------------------------------------------------------
    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=_jsonable))

    def write_list(self, items: Iterable[Any], total: int | None = None) -> None:
        """A list reply: {"items": [...], "total": N}."""
        items = [to_json(i) for i in items]
        self.write_json({"items": items, "total": len(items) if total is None else total})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, CybershuttleError):
            status_code, message = exc.http_status, str(exc)
        elif isinstance(exc, HTTPError):
            message = exc.log_message or self._reason
        elif exc is not None:
            status_code, message = 500, f"internal error ({type(exc).__name__}: {exc}); see the server log"
        else:
            message = self._reason
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # A user's mistake (unknown name, failed check) is one warning line, not a traceback.
        if isinstance(value, CybershuttleError):
            self.log.warning("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    # -- input ---------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The request body as a dict: JSON, or a form (urlencoded or multipart)."""
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/json") or (not content_type and self.request.body[:1] == b"{"):
            if not self.request.body.strip():
                return {}
            try:
                data = json.loads(self.request.body)
            except ValueError as exc:
                raise HTTPError(400, f"the request body is not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise HTTPError(400, "the request body must be a JSON object")
            return data
        return {k: self.get_body_argument(k) for k in self.request.body_arguments if k != "_xsrf"}

    def int_argument(self, name: str, default: int | None = None, minimum: int = 0) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPError(400, f"?{name}= must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise HTTPError(400, f"?{name}= must be at least {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        return raw.lower() in ("1", "true", "yes", "on", "")

    def server_path(self, path: str, what: str) -> str:
        """A path the browser gave, read as the file browser does: relative to the server's
        root directory, and confined to it."""
        from cybershuttle import names

        if not isinstance(path, str) or not path.strip():
            raise HTTPError(400, f"{what} must be a path relative to the Jupyter root directory")
        return str(names.confine(self.settings.get("server_root_dir", "."), path))

    def paging(self) -> tuple[str | None, int | None, int]:
        """`?q=`, `?limit=` and `?offset=` of a list request."""
        query = self.get_query_argument("q", None) or None
        return query, self.int_argument("limit", None, minimum=0), self.int_argument("offset", 0) or 0

    def write_page(self, items: list[Any], search: Callable[[Any], str] | None = None) -> None:
        """Filter (`?q=` over `search(item)`), count, then slice a list the core returned whole."""
        query, limit, offset = self.paging()
        if query and search is not None:
            needle = query.lower()
            items = [i for i in items if needle in search(i).lower()]
        end = None if limit is None else offset + limit
        self.write_list(items[offset:end], total=len(items))

    # -- blocking core calls -------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking core call in the thread pool and await its result."""
        return await run_blocking(fn, *args, **kwargs)


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking core call in the worker pool; SSH prompts there are refused, never asked."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(_without_terminal, fn, args, kwargs))


def in_own_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> "asyncio.Future[T]":
    """Run `fn` in a thread of its own and await it: a template or model run can take hours, and the REST worker
    threads (a fixed few) must stay free for quick requests. SSH prompts there are refused, as in the workers."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # the request went away and cancelled its wait
        future.set_exception(error) if error is not None else future.set_result(result)

    def work() -> None:
        try:
            result = _without_terminal(fn, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    # A daemon: a server that stops does not wait hours for a run (the run's record says where it got to).
    threading.Thread(target=work, name=f"cybershuttle-run-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return future


def _without_terminal(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    with ssh.prompting(refuse_prompts):
        return fn(*args, **kwargs)


def refuse_prompts(prompt: str, secret: bool) -> str:
    """The server cannot ask the browser for a passphrase or one-time code mid-request; without
    this, a server started from a terminal would ask there and hang the request."""
    raise SSHError(f"the SSH server asks {prompt.strip()!r}, which the Jupyter server cannot answer from the "
                   "browser: use a key without a passphrase (or loaded in ssh-agent), or register and work in a "
                   "terminal (`cybershuttle compute register`) or a notebook (`%authenticate`)")


def to_json(item: Any) -> Any:
    """A core record as JSON-safe data (records have `to_dict()`; catalog entries too)."""
    if hasattr(item, "to_dict"):
        return item.to_dict()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return item


def _jsonable(value: Any) -> Any:
    converted = to_json(value)
    if converted is value:
        return str(value)
    return converted
