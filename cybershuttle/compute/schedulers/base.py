"""The `Scheduler` contract: what the compute core asks of whatever runs jobs on a resource.

A scheduler is a class registered in the entry-point group
`cybershuttle.schedulers` (see `cybershuttle.compute.schedulers`). One
instance serves one resource; the core hands it that resource's shell
(`resource.shell()`: a local subprocess, or commands over the pooled SSH
connection to the resource's host) and the job records it made.

What an implementation provides:

* `submit`   -- start a job (a `Submission`) and return the scheduler's own id for it.
* `states`   -- the live states of many jobs in one call (one round trip, whatever their number).
* `cancel`   -- ask the job to end; `wait` then sees its final state.
* `state_command` -- a shell command, run *on the resource*, printing the job's state
  (one `JobState` word a line; Slurm prints one per array task). From it this base
  class builds the on-resource loops: `until_done` (wait), `follow_command` (stream
  the log until the end) and `watch_script` (the STATE/LOG/READY/NODE line protocol
  a runtime waits on). Running the loop on the resource means an ended job is
  noticed within `POLL_S` over one channel, with no round trip per look.
* `enter_command` -- the command that gives a shell *inside* the job's allocation
  (a terminal on a runtime's host uses it).
* `queue_place` / `position_command` -- where a pending job stands in its queue and
  when the scheduler expects it to start.

Optional hooks (with defaults for a plain machine): `inspect` (registration checks
and facts), `load` (live status), `start_rank` (which of several resources starts a
job soonest), `usage` (accounting), `task_states` (job arrays).

Compute nodes (the next step): every command here runs on the resource's host.
A scheduler whose jobs land on other machines names the node a job runs on with
`node_command` (its output reaches the caller as the `NODE` line of
`watch_script`); a node transport plugs in at that point: given the node, it opens
a shell there through the resource's host (as `runtime.kernel_endpoint` does for
kernels today), and `enter_command` remains the way into the allocation itself.
Nothing outside a scheduler needs to know how the node was found.
"""
from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ...errors import CybershuttleError, SSHError
from .. import states
from ..shell import line_sink

if TYPE_CHECKING:
    from ..job import Job
    from ..request import Request
    from ..resources import Check, Resource
    from ..shell import Shell

#: how often a loop on the resource looks at a job (seconds)
POLL_S = 0.2
#: how often the runtime watch loop looks (it waits for a kernel's ports: sooner is better)
WATCH_POLL_S = 0.05
#: a job still pending after this many quick looks is looked at every PENDING_POLL_S instead: a queued
#: runtime must not start a Python and a scheduler query 20 times a second for as long as it waits
PENDING_QUICK_LOOKS = 40
PENDING_POLL_S = 0.5


@dataclass(frozen=True)
class Submission:
    """One job to start: everything is checked and resolved already."""

    jobdir: str  # exists after submit: job.sh, output.log (stdout+stderr), the scheduler's own files
    workdir: str
    name: str
    command: str
    request: Request
    preamble: str  # environment set-up lines that go before the command
    array: str | None = None  # a task range ("0-19%2") when the scheduler has `arrays`
    #: seconds before the walltime at which the job's batch shell gets SIGUSR1 (schedulers with `warns`)
    warn_before_s: int | None = None

    def script_lines(self) -> list[str]:
        """The body every scheduler runs: job directory, environment, command."""
        lines = [f"export CYBERSHUTTLE_JOB_DIR={shlex.quote(self.jobdir)}"]
        if self.warn_before_s:
            # A warning that comes while the environment is prepared (a short walltime) is kept in a
            # file for the command to find: bash's default for SIGUSR1 would end the job.
            lines.append("trap 'date +%s > \"$CYBERSHUTTLE_JOB_DIR/warned\"' USR1")
        return [*lines, self.preamble, self.command, ""]


@dataclass(frozen=True)
class QueuePlace:
    """Where a pending job stands: 1-based position among its queue's pending jobs, and the expected start."""

    position: int | None = None
    estimated_start: float | None = None  # epoch seconds, the scheduler's own estimate

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "estimated_start": self.estimated_start}


