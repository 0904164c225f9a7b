"""Compute resources (list with live status, the validating registration the
web form uses), jobs (list, logs, cancel), runtimes (list, stop) and the state
vocabulary every job, run and runtime speaks (which states are final)."""
from __future__ import annotations

from typing import Any

import tornado.web

from cybershuttle import compute, runtime
from cybershuttle.errors import CybershuttleError

from . import events
from .base import CybershuttleHandler, Route, refuse_prompts

#: The most of a job's log one request carries (a browser's view of a log is a page, not gigabytes).
LOG_PIECE = 2**20
#: Form fields of the registration form that are not resource fields.
_FORM_ALIASES = {"key_file": "key"}
_FORM_FLAGS = ("public", "check_only")


def resource_json(res: compute.Resource, status: dict[str, Any] | None = None) -> dict[str, Any]:
    data = {"name": res.name, "scope": res.scope, **res.to_data()}
    if status is not None:
        data["status"] = status
    return data


def _resource_text(res: compute.Resource) -> str:
    return " ".join(str(v) for v in (res.name, res.kind, res.host or "this machine", res.partition or ""))


class ComputeListHandler(CybershuttleHandler):
    # Registering checks the resource by running a login shell and probes on it: that runs code.
    post_action = "execute"

    @tornado.web.authenticated
    async def get(self) -> None:
        """Resources; with their live status unless ?status=0 (one thread per resource)."""
        resources = await self.call(compute.list_all)
        query = self.get_query_argument("q", None)
        if query:
            resources = [r for r in resources if query.lower() in _resource_text(r).lower()]
        _, limit, offset = self.paging()
        shown = resources[offset:None if limit is None else offset + limit]
        live = await self.call(compute.statuses, shown) if self.flag("status", True) else {}
        self.write_list([resource_json(r, live.get(r.name)) for r in shown], total=len(resources))

    @tornado.web.authenticated
    async def post(self) -> None:
        """Register a resource exactly as `cybershuttle compute register` does.

        Body (form or JSON): name, kind, host, port, user, key_file (or key),
        known_hosts, partition, account, qos, python, public. `?check_only=1`
        (or a check_only field) runs every check and saves nothing.
        """
        fields = self.body()
        check_only = self.flag("check_only") or _truthy(fields.get("check_only"))
        public = _truthy(fields.get("public"))
        spec = registration_spec(fields)
        result = await self.call(compute.validate_and_register, spec, public=public, save=not check_only,
                                 prompter=refuse_prompts)
        self.write_json({**result.to_dict(), "check_only": check_only}, status=201 if result.saved else 200)


def registration_spec(fields: dict[str, Any]) -> dict[str, Any]:
    """Form fields as a resource spec: empty fields dropped, aliases mapped, port a number."""
    spec: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _FORM_FLAGS or value is None or (isinstance(value, str) and not value.strip()):
            continue
        spec[_FORM_ALIASES.get(key, key)] = value.strip() if isinstance(value, str) else value
    if isinstance(spec.get("port"), str):
        try:
            spec["port"] = int(spec["port"])
        except ValueError:
            raise CybershuttleError(f"port must be a number from 1 to 65535, got {spec['port']!r}") from None
    return spec


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class ComputeItemHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One resource with its live status and its live runtimes."""
        res = await self.call(compute.get, name)
        status = (await self.call(compute.statuses, [res]))[res.name]
        runtimes = [r.to_dict() for r in await self.call(runtime.list_all)
                    if r.resource == name and r.state in runtime.LIVE_STATES]
        self.write_json({**resource_json(res, status), "runtimes": runtimes})


class JobsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Jobs, newest first, with states asked of their resources.

        ?resource=NAME limits to one resource; ?active=1 hides ended jobs.
        """
        resource = self.get_query_argument("resource", None) or None
        jobs = await self.call(compute.jobs, resource, include_finished=not self.flag("active"))
        self.write_page(jobs, search=lambda j: f"{j.id} {j.name} {j.command} {j.state}")


class JobHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        """One job with its live state."""
        self.write_json((await self.call(compute.status, job_id)).to_dict())


class JobLogsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        """A piece of what the job wrote: ?offset=N (negative: N bytes before the end), ?limit= bytes (at most
        and by default LOG_PIECE). Only that piece is read, however long the log: a follower asks again from
        `next_offset`; `more` says the log goes on; `size` is the whole log's."""
        offset = self.int_argument("offset", 0, minimum=-(2**62)) or 0
        limit = min(self.int_argument("limit", LOG_PIECE, minimum=1) or LOG_PIECE, LOG_PIECE)
        piece = await self.call(compute.read_log, job_id, offset, limit)
        # A character cut by the piece's end waits for the next piece, so followers never see it mangled.
        used = (whole_characters(piece.data) if piece.more else 0) or len(piece.data)
        self.write_json({"id": job_id, "size": piece.size, "offset": piece.offset, "next_offset": piece.offset + used,
                         "more": piece.offset + used < piece.size, "log": piece.data[:used].decode(errors="replace")})


