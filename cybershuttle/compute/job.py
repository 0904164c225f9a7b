"""Jobs: commands run on a resource by its scheduler (a Slurm batch job, a detached process, ...).

Every job gets a directory on its resource (`~/.cybershuttle/jobs/<token>`,
0700) holding `job.sh`, `output.log` (stdout and stderr as written) and
whatever its scheduler keeps there (the process runner's `pid` and
`result.json`). The job record lives in the user's catalog, so a new shell,
the server and a notebook all see it. What the scheduler does is behind the
`Scheduler` contract (compute/schedulers); this module never asks which one.

Waiting and following run a small loop *on the resource* over one SSH
channel, so a finished job is noticed within a fraction of a second without
a round trip per check; a dropped connection is re-established and following
resumes from the last byte received.
"""
from __future__ import annotations

import re
import secrets
import shlex
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .. import names, profile
from ..errors import CybershuttleError, NotFoundError, OutputTooLargeError, SSHError
from ..registry import catalog, dump_record, load_record
from . import environment, request, resources, schedulers, states
from .resources import Resource
from .shell import Shell, write_file

KIND = "job"
#: the active job states (compute/states.py is their one definition)
ACTIVE_STATES = frozenset(s.value for s in states.JobState if s.active)
RECONNECT_TRIES = 5
LOG_PIECE = 2**20  # bytes of a log read at once unless the caller asks for another amount
LOG_WHOLE_MAX = 64 * 2**20  # `logs()` (a whole log in memory) refuses longer ones
LOG_READ_TIMEOUT_S = 120
_ARRAY_SPEC = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?")


@dataclass(frozen=True)
class Job:
    """One job as recorded in the catalog."""

    id: str
    resource: str
    kind: str  # the scheduler's name: "slurm", "process", or an installed one
    native_id: str  # the scheduler's own id: Slurm job id, the runner's pid
    name: str
    command: str
    jobdir: str
    workdir: str
    submitted: float
    request: dict[str, Any] = field(default_factory=dict)
    state: str = "PENDING"  # a compute.states.JobState word
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    started: float | None = None
    ended: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    setup_file: str | None = None
    env_hash: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return states.final(self.state)

    @property
    def log_path(self) -> str:
        return f"{self.jobdir}/output.log"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- submitting ------------------------------------------------------------