@dataclass
class Watch:
    """What a `watch_script` loop reported."""

    ready: str | None = None  # the READY payload: the job is ready (e.g. a kernel's ports)
    node: str | None = None
    ended: bool = False  # the job stopped being active before it was ready
    timed_out: bool = False


class Scheduler(ABC):
    """Runs jobs on one resource. Subclass it and register the class in `cybershuttle.schedulers`."""

    #: the entry-point name
    name: ClassVar[str] = ""
    #: the resource kinds (`kind:` of resources.yml) this scheduler serves; default: its own name
    kinds: ClassVar[tuple[str, ...]] = ()
    #: whether `submit` understands `Submission.array`
    arrays: ClassVar[bool] = False
    #: whether requests name partitions, accounts and QoS (checked against `resource.facts["partitions"]`)
    queues: ClassVar[bool] = False
    #: whether the scheduler's commands need a login shell (HPC sites put them on PATH through modules)
    login_shell: ClassVar[bool] = False
    #: whether jobs need python3 on the resource (a runner script)
    needs_python: ClassVar[bool] = True
    #: whether jobs run on other machines (compute nodes) than the resource's host: the host's
    #: files are then the cluster's shared storage, not the job's local disk
    runs_on_nodes: ClassVar[bool] = False
    #: whether `Submission.warn_before_s` is honoured (the job's own process gets SIGUSR1 before its walltime)
    warns: ClassVar[bool] = False

    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    @classmethod
    def served_kinds(cls) -> tuple[str, ...]:
        return cls.kinds or (cls.name,)

    # -- the resource ------------------------------------------------------
    def inspect(self, shell: Shell, facts: dict[str, Any]) -> list[Check]:
        """Registration checks beyond connect/python/lmod/conda/disk; may add to `facts`."""
        from ..resources import Check

        return [Check("cpus", True, False, f"{facts.get('cpus')} CPUs, {facts.get('memory_mb')} MB memory, "
                                          f"{facts.get('gpus', 0)} GPUs")]

    def load(self, shell: Shell, timeout: float) -> dict[str, Any]:
        """Live status for `compute list`: reachable, nodes, idle nodes, load."""
        load = shell.run("cat /proc/loadavg", timeout=timeout).stdout.split()[:1]
        return {"reachable": True, "idle_nodes": None, "nodes": 1, "load": float(load[0]) if load else None,
                "error": None}

    def start_rank(self, shell: Shell, partition: str | None) -> tuple[int, int]:
        """How soon a job would start: (0 now / 1 queued / 2 no such queue, jobs waiting ahead)."""
        return (0, 0)

    def usage(self, shell: Shell, since: str, user: str | None) -> list[dict[str, Any]] | None:
        """Accounting rows (see compute.usage), or None: the core then sums its own job records."""
        return None

    def job_id(self, native: str, token: str) -> str:
        """The catalog id of a new job: unique per resource."""
        return f"{self.resource.name}.{token}"

    # -- jobs --------------------------------------------------------------
    @abstractmethod
    def submit(self, shell: Shell, job: Submission) -> str:
        """Start the job; return its native id. Raise CybershuttleError (nothing started) when it cannot."""

    @abstractmethod
    def states(self, shell: Shell, jobs: list[Job]) -> list[Job]:
        """The jobs with their live state, exit code, times (and usage when known), in one call."""

    @abstractmethod
    def cancel(self, shell: Shell, job: Job) -> None:
        """Ask the job to end (it may take a moment; the caller waits)."""

    def extend(self, shell: Shell, job: Job, minutes: int) -> None:
        """Raise the running job's time limit by `minutes`; raise CybershuttleError saying why it cannot."""
        raise CybershuttleError(f"{self.resource.name} ({self.name}) cannot raise a job's time limit")

    def task_states(self, shell: Shell, job: Job, tasks: list[int]) -> dict[int, str]:
        """The state of some tasks of an array job (a `JobState` word each)."""
        raise CybershuttleError(f"{self.resource.name} ({self.name}) runs no job arrays")

    def queue_place(self, shell: Shell, job: Job) -> QueuePlace:
        """Where the pending job stands in its queue (nothing known by default: jobs start at once)."""
        return QueuePlace()

    # -- job arrays (template sweeps pack their points into array tasks) ----
    def array_limits(self, shell: Shell) -> dict[str, int | None]:
        """What bounds an array: `max_array_size` (task ids stay below it), `user_max_jobs` (the
        caller's jobs running at once), `user_max_submit` (queued and running); None: no limit known."""
        return {"max_array_size": None, "user_max_jobs": None, "user_max_submit": None}

    def free_cpus(self, shell: Shell, partition: str | None) -> tuple[int, int]:
        """(idle, total) CPUs where the jobs would run (`partition` None: the default queue)."""
        return (1, 1)

    def task_places(self, shell: Shell, job: Job, tasks: list[int]) -> dict[int, QueuePlace]:
        """Queue places of the pending `tasks` of an array job (those it knows nothing of are left out)."""
        return {}

    # -- on the resource ---------------------------------------------------
    @abstractmethod
    def state_command(self, job: Job) -> str:
        """A shell command printing the job's state, one `JobState` word a line (nothing once forgotten)."""

    @abstractmethod
    def enter_command(self, job: Job) -> str:
        """A shell command giving an interactive login shell inside the job's allocation."""

    def node_command(self, job: Job) -> str | None:
        """A shell command printing the node the job runs on; None: the resource's host itself."""
        return None

    def nodes(self, shell: Shell) -> list[str]:
        """Names of the compute nodes jobs may land on (node transports probe them at registration)."""
        return []

    def step_command(self, job: Job, command: str, node: str | None = None) -> str | None:
        """A shell command running `command` (a shell string) inside the job's allocation, on `node` (None:
        the scheduler's choice), with stdin/stdout passed through (the "allocation" transport starts its
        relay so); None: not possible."""
        return None

    def steps_refused(self, shell: Shell) -> str | None:
        """Registration: None when `step_command` works on this resource, else why not (one line)."""
        return f"the {self.name} scheduler starts nothing inside a job's allocation"

    def position_command(self, job: Job) -> str | None:
        """A shell command printing the pending job's 1-based queue position (None: no queue)."""
        return None

    def active_test(self, job: Job) -> str:
        """A shell condition that holds while the job is active."""
        words = "|".join(sorted(s.value for s in states.JobState if s.active))
        return f"{{ {self.state_command(job)}; }} 2>/dev/null | grep -qxE '({words})'"

    def until_done(self, job: Job, timeout: float | None) -> str:
        """A bash loop that returns when the job is no longer active (or after `timeout`)."""
        limit = f" && [ $SECONDS -lt {int(timeout) + 1} ]" if timeout is not None else ""
        return f"SECONDS=0; while {self.active_test(job)}{limit}; do sleep {POLL_S}; done"

    def follow_command(self, job: Job, offset: int) -> str:
        """Stream the job's log from byte `offset` until the job ends."""
        q = shlex.quote(job.log_path)
        return (f"tail -s {POLL_S} -c +{offset + 1} -F {q} 2>/dev/null & T=$!; "
                f"{self.until_done(job, None)}; sleep {POLL_S * 2}; kill $T 2>/dev/null; wait $T 2>/dev/null; true")

    def watch_script(self, job: Job, ready: str, timeout: float | None) -> str:
        """A bash loop speaking a line protocol until the job is ready, ends, or `timeout` passes.

        `ready` is a command that prints one line and succeeds once the job is
        ready (a runtime's: the kernel's ports). Lines: `STATE <state>` on each
        change (a pending job's queue position appended), `LOG <line>` for each
        `cybershuttle:` line the job writes (environment set-up), `NODE <node>`
        once it runs (so a job that dies before it is ready is named with its
        node) and again with `READY <payload>` once ready, `ENDED` when the job
        stopped first, `TIMEOUT`.
        """
        log = shlex.quote(job.log_path)
        words = "|".join(sorted(s.value for s in states.JobState if s.active))
        state = f"{{ {self.state_command(job)}; }} 2>/dev/null | head -n 1"
        position_cmd = self.position_command(job)
        # The queue position is looked up about once a second, not on every look.
        position = (f"if [ \"$S\" = PENDING ]; then if [ $((N % 20)) = 0 ]; then POS=$({position_cmd}); fi; "
                    "S=\"PENDING, position ${POS:-?} in the queue\"; fi; ") if position_cmd else ""
        node_cmd = self.node_command(job)
        # asked once, when the job first runs (or is found ready): ND holds it for the READY line
        node = (f"if [ -z \"$ND\" ]; then ND=$({{ {node_cmd}; }} 2>/dev/null); echo \"NODE $ND\"; fi; "
                if node_cmd else "")
        limit = f"[ $SECONDS -lt {int(timeout)} ] || {{ echo TIMEOUT; exit 4; }}; " if timeout else ""
        logs = (f"C=$(grep -c '^cybershuttle:' {log} 2>/dev/null || true); C=${{C:-0}}; if [ \"$C\" -gt \"$SEEN\" ]; "
                f"then grep '^cybershuttle:' {log} | sed -n \"$((SEEN+1)),${{C}}p\" | sed 's/^/LOG /'; SEEN=$C; fi; ")
        # While the job waits in the queue it cannot be ready: after PENDING_QUICK_LOOKS looks the loop
        # stops asking `ready` and slows to PENDING_POLL_S (an idle cluster's job runs within the quick looks).
        slow = f"[ \"$A\" = PENDING ] && [ $P -ge {PENDING_QUICK_LOOKS} ]"
        return (f"SECONDS=0; LAST=; SEEN=0; N=-1; P=0; A=; POS=; ND=; while true; do N=$((N+1)); "
                f"if ! {{ {slow}; }} && R=$({ready} 2>/dev/null); then {node}echo \"READY $R\"; exit 0; fi; "
                f"S=$({state}); A=$S; {position}if [ \"$S\" != \"$LAST\" ]; then echo \"STATE $S\"; LAST=$S; "
                f"if [ \"$S\" = RUNNING ]; then {node}:; fi; fi; {logs}"
                f"if ! printf '%s\\n' \"$A\" | grep -qxE '({words})'; then echo ENDED; exit 3; fi; "
                f"{limit}if [ \"$A\" = PENDING ]; then P=$((P+1)); else P=0; fi; "
                f"if {slow}; then sleep {PENDING_POLL_S}; else sleep {WATCH_POLL_S}; fi; done")

    def watch(self, job: Job, ready: str, timeout: float | None,
              progress: Callable[[str], None] | None = None, tries: int = 3,
              on_node: Callable[[str], None] | None = None) -> Watch:
        """Run `watch_script` on the resource; relay STATE/LOG lines to `progress` as they come,
        and the job's node to `on_node` as soon as it runs (it may be called again with the same node)."""
        result = Watch()
        sink = line_sink(lambda text: _read_line(text, result, progress, on_node))

        script = self.watch_script(job, ready, timeout)
        for attempt in range(tries):
            try:
                self.resource.shell().stream(script, sink, login_shell=self.login_shell)
                break
            except SSHError:
                if attempt == tries - 1:
                    raise
        return result


def _read_line(text: str, result: Watch, progress: Callable[[str], None] | None,
               on_node: Callable[[str], None] | None = None) -> None:
    word, _, rest = text.partition(" ")
    if word == "STATE" and progress is not None:
        progress(f"job {rest.lower()}")
    elif word == "LOG" and progress is not None:
        progress(rest)
    elif word == "READY":
        result.ready = rest
    elif word == "NODE":
        result.node = rest.strip() or None
        if result.node and on_node is not None:
            on_node(result.node)
    elif text == "ENDED":
        result.ended = True
    elif text == "TIMEOUT":
        result.timed_out = True