def whole_characters(data: bytes) -> int:
    """How many leading bytes of `data` (UTF-8) end where a character ends."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: where the last character starts
            length = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if length > back else len(data)
    return len(data)


class JobCancelHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self, job_id: str) -> None:
        """Cancel the job and wait (up to a minute) until it has ended."""
        self.write_json((await self.call(compute.cancel, job_id)).to_dict())


class RuntimesHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Runtimes as recorded (REQUESTED, READY, STOPPED, DEAD); live changes arrive on /events."""
        runtimes = await self.call(runtime.list_all)
        self.write_page(runtimes, search=lambda r: f"{r.name} {r.resource} {r.state}")


class RuntimeHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One runtime with its job's live state and its transport (a job that ended marks it DEAD), and the
        walltime warning its kernel got (`warning`, null before)."""
        self.write_json(await self.call(_runtime_status, name))


def _runtime_status(name: str) -> dict[str, Any]:
    from cybershuttle.runtime import durable

    found = durable.warning(runtime.get(name))
    return {**runtime.status(name), "warning": found["text"] if found else None}


def runtime_warning_events() -> dict[tuple[str, str], dict[str, Any]]:
    """A runtime's event gains `warning` (and, so that the change is sent, `progress`) once its kernel is
    warned that the walltime ends soon; the sidebar shows it on the runtime's row."""
    from cybershuttle.runtime import durable

    items = runtime.list_all()
    by_name = {r.name: r for r in items}
    return {("runtime", name): {"kind": "runtime", "name": name, "resource": by_name[name].resource,
                                "job_id": by_name[name].job_id, "state": by_name[name].state,
                                "message": by_name[name].message, "progress": text, "warning": text}
            for name, text in durable.warnings(items).items()}


class RuntimeStopHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Stop the runtime's job and subprocess and remove its files and keys."""
        self.write_json((await self.call(runtime.stop, name)).to_dict())


class RuntimeRestartHandler(CybershuttleHandler):
    post_action = "execute"  # a new job starts a kernel (and the runtime's setup commands)

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """A fresh kernel (a new job with the same request); answers once it is ready."""
        self.write_json((await self.call(runtime.restart, name)).to_dict())


class RuntimeSubprocessHandler(CybershuttleHandler):
    method_actions = {"POST": "execute", "DELETE": "write"}  # starting runs a command; stopping does not

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Start a background process beside the kernel. Body: command."""
        command = str(self.body().get("command") or "")
        self.write_json(await self.call(runtime.start_subprocess, name, command), status=201)

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        """Stop the runtime's background process."""
        self.write_json(await self.call(runtime.stop_subprocess, name))


def search(query: str) -> list[dict[str, Any]]:
    """Resources whose name, kind, host or partition contain `query` (for /search)."""
    needle = query.lower()
    return [{"kind": "compute", "name": r.name, "detail": f"{r.kind} {r.host or 'this machine'}"}
            for r in compute.list_all() if needle in _resource_text(r).lower()]


class StatesHandler(CybershuttleHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        """Every job/run/runtime state, whether it is final or active (the sidebar's one source)."""
        self.write_json(compute.states.vocabulary())


ROUTES = [
    Route("states", StatesHandler, ("GET",), "the state vocabulary: {states: [{name, of, final, active}], final, "
                                             "active}"),
    Route("compute", ComputeListHandler, ("GET", "POST"),
          "GET: resources with live status (?status=0 skips it); POST: register (form or JSON; ?check_only=1)"),
    Route("compute/{name}", ComputeItemHandler, ("GET",), "one resource, its live status and runtimes"),
    Route("jobs", JobsHandler, ("GET",), "jobs with live states (?resource=, ?active=1)"),
    Route("jobs/{id}", JobHandler, ("GET",), "one job with its live state"),
    Route("jobs/{id}/logs", JobLogsHandler, ("GET",), "a piece of the job's output (?offset=bytes, negative from the "
                                                      "end; ?limit=bytes, at most 1 MiB; next_offset, more)"),
    Route("jobs/{id}/cancel", JobCancelHandler, ("POST",), "cancel a job"),
    Route("runtimes", RuntimesHandler, ("GET",), "runtimes"),
    Route("runtimes/{name}", RuntimeHandler, ("GET",), "one runtime with its job's live state"),
    Route("runtimes/{name}/stop", RuntimeStopHandler, ("POST",), "stop a runtime"),
    Route("runtimes/{name}/restart", RuntimeRestartHandler, ("POST",), "a fresh kernel with the same request"),
    Route("runtimes/{name}/subprocess", RuntimeSubprocessHandler, ("POST", "DELETE"),
          "POST: start a background process beside the kernel (command); DELETE: stop it"),
]

events.SOURCES.append(runtime_warning_events)
