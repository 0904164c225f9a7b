"""Jobs: commands run on a resource, as Slurm batch jobs or detached processes.

Every job gets a directory on its resource (`~/.cybershuttle/jobs/<token>`,
0700) holding `job.sh`, `output.log` (stdout and stderr as written) and, for
process jobs, the runner's `pid` and `result.json`. The job record lives in
the user's catalog, so a new shell, the server and a notebook all see it.

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

from .. import profile, slurm
from ..errors import CybershuttleError, NotFoundError, SSHError
from ..registry import catalog, dump_record, load_record
from . import environment, request, resources
from .resources import Resource
from .shell import Shell, write_file

KIND = "job"
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "REQUEUED", "RESIZING"})
RECONNECT_TRIES = 5
_POLL_S = 0.2  # how often the loop on the resource looks at the job
_RUNNER = Path(__file__).with_name("runner.py")
_ARRAY_SPEC = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?")


@dataclass(frozen=True)
class Job:
    """One job as recorded in the catalog."""

    id: str
    resource: str
    kind: str  # "slurm" | "process"
    native_id: str  # Slurm job id, or the runner's pid
    name: str
    command: str
    jobdir: str
    workdir: str
    submitted: float
    request: dict[str, Any] = field(default_factory=dict)
    state: str = "PENDING"
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
        return self.state not in ACTIVE_STATES and self.state != "UNKNOWN"

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
            extra_pip: tuple[str, ...] = (), files: dict[str, bytes] | None = None, array: str | None = None) -> Job:
    """Check everything, then submit `command` on `resource`; returns the recorded job.

    Nothing is submitted when the request, the setup file or the resource's
    software cannot be satisfied: the error says which limit or what is missing.
    `extra_pip` adds requirements to the cached environment (runtimes add
    ipykernel); `files` are written (0600) into the job directory first, never
    through a command line. The job's script sees its directory as
    `$CYBERSHUTTLE_JOB_DIR`. `array` (Slurm only) makes it one job array,
    e.g. "0-19" or "0-19%2"; each task sees `$SLURM_ARRAY_TASK_ID`.
    """
    if not isinstance(command, str) or not command.strip():
        raise CybershuttleError("the command to execute is empty: give a shell command, e.g. 'python train.py'")
    res = resources.get(resource)
    if array is not None and (res.kind != "slurm" or not _ARRAY_SPEC.fullmatch(array)):
        raise CybershuttleError(f"a job array needs a Slurm resource and a task range such as 0-19 or 0-19%2 "
                                f"(got {array!r} on {res.name}, a {res.kind} resource)")
    setup = None
    if setup_file is not None:
        from .. import setupfile

        setup = setupfile.load(setup_file)
    req = request.resolve(res, cpus=cpus, memory=memory, gpus=gpus, walltime=walltime, partition=partition,
                          account=account, qos=qos, resources=resources_kind, setup=setup)
    env = environment.from_setup(res, setup, extra_pip)
    shell = res.shell()
    env = environment.check(res, shell, env, setup)
    job_name = _job_name(name, command)
    token = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    jobdir = f"{_jobs_root(res)}/{token}"
    run_in = workdir or (str(Path.cwd()) if not res.remote else res.facts.get("home") or "~")
    for filename, data in (files or {}).items():
        write_file(shell, f"{jobdir}/{filename}", data, 0o600)
    if res.kind == "slurm":
        native = _submit_slurm(shell, res, req, env, jobdir, run_in, job_name, command, array)
        job_id = f"{res.name}.{native}"
    else:
        native = _submit_process(shell, res, req, env, jobdir, run_in, command)
        job_id = f"{res.name}.{token}"
    job = Job(id=job_id, resource=res.name, kind="slurm" if res.kind == "slurm" else "process", native_id=native,
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
            shell = res.shell()
            fresh = _slurm_states(shell, pending) if res.kind == "slurm" else _process_states(shell, pending)
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
    """Everything the job has written so far."""
    job = get(job_id)
    shell = resources.get(job.resource).shell()
    q = shlex.quote(job.log_path)
    return shell.run(f"if [ -e {q} ]; then cat {q}; fi", timeout=120).stdout.encode()


# -- acting ----------------------------------------------------------------
def cancel(job_id: str) -> Job:
    job = status(job_id)
    if job.final:
        raise CybershuttleError(f"job {job.id} already ended ({job.state}); nothing to cancel")
    shell = resources.get(job.resource).shell()
    if job.kind == "slurm":
        shell.run(f"scancel {shlex.quote(job.native_id)}", login_shell=True, timeout=60)
    else:
        shell.run(f"kill -TERM {int(job.native_id)} 2>/dev/null || true", timeout=30)
    return wait(job.id, timeout=60)


def wait(job_id: str, timeout: float | None = None) -> Job:
    """Block until the job ends (or `timeout` seconds pass); returns its final record."""
    job = get(job_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    res = resources.get(job.resource)
    tries = 0
    while True:
        job = refresh([job])[0]
        if job.final:
            return job
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return job
        loop = _until_done(job, remaining)
        try:
            res.shell().run(loop, check=False, login_shell=job.kind == "slurm",
                            timeout=None if remaining is None else remaining + 30)
            tries = 0
        except SSHError:
            tries += 1
            if tries > RECONNECT_TRIES:
                raise


def follow(job_id: str, sink: Callable[[bytes], None]) -> Job:
    """Stream the job's output to `sink` until it ends, surviving dropped connections."""
    job = get(job_id)
    res = resources.get(job.resource)
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)
        sink(data)

    tries = 0
    while True:
        q = shlex.quote(job.log_path)
        cmd = (f"tail -s {_POLL_S} -c +{received + 1} -F {q} 2>/dev/null & T=$!; "
               f"{_until_done(job, None)}; sleep {_POLL_S * 2}; kill $T 2>/dev/null; wait $T 2>/dev/null; true")
        try:
            res.shell().stream(cmd, count, login_shell=job.kind == "slurm")
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


