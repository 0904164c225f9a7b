"""Durable runtimes: a warning before the walltime, namespace checkpoints, resume, extend, idle stop.

The kernel side is `durable_kernel.py`, shipped into each runtime's job
directory with its settings (`durable.json`). Everything it keeps lives in
the runtime's private directories on the resource (its job directory, and
`~/.cybershuttle/runtimes/NAME/` for checkpoints, both 0700 with 0600 files),
which on a cluster is the shared filesystem: the same files are seen from the
login node and from whichever compute node the kernel runs on. Requests to a
running kernel (checkpoint now, the journal) travel on its control channel,
through the runtime's own connection, wherever the kernel is.

    from cybershuttle.runtime import durable
    durable.checkpoint("hpc")                  # {'saved': [...], 'skipped': {name: why}, ...}
    durable.warning("hpc")                     # the walltime warning, once it came
    durable.extend("hpc", 30)                  # where the site lets users raise a time limit
    runtime.request("hpc", "cluster", resume=True)   # a new job, the namespace restored first
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass
from importlib import resources as pkg_resources
from typing import TYPE_CHECKING, Any

from .. import compute, names
from ..errors import CybershuttleError

if TYPE_CHECKING:
    from . import Runtime

#: what the job runs: the kernel replaces the batch shell, so the scheduler's warning signal reaches it
#: (ignored, not fatal, in the instant before the kernel installs its handler)
KERNEL_COMMAND = 'trap "" USR1; exec python "$CYBERSHUTTLE_JOB_DIR/durable_kernel.py"'
#: what the kernel side needs beside ipykernel
REQUIREMENTS = ("dill>=0.3.8",)
DEFAULT_WARN_BEFORE_MIN = 5
DEFAULT_JOURNAL_MB = 64


class DurableError(CybershuttleError):
    """A checkpoint, resume or extension that could not be done."""


@dataclass(frozen=True)
class Options:
    """How durable one runtime is; kept in its record so restart and resume ask the same."""

    warn_before_min: float | None = None  # None: the default (5), or half a shorter walltime
    checkpoint: bool = True  # at the warning
    idle_timeout_min: float | None = None  # None: the site's default (none: never); 0: never
    journal_mb: float = DEFAULT_JOURNAL_MB

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Options:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def warn_before_s(self, walltime_s: int | None) -> int:
        """The warning's lead; the scheduler gets at most half the walltime (see compute.execute)."""
        if self.warn_before_min is not None:
            return max(int(self.warn_before_min * 60), 1)
        return min(DEFAULT_WARN_BEFORE_MIN * 60, walltime_s // 2) if walltime_s else DEFAULT_WARN_BEFORE_MIN * 60


def minutes(text: str | float) -> float:
    """A duration in minutes from `20s`, `5m`, `1.5h` or a plain number of minutes (argparse's `type=`)."""
    value = str(text).strip().lower()
    scale = {"s": 1 / 60, "m": 1.0, "h": 60.0}.get(value[-1:], None)
    try:
        number = float(value[:-1] if scale is not None else value)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use minutes, or 20s, 5m, 1h)") from None
    if number < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return number * (scale or 1.0)


def site_idle_timeout_min() -> float | None:
    """The site's default idle timeout (`[runtimes] idle_timeout = "30m"` in its configuration), or None."""
    from .. import siteconfig

    section = siteconfig.load().get("runtimes", {})
    value = section.get("idle_timeout") if isinstance(section, dict) else None
    return minutes(value) if value not in (None, "", 0) else None


def checkpoint_path(resource: compute.Resource, name: str, label: str | None = None) -> str:
    """Where runtime `name`'s checkpoint (or the one saved as `label`) lives on its resource (private,
    on the shared filesystem)."""
    leaf = f"{label}.checkpoint" if label else "checkpoint"
    return f"{compute.home_dir(resource)}/.cybershuttle/runtimes/{name}/{leaf}"


def job_files(name: str, resource: compute.Resource, options: Options, walltime_s: int | None,
              restore: str | None) -> tuple[dict[str, bytes], int]:
    """The files a durable runtime's job needs, and the warning's lead time in seconds."""
    warn = options.warn_before_s(walltime_s)
    idle = options.idle_timeout_min if options.idle_timeout_min is not None else site_idle_timeout_min()
    config = {"runtime": name, "warn_before_s": warn, "checkpoint": options.checkpoint,
              "idle_timeout_s": float(idle) * 60 if idle else None,
              "journal_bytes": int(options.journal_mb * (1 << 20)),
              "checkpoint_path": checkpoint_path(resource, name), "restore": restore}
    source = pkg_resources.files(__package__).joinpath("durable_kernel.py").read_bytes()
    return {"durable.json": json.dumps(config).encode(), "durable_kernel.py": source}, warn