def execute(command: str, resource: str, *, cpus: int | None = None, gpus: int | None = None,
            memory: str | int | None = None, walltime: str | int | None = None, partition: str | None = None,
            account: str | None = None, qos: str | None = None, resources_kind: str | None = None,
            setup_file: str | None = None, name: str | None = None, workdir: str | None = None,
            nodes: int | None = None, tasks_per_node: int | None = None,
            extra_pip: tuple[str, ...] = (), files: dict[str, bytes] | None = None, array: str | None = None,
            warn_before: int | None = None) -> Job:
    """Check everything, then submit `command` on `resource`; returns the recorded job.

    Nothing is submitted when the request, the setup file or the resource's
    software cannot be satisfied: the error says which limit or what is missing.
    `extra_pip` adds requirements to the cached environment (runtimes add
    ipykernel); `files` are written (0600) into the job directory first, never
    through a command line. The job's script sees its directory as
    `$CYBERSHUTTLE_JOB_DIR`. `array` (schedulers with arrays: Slurm) makes it one
    job array, e.g. "0-19" or "0-19%2"; each task sees `$SLURM_ARRAY_TASK_ID`.
    `nodes`/`tasks_per_node` (Slurm) ask for several nodes: `command` runs on the
    first, and a parallel step in it starts that many tasks on each.
    `warn_before` (seconds; schedulers that `warns`; at most half the walltime) sends
    the job's batch shell SIGUSR1 that long before its walltime ends.
    """
    if not isinstance(command, str) or not command.strip():
        raise CybershuttleError("the command to execute is empty: give a shell command, e.g. 'python train.py'")
    for what, value in (("job name", name), ("working directory", workdir)):
        if value is not None:  # both reach the job script's header (#SBATCH --job-name, --chdir)
            names.script_value(value, what)
    res = resources.get(resource)
    sched = schedulers.for_resource(res)
    if array is not None and (not sched.arrays or not _ARRAY_SPEC.fullmatch(array)):
        raise CybershuttleError(f"a job array needs a Slurm resource and a task range such as 0-19 or 0-19%2 "
                                f"(got {array!r} on {res.name}, a {res.kind} resource)")
    setup = None
    if setup_file is not None:
        from .. import setupfile

        setup = setupfile.load(setup_file)
    req = request.resolve(res, cpus=cpus, memory=memory, gpus=gpus, walltime=walltime, partition=partition,
                          account=account, qos=qos, resources=resources_kind, setup=setup, nodes=nodes,
                          tasks_per_node=tasks_per_node)
    env = environment.from_setup(res, setup, extra_pip)
    shell = res.shell()
    env = environment.check(res, shell, env, setup)
    job_name = _job_name(name, command)
    token = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    jobdir = f"{_jobs_root(res, shell)}/{token}"
    run_in = workdir or (str(Path.cwd()) if not res.remote else resources.home_dir(res, shell))
    for filename, data in (files or {}).items():
        write_file(shell, f"{jobdir}/{filename}", data, 0o600)
    # A warning at more than half the walltime would come before any work was done.
    warn = min(warn_before, max(req.walltime_s // 2, 1)) if warn_before and sched.warns and req.walltime_s else None
    native = sched.submit(shell, schedulers.Submission(jobdir, run_in, job_name, command, req, env.preamble(), array,
                                                       warn))
    job = Job(id=sched.job_id(native, token), resource=res.name, kind=sched.name, native_id=native,
              name=job_name, command=command, jobdir=jobdir, workdir=run_in, submitted=time.time(),
              request=req.to_dict(), setup_file=str(Path(setup_file).resolve()) if setup_file else None,
              env_hash=env.env_hash, notes=list(req.notes))
    catalog().private.add(KIND, job.id, _to_data(job), catalog().user)
    return job


# -- reading ---------------------------------------------------------------
def get(job_id: str) -> Job:
    """A job by its id (`resource.native`), or by its bare Slurm id / token when unique."""
    cat = catalog().private
    entry = cat.find(KIND, job_id) if _plausible_name(job_id) else None
    if entry is None:
        matches = [e for e in cat.list(KIND) if e.data.get("native_id") == job_id or e.name.endswith("." + job_id)]
        if len(matches) > 1:
            raise CybershuttleError(f"job id {job_id!r} is ambiguous: use one of {', '.join(e.name for e in matches)}")
        if not matches:
            raise NotFoundError(f"no job {job_id!r}: see `cybershuttle compute jobs --all`")
        entry = matches[0]
    return _from_data(entry.name, entry.data)


def list_jobs(resource: str | None = None, include_finished: bool = False, refresh_states: bool = True) -> list[Job]:
    """The user's jobs (active ones, or all), newest first, with live states."""
    jobs = [_from_data(e.name, e.data) for e in catalog().private.list(KIND)]
    if resource is not None:
        resources.get(resource)  # an unknown resource is an error, not an empty list
        jobs = [j for j in jobs if j.resource == resource]
    if refresh_states:
        jobs = refresh(jobs)
    if not include_finished:
        jobs = [j for j in jobs if not j.final]
    return sorted(jobs, key=lambda j: j.submitted, reverse=True)


def refresh(jobs: list[Job]) -> list[Job]:
    """Ask each resource for the live state of the unfinished jobs; record changes."""
    by_resource: dict[str, list[Job]] = {}
    for job in jobs:
        if not job.final:
            by_resource.setdefault(job.resource, []).append(job)
    updated: dict[str, Job] = {}
    for name, pending in by_resource.items():
        try:
            res = resources.get(name)
            fresh = schedulers.for_resource(res).states(res.shell(), pending)
        except CybershuttleError as exc:
            fresh = [replace(j, reason=f"state unknown: {exc}") for j in pending]
            updated.update({j.id: j for j in fresh})
            continue
        for job in fresh:
            updated[job.id] = job
            _save(job)
    return [updated.get(j.id, j) for j in jobs]


def status(job_id: str) -> Job:
    return refresh([get(job_id)])[0]


def logs(job_id: str) -> bytes:
    """Everything the job has written so far (up to LOG_WHOLE_MAX bytes; a longer log is read with `read_log`)."""
    piece = read_log(job_id, 0, LOG_WHOLE_MAX)
    if piece.more:
        raise OutputTooLargeError(f"the log of job {job_id} is {piece.size} bytes, more than is read at once: read it "
                                  f"in pieces (compute.read_log, `cybershuttle compute logs {job_id}`)")
    return piece.data


@dataclass(frozen=True)
class LogPiece:
    """`data`: the bytes of a job's log from byte `offset`; `size`: the log's size when they were read."""

    offset: int
    size: int
    data: bytes

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)

    @property
    def more(self) -> bool:
        """Whether the log goes on after this piece (ask again from `next_offset`)."""
        return self.next_offset < self.size


def read_log(job_id: str, offset: int = 0, limit: int = LOG_PIECE) -> LogPiece:
    """At most `limit` bytes of the job's log from byte `offset` (negative: that many bytes before its end).

    Only those bytes are read, on the resource and here, however long the log
    is: following a log asks again from the piece's `next_offset`.
    """
    if limit < 1:
        raise CybershuttleError(f"a log piece must be at least 1 byte, not {limit}")
    job = get(job_id)
    q = shlex.quote(job.log_path)
    # One command: the size first (wc reads it from the inode, not the bytes), then the piece (tail seeks).
    command = (f"if [ -e {q} ]; then S=$(wc -c < {q}); else S=0; fi; O={int(offset)}; "
               "if [ $O -lt 0 ]; then O=$((S + O)); [ $O -ge 0 ] || O=0; fi; echo \"$S $O\"; "
               f"if [ $S -gt $O ]; then tail -c +$((O + 1)) {q} | head -c {int(limit)}; fi")
    shell = resources.get(job.resource).shell()
    for attempt in range(2):
        out = bytearray()

        def keep(data: bytes) -> None:
            if len(out) + len(data) > limit + 64:  # the header line, then at most `limit` bytes
                raise OutputTooLargeError(f"reading the log of job {job_id} returned more than {limit} bytes")
            out.extend(data)

        try:
            shell.stream(command + " 2>/dev/null", keep, timeout=LOG_READ_TIMEOUT_S)
            break
        except SSHError:
            if attempt:
                raise
    header, _, data = bytes(out).partition(b"\n")
    try:
        size, start = (int(word) for word in header.split())
    except ValueError:
        raise CybershuttleError(f"cannot read the log of job {job_id} on {job.resource}: got {header[:80]!r}") from None
    return LogPiece(start, max(size, start + len(data)), data)


# -- acting ----------------------------------------------------------------
def cancel(job_id: str) -> Job:
    job = status(job_id)
    if job.final:
        raise CybershuttleError(f"job {job.id} already ended ({job.state}); nothing to cancel")
    sched = scheduler(job)
    sched.cancel(sched.resource.shell(), job)
    return wait(job.id, timeout=60)


def wait(job_id: str, timeout: float | None = None) -> Job:
    """Block until the job ends (or `timeout` seconds pass); returns its final record."""
    job = get(job_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    sched = scheduler(job)
    tries = 0
    while True:
        job = refresh([job])[0]
        if job.final:
            return job
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return job
        loop = sched.until_done(job, remaining)
        try:
            sched.resource.shell().run(loop, check=False, login_shell=sched.login_shell,
                                       timeout=None if remaining is None else remaining + 30)
            tries = 0
        except SSHError:
            tries += 1
            if tries > RECONNECT_TRIES:
                raise


def follow(job_id: str, sink: Callable[[bytes], None]) -> Job:
    """Stream the job's output to `sink` until it ends, surviving dropped connections."""
    job = get(job_id)
    sched = scheduler(job)
    res = sched.resource
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)
        sink(data)

    tries = 0
    while True:
        q = shlex.quote(job.log_path)
        try:
            res.shell().stream(sched.follow_command(job, received), count, login_shell=sched.login_shell)
            # Catch up on anything written between tail's last read and its end.
            res.shell().stream(f"if [ -e {q} ]; then tail -c +{received + 1} {q}; fi", count)
        except SSHError:
            tries += 1
            if tries > RECONNECT_TRIES:
                raise
            time.sleep(min(2.0, 0.2 * tries))
            continue
        job = refresh([job])[0]
        if job.final:
            return job


def scheduler(job: Job) -> schedulers.Scheduler:
    """The scheduler that runs `job` (the one that submitted it), bound to its resource."""
    res = resources.get(job.resource)
    cls = schedulers.installed().get(job.kind) or schedulers.scheduler_class(res.kind)
    return cls(res)


def enter_command(job: Job) -> str:
    """The shell command (run on the job's resource) that gives a login shell inside the job's allocation."""
    return scheduler(job).enter_command(job)


def queue_place(job: Job) -> schedulers.QueuePlace:
    """Where a pending job stands in its queue, and when its scheduler expects it to start."""
    sched = scheduler(job)
    return sched.queue_place(sched.resource.shell(), job)


def watch(job: Job, ready: str, timeout: float | None,
          progress: Callable[[str], None] | None = None,
          on_node: Callable[[str], None] | None = None) -> schedulers.Watch:
    """Wait on the resource until `ready` (a shell command) succeeds, the job ends, or `timeout` passes.

    `progress` gets the job's state changes ("job pending, position 2 in the
    queue") and the environment set-up lines it writes; `on_node` the node the
    job runs on, as soon as it runs. See Scheduler.watch_script.
    """
    return scheduler(job).watch(job, ready, timeout, progress, on_node=on_node)


# -- helpers ---------------------------------------------------------------
def _jobs_root(res: Resource, shell: Shell) -> str:
    if not res.remote:
        return str(profile.active().subdir("jobs"))
    return f"{resources.home_dir(res, shell)}/.cybershuttle/jobs"


def _job_name(name: str | None, command: str) -> str:
    if name is not None:
        return names.validate(name, "job name")
    word = command.strip().split()[0].rsplit("/", 1)[-1] if command.strip() else "job"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in word).strip("-.") or "job"
    return cleaned[:40]


def _plausible_name(job_id: str) -> bool:
    from .. import names

    try:
        names.validate(job_id)
        return True
    except CybershuttleError:
        return False


def _save(job: Job) -> None:
    catalog().private.update(KIND, job.id, lambda _: _to_data(job))


def _to_data(job: Job) -> dict[str, Any]:
    return dump_record(job, "id")


def _from_data(job_id: str, data: dict[str, Any]) -> Job:
    return load_record(Job, "id", job_id, data)