# -- helpers ---------------------------------------------------------------
def _submit_slurm(shell: Shell, res: Resource, req: request.Request, env: environment.Environment,
                  jobdir: str, workdir: str, job_name: str, command: str, array: str | None = None) -> str:
    directives = [f"--job-name={job_name}", f"--output={jobdir}/output.log", f"--chdir={workdir}",
                  "--nodes=1", "--ntasks=1", f"--cpus-per-task={req.cpus}"]
    optional = {"--partition": req.partition, "--mem": req.memory_mb and f"{req.memory_mb}M",
                "--time": req.walltime, "--gres": req.gpus and f"gpu:{req.gpus}", "--account": req.account,
                "--qos": req.qos, "--array": array}
    directives += [f"{flag}={value}" for flag, value in optional.items() if value]
    script = "\n".join(["#!/bin/bash -l", *(f"#SBATCH {d}" for d in directives),
                         f"export CYBERSHUTTLE_JOB_DIR={shlex.quote(jobdir)}", env.preamble(), command, ""])
    q = shlex.quote(jobdir)
    out = shell.run(f"umask 077 && mkdir -p {q} && cat > {q}/job.sh && sbatch --parsable {q}/job.sh",
                    stdin=script.encode(), login_shell=True, timeout=120).stdout.strip()
    native = out.splitlines()[-1].split(";")[0] if out else ""
    if not native.isdigit():
        raise CybershuttleError(f"sbatch on {res.name} did not return a job id: {out!r}")
    return native


def _submit_process(shell: Shell, res: Resource, req: request.Request, env: environment.Environment,
                    jobdir: str, workdir: str, command: str) -> str:
    runner = _ensure_runner(shell, res)
    script = "\n".join([f"export CYBERSHUTTLE_JOB_DIR={shlex.quote(jobdir)}", f"cd {shlex.quote(workdir)} || exit 96",
                         env.preamble(), command, ""])
    q = shlex.quote(jobdir)
    python = shlex.quote(res.python or "python3")
    out = shell.run(f"umask 077 && mkdir -p {q} && cat > {q}/job.sh && {python} {shlex.quote(runner)} --detach {q} "
                    f"{req.walltime_s or 0}", stdin=script.encode(), timeout=60).stdout.strip()
    if not out.isdigit():
        raise CybershuttleError(f"the job runner on {res.name} did not start: {out!r}")
    return out