def resume_source(name: str, resource: compute.Resource, label: str | None = None) -> str:
    """The checkpoint a `--resume` of runtime `name` restores (its last, or the one saved as `label`);
    refused when there is none."""
    path = checkpoint_path(resource, name, label)
    found = resource.shell().run(f"test -f {_q(path)} && echo yes", check=False, timeout=30).stdout.strip()
    if found != "yes":
        what = f"checkpoint {label!r}" if label else "checkpoint"
        raise DurableError(f"runtime {name!r} has no {what} on {resource.name} to resume from: "
                           f"request it without --resume (checkpoints are taken by %checkpoint_runtime, "
                           "at the walltime warning and at an idle stop)")
    return path


def checkpoint(name: str, timeout: float = 600.0, label: str | None = None) -> dict[str, Any]:
    """Checkpoint runtime `name`'s namespace now; returns {'saved', 'skipped' (name: why), 'bytes', 'seconds'}.

    `label` keeps it apart from the runtime's own checkpoint (a session snapshot's), in the same
    private directory; `runtime.request(..., resume=label)` restores it.
    """
    from . import client

    if label is not None:
        names.validate(label, "checkpoint label")
    kc = client(name)
    try:
        reply = control_request(kc, "cybershuttle_checkpoint_request", {"label": label} if label else {}, timeout)
    finally:
        kc.stop_channels()
    content = reply["content"]
    if content.get("status") != "ok":
        raise DurableError(f"runtime {name}: the checkpoint failed: {content.get('evalue')}")
    return content


def report(name: str, result: dict[str, Any]) -> list[str]:
    """A checkpoint's result in the lines every front end prints."""
    lines = [f"checkpointed runtime {name}: {len(result['saved'])} name(s), {result['bytes'] / 1e6:.1f} MB "
             f"in {result['seconds']:.1f} s"]
    return lines + [f"  not saved: {n} ({why})" for n, why in sorted(result["skipped"].items())]


def control_request(kc: Any, msg_type: str, content: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request on the kernel's control channel and return its reply (answered while a cell runs)."""
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not kc.control_channel.socket.poll(min(left, 1.0) * 1000):
            continue
        reply = kc.control_channel.get_msg(timeout=0)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply
    raise DurableError(f"the runtime's kernel did not answer {msg_type} within {timeout:.0f} s")


def wait_ready(kc: Any, timeout: float) -> None:
    """Return once the kernel answers on its control channel and its IOPub messages reach `kc`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kc.control_channel.send(kc.session.msg("kernel_info_request"))
        if kc.iopub_channel.socket.poll(1000):  # the status of that request (or any output): subscribed
            return
    raise DurableError(f"the runtime's kernel did not answer within {timeout:.0f} s: check it with runtime status")


def warning(rt: Runtime) -> dict[str, Any] | None:
    """The walltime warning the runtime's kernel received ({'at', 'ends_at', 'text', 'checkpoint'}), or None."""
    return _read_json(rt, "durable/warning.json")


_warned: dict[str, str] = {}  # job id -> the warning's text (a job is warned once)


def warnings(runtimes: list[Runtime]) -> dict[str, str]:
    """The walltime warnings of the live runtimes that got one, by runtime name (for the event stream)."""
    from . import LIVE_STATES

    out = {}
    for rt in runtimes:
        if rt.state not in LIVE_STATES or not (rt.request or {}).get("walltime"):
            continue
        if rt.job_id not in _warned:
            found = warning(rt)
            if found is None:
                continue
            _warned[rt.job_id] = found["text"]
        out[rt.name] = _warned[rt.job_id]
    return out


def restored(rt: Runtime) -> dict[str, Any] | None:
    """What a resumed runtime restored and what it could not ({'restored', 'failed', 'text'}), or None."""
    return _read_json(rt, "durable/restored.json")


def ended_reason(job: compute.Job) -> str | None:
    """Why the kernel gave its allocation back by itself (an idle stop), or None."""
    try:
        shell = compute.get(job.resource).shell()
        out = shell.run(f"cat {_q(job.jobdir + '/durable/ended.json')}", check=False, timeout=30).stdout
        return json.loads(out)["text"] if out.strip() else None
    except (CybershuttleError, ValueError, KeyError):
        return None


def extend(name: str, minutes: int) -> dict[str, Any]:
    """Raise runtime `name`'s time limit by `minutes` where its site allows users to."""
    from . import get

    if int(minutes) <= 0:
        raise DurableError(f"extend runtime {name} by a positive number of minutes (got {minutes})")
    rt = get(name)
    job = compute.status(rt.job_id)
    if job.final:
        raise DurableError(f"runtime {name}'s job {job.id} already ended ({job.state}): request it with --resume",
                           next_step=("runtime.request", name))
    res = compute.get(rt.resource)
    sched = compute.schedulers.for_resource(res)
    sched.extend(res.shell(), job, int(minutes))
    return {"runtime": name, "job": job.id, "added_min": int(minutes)}


def _read_json(rt: Runtime, relative: str) -> dict[str, Any] | None:
    try:
        job = compute.get_job(rt.job_id)
        out = compute.get(rt.resource).shell().run(f"cat {_q(job.jobdir + '/' + relative)}", check=False,
                                                   timeout=30).stdout
        return json.loads(out) if out.strip() else None
    except (CybershuttleError, ValueError):
        return None


def _q(path: str) -> str:
    # `~/...` must stay expandable by the remote shell; everything else is quoted.
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