_runners_checked: set[tuple[str, str]] = set()


def _ensure_runner(shell: Shell, res: Resource) -> str:
    if not res.remote:
        return str(_RUNNER)
    source = _RUNNER.read_bytes()
    import hashlib

    digest = hashlib.sha256(source).hexdigest()[:12]
    path = f"{res.facts.get('home') or '.'}/.cybershuttle/bin/runner-{digest}.py"
    if (res.name, path) not in _runners_checked:
        if not shell.run(f"test -f {shlex.quote(path)}", check=False).ok:
            write_file(shell, path, source, 0o700)
        _runners_checked.add((res.name, path))
    return path


def _jobs_root(res: Resource) -> str:
    if not res.remote:
        return str(profile.active().subdir("jobs"))
    home = res.facts.get("home")
    if not home:
        raise CybershuttleError(f"resource {res.name} has no recorded home directory: re-register it")
    return f"{home}/.cybershuttle/jobs"


def _until_done(job: Job, timeout: float | None) -> str:
    """A bash loop that returns when the job is no longer active (or after `timeout`)."""
    limit = f" && [ $SECONDS -lt {int(timeout) + 1} ]" if timeout is not None else ""
    if job.kind == "slurm":
        active = "|".join(sorted(ACTIVE_STATES))
        test = f"squeue -h -j {shlex.quote(job.native_id)} -o %T 2>/dev/null | grep -qE '^({active})'"
    else:
        q = shlex.quote(f"{job.jobdir}/result.json")
        test = f"[ ! -e {q} ] && kill -0 {int(job.native_id)} 2>/dev/null"
    return f"SECONDS=0; while {test}{limit}; do sleep {_POLL_S}; done"


def _slurm_states(shell: Shell, jobs: list[Job]) -> list[Job]:
    states = slurm.job_states(shell, [j.native_id for j in jobs])
    out = []
    for job in jobs:
        s = states.get(job.native_id)
        if s is None or s.state == "UNKNOWN":
            out.append(replace(job, state="UNKNOWN", reason="Slurm does not know this job any more"))
            continue
        out.append(replace(job, state=s.state, exit_code=s.exit_code, signal=s.signal, reason=s.reason,
                           started=s.start or job.started, ended=s.end if s.state not in ACTIVE_STATES else None))
    return out


def _process_states(shell: Shell, jobs: list[Job]) -> list[Job]:
    import json

    parts = []
    for job in jobs:
        d = shlex.quote(job.jobdir)
        parts.append(f"if [ -e {d}/result.json ]; then printf '%s R ' {shlex.quote(job.id)}; cat {d}/result.json; echo; "
                     f"elif kill -0 {int(job.native_id)} 2>/dev/null; then echo {shlex.quote(job.id)} A; "
                     f"else echo {shlex.quote(job.id)} D; fi")
    lines = shell.run("; ".join(parts), timeout=60).stdout.splitlines()
    found = {}
    for line in lines:
        job_id, _, rest = line.partition(" ")
        found[job_id] = rest
    out = []
    for job in jobs:
        rest = found.get(job.id, "D")
        if rest.startswith("R "):
            result = json.loads(rest[2:])
            out.append(replace(job, state=result["state"], exit_code=result["exit_code"], signal=result.get("signal"),
                               started=result.get("start"), ended=result.get("end"), reason=None,
                               usage={k: result.get(k) for k in ("elapsed_s", "cpu_s", "max_rss_mb")}))
        elif rest == "A":
            out.append(replace(job, state="RUNNING", started=job.started or job.submitted))
        else:
            out.append(replace(job, state="FAILED", reason="the job's process ended without a result "
                                                           "(the machine restarted or the process was killed)"))
    return out


def _job_name(name: str | None, command: str) -> str:
    if name is not None:
        from .. import names

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
