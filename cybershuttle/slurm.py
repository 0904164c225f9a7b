"""The Slurm scheduler's command layer: the one place that names a Slurm
command, asks Slurm questions and reads its answers (the scheduler itself,
`cybershuttle.compute.schedulers.slurm`, composes these for the compute core).

Everything here takes a `shell`: any object with
`run(command, *, check, timeout, stdin, login_shell) -> Result` (an
`ssh.Connection`, or a local subprocess shell with the same method), so the
same code works on the login node and over SSH.

Slurm's machine-readable output is not one format but several:

* `--json` exists since 21.08, but its schema changes with every release
  (22.05 prints data_parser v0.0.38; 23.11+ v0.0.40/41/42, where states are
  lists and numbers are `{"set", "infinite", "number"}` objects), and it is
  incomplete: 22.05's `sinfo --json` has no partitions at all, and no version
  up to v0.0.41 says which partition is the default.
* 22.05's `squeue --json` ignores `-j`/`-u` and returns every job; its
  `exit_code` is a raw wait(2) status (768 means "exit 3").
* 22.05's `sacct --json` reports every non-zero exit *code* as
  `{"status": "SUCCESS", "return_code": 0}` (signals are right).

So each query reads JSON defensively, falls back to the `-o`/`-P` text
formats when the JSON is missing or not understood, fills the known gaps from
text, and both paths end in the same dataclasses.  Text output is always
requested with `SLURM_TIME_FORMAT=%s` so times come back as epoch seconds,
independent of the remote time zone.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import names, units
from .compute import states as _states
from .errors import CybershuttleError, RemoteCommandError

if TYPE_CHECKING:  # the one Shell protocol (compute/shell.py); here it only annotates
    from .compute.shell import Shell

#: seconds one Slurm query may take before it counts as hung
COMMAND_TIMEOUT_S = 60.0

#: the job states every Slurm word is mapped onto (the one vocabulary: compute/states.py)
STATES = tuple(s.value for s in _states.JobState)
#: states a job never leaves
FINAL_STATES: frozenset[str] = frozenset(s for s in STATES if _states.final(s))


@dataclass(frozen=True)
class Partition:
    """One partition; per-node values are the maximum over its nodes."""

    name: str
    default: bool
    state: str  # UP, DOWN, DRAIN, INACTIVE
    max_time_min: int | None  # None: unlimited
    nodes: int
    idle_nodes: int
    cpus_per_node: int
    memory_mb_per_node: int
    gpus_per_node: int
    gpu_types: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobState:
    """Slurm's answer for one job. `exit_code`/`signal`/`end` are set only once it is final."""

    job_id: str
    state: str  # one of STATES: a compute.states.JobState word
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    nodes: str | None = None
    start: float | None = None  # epoch seconds
    end: float | None = None

    @property
    def final(self) -> bool:
        return _states.final(self.state)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobUsage:
    """What one job consumed, from accounting (sacct)."""

    job_id: str
    name: str
    user: str
    state: str
    partition: str
    alloc_cpus: int
    alloc_gpus: int
    elapsed_s: float
    total_cpu_s: float  # CPU time actually used, summed over steps
    max_rss_mb: float | None  # peak resident memory of the largest step
    start: float | None
    end: float | None
    exit_code: int | None

    @property
    def cpu_hours(self) -> float:
        """Allocated core-hours (what the allocation is charged, not what was used)."""
        return self.alloc_cpus * self.elapsed_s / 3600.0

    @property
    def gpu_hours(self) -> float:
        return self.alloc_gpus * self.elapsed_s / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_hours": self.cpu_hours, "gpu_hours": self.gpu_hours}


# ----------------------------------------------------------------------------- public API


def version(shell: Shell) -> str | None:
    """The Slurm release on the other side ("22.05.8"), or None when Slurm is absent."""
    result = _run(shell, "sinfo --version")
    if not result.ok:
        return None
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", result.stdout)
    return match.group(1) if match else None


def partitions(shell: Shell) -> list[Partition]:
    """The partitions the caller can see, with their limits and node sizes.

    Raises RemoteCommandError (with Slurm's output) when neither `sinfo --json`
    nor the text format can be read: an empty list always means "no partitions".
    """
    js = _run(shell, "sinfo --json")
    accs: dict[str, _PartAcc] | None = None
    if js.ok:
        try:
            accs = _partitions_from_json(_load_json(js.stdout))
        except _Unparsable:
            accs = None
    if accs:
        if any(not acc.attrs_set for acc in accs.values()):
            # JSON lacks the default flag (every version up to v0.0.41) and, in
            # 22.05, all partition attributes: one short text query has them.
            summary = _run(shell, f"sinfo -h -o {shlex.quote(_SINFO_SUMMARY_FMT)}")
            if summary.ok:
                _merge_summary(accs, _parse_sinfo_summary(summary.stdout))
        if all(acc.attrs_set for acc in accs.values()):
            return [acc.build() for acc in accs.values()]
    text = _run(shell, f"sinfo -h -N -o {shlex.quote(_SINFO_FMT)}")
    if text.ok:
        try:
            return _parse_sinfo_text(text.stdout)
        except _Unparsable:
            pass
    raise RemoteCommandError(
        "cannot read the Slurm partitions: `sinfo --json` gave "
        f"{_describe(js)}; `sinfo -o` gave {_describe(text)}"
    )


def job_states(shell: Shell, job_ids: list[str]) -> dict[str, JobState]:
    """The live state of `job_ids`, keyed by the ids as given.

    One batched squeue call (the controller knows queued and recently ended
    jobs), then one batched sacct call for the ids squeue no longer knows or
    knows without an exit code. Ids neither knows come back as UNKNOWN.
    Array tasks (`123_4`), whole arrays (`123`: the most telling task) and
    steps (`123.batch`, from sacct) are understood.
    """
    ids = _validate_ids(job_ids)
    if not ids:
        return {}
    found: dict[str, JobState] = {}
    job_level = [jid for jid in ids if "." not in jid]  # squeue knows no steps
    live = _squeue_index(shell, job_level) if job_level else _Index()
    need_acct: list[str] = []
    for jid in ids:
        state = live.pick(jid)
        if state is not None:
            found[jid] = state
        if state is None or (state.final and state.exit_code is None):
            need_acct.append(jid)
    if need_acct:
        try:
            jobs = _sacct_jobs(shell, ["-j", ",".join(need_acct)])
        except RemoteCommandError:
            jobs = []  # no accounting on this site: what squeue said is all there is
        acct = _Index()
        for job in jobs:
            job.add_to(acct)
        for jid in need_acct:
            state = acct.pick(jid)
            if state is None:
                continue
            if jid in found:  # squeue's view stays; accounting adds only the exit code it lacks
                found[jid] = replace(found[jid], exit_code=state.exit_code, signal=state.signal)
            else:
                found[jid] = state
    return {jid: found.get(jid) or JobState(jid, "UNKNOWN") for jid in ids}


def usage(shell: Shell, *, since: str | None = None, user: str | None = None,
          job_ids: list[str] | None = None) -> list[JobUsage]:
    """Accounting records (one per job, steps folded in) from sacct.

    `since` is any start time Slurm accepts (YYYY-MM-DD[THH:MM]); without it
    and without `job_ids` sacct reports jobs since midnight. `user` defaults
    to the caller.
    """
    args: list[str] = []
    if job_ids is not None:
        ids = _validate_ids(job_ids)
        if not ids:
            return []
        args += ["-j", ",".join(ids)]
    if since:
        args += ["-S", since]
    if user:
        args += ["-u", user]
    return [job.usage() for job in _sacct_jobs(shell, args) if job.is_allocation]


def parse_time_limit(value: Any) -> int | None:
    """Minutes in a Slurm time limit; None for unlimited or unset.

    Accepts `UNLIMITED`/`INFINITE`, `30` (minutes), `5:00` (mm:ss),
    `1:00:00`, `2-00:00:00`, `2-12` (days-hours), plain numbers and JSON
    number objects. Seconds round up: a 90 s limit lets a job run 2 minutes' worth.
    """
    if value is None or isinstance(value, (dict, int, float)) and not isinstance(value, bool):
        number = _num(value)
        return None if number is None else int(math.ceil(number))
    text = str(value).strip()
    if text.upper() in ("", "UNLIMITED", "INFINITE", "NONE", "NOT_SET", "PARTITION_LIMIT", "N/A"):
        return None
    try:
        seconds = units.walltime_seconds(text)
    except ValueError:
        raise ValueError(f"not a Slurm time limit: {value!r}") from None
    return math.ceil(seconds / 60)


def parse_exit_code(value: Any) -> tuple[int | None, int | None]:
    """(exit code, signal) from any form Slurm prints; (None, None) if unknown.

    `"3:0"`/`"0:15"` (text), a raw wait status int (22.05 squeue JSON: 768 is
    exit 3, 15 is SIGTERM), or a JSON object `{"status", "return_code",
    "signal"}` in its v0.0.38 and v0.0.40+ shapes. A signalled job reads
    (0, signal), as Slurm's own text does.
    """
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        raise ValueError(f"not an exit code: {value!r}")
    if isinstance(value, int):
        if value & 0x7F:
            return 0, value & 0x7F
        return (value >> 8) & 0xFF, 0
    if isinstance(value, dict):
        statuses = value.get("status")
        if isinstance(statuses, str):
            statuses = [statuses]
        statuses = [str(s).upper() for s in statuses or []]
        if "PENDING" in statuses:
            return None, None
        code = _num(value.get("return_code"))
        sig_obj = value.get("signal")
        sig = _num(sig_obj.get("id", sig_obj.get("signal_id"))) if isinstance(sig_obj, dict) else _num(sig_obj)
        signalled = "SIGNALED" in statuses or "CORE_DUMPED" in statuses
        if code is None and not sig and not signalled and "SUCCESS" not in statuses:
            return None, None
        return int(code or 0), int(sig or 0)
    match = re.fullmatch(r"\s*(-?\d+)(?::(\d+))?\s*", str(value))
    if not match:
        raise ValueError(f"not an exit code: {value!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def normalize_state(raw: Any) -> str:
    """One of STATES for any state Slurm prints.

    `CANCELLED by 123` -> CANCELLED; compact codes (`CD`, `PD`) are understood;
    lists (v0.0.40+ JSON: base state plus flags) give their base state, except
    that a COMPLETING flag wins, as it does in squeue's own text.
    """
    if raw is None:
        return "UNKNOWN"
    if isinstance(raw, (list, tuple)):
        names = [_state_word(x) for x in raw]
        if "COMPLETING" in names or "CG" in names:
            return "COMPLETING"
        for name in names:
            if name in _BASE_STATES:
                return _BASE_STATES[name]
        for name in names:
            if name in _FLAG_STATES:
                return _FLAG_STATES[name]
        return "UNKNOWN"
    word = _state_word(raw)
    return _BASE_STATES.get(word) or _FLAG_STATES.get(word) or "UNKNOWN"


def parse_memory_mb(value: Any) -> float:
    """Megabytes in a Slurm memory size: `4000M`, `16G`, `1.5T`, `123K`, `0`.

    Units are binary (K = 1024 bytes), as Slurm uses them; no unit means MB.
    A trailing `n`/`c` (per node / per CPU, in ReqMem) is ignored.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(units.size_mb(text[:-1] if text[-1:] in ("n", "c") else text))
    except ValueError:
        raise ValueError(f"not a Slurm memory size: {value!r}") from None


def parse_gres(text: Any) -> tuple[int, list[str]]:
    """(GPU count, GPU types) in a node's gres: `gpu:a100:4(S:0-1)`, `gpu:2`, `(null)`."""
    if not text or not isinstance(text, str):
        return 0, []
    text = re.sub(r"\([^)]*\)", "", text)  # socket/index annotations may contain commas
    count, types = 0, []
    for item in text.split(","):
        parts = item.strip().split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) > 1 and re.fullmatch(r"\d+", parts[-1]):
            n, type_parts = int(parts[-1]), parts[1:-1]
        else:  # "gpu" or "gpu:a100": one GPU
            n, type_parts = 1, parts[1:]
        count += n
        if type_parts and type_parts[0] and type_parts[0] not in types:
            types.append(type_parts[0])
    return count, types


# ----------------------------------------------------------------------------- commands for the scheduler
# cybershuttle.compute.schedulers.slurm composes these; the `*_command` functions return
# shell text for the loops that run on the login node (see schedulers/base.py).


def batch_script(directives: list[str], body: list[str]) -> str:
    """A batch script: `#SBATCH` lines, then `body` (run by a login bash, so modules work).

    The last gate for every header value (callers check theirs where they enter): a newline in
    one would end its `#SBATCH` line and add directives or commands of the value's choosing.
    """
    for d in directives:
        flag, _, value = d.partition("=")
        names.script_value(value, flag)
        names.script_value(flag, "#SBATCH directive")
    return "\n".join(["#!/bin/bash -l", *(f"#SBATCH {d}" for d in directives), *body])


def submit(shell: Shell, jobdir: str, script: str, where: str) -> str:
    """Write `script` to JOBDIR/job.sh (a 0700 directory) and submit it; returns the job id."""
    q = shlex.quote(jobdir)
    out = shell.run(f"umask 077 && mkdir -p {q} && cat > {q}/job.sh && sbatch --parsable {q}/job.sh",
                    stdin=script.encode(), login_shell=True, timeout=120).stdout.strip()
    native = out.splitlines()[-1].split(";")[0] if out else ""
    if not native.isdigit():
        raise CybershuttleError(f"sbatch on {where} did not return a job id: {out!r}")
    return native


def cancel(shell: Shell, job_id: str) -> None:
    shell.run(f"scancel {shlex.quote(_validate_ids([job_id])[0])}", login_shell=True, timeout=60)


def extend_time(shell: Shell, job_id: str, minutes: int) -> None:
    """Raise the job's time limit by `minutes`; most sites allow it only to operators (Slurm says why)."""
    jid = _validate_ids([job_id])[0]
    result = _run(shell, f"scontrol update JobId={shlex.quote(jid)} TimeLimit=+{int(minutes)}")
    if result.exit_code != 0:
        raise TimeLimitRefused(f"Slurm refused to raise job {jid}'s time limit ({_describe(result)})")


class TimeLimitRefused(CybershuttleError):
    """The site does not let this user raise a job's time limit."""


def state_command(job_id: str) -> str:
    """Prints the job's state (one line per array task), in the JobState vocabulary."""
    return f"squeue -h -j {shlex.quote(job_id)} -o %T 2>/dev/null | sed {_STATE_SED}"


def node_names(shell: Shell) -> list[str]:
    """The nodes that answer Slurm (`sinfo -N -r`), each once; [] when sinfo fails."""
    out = _run(shell, "sinfo -h -N -r -o %N")
    return list(dict.fromkeys(out.stdout.split())) if out.ok else []


def node_command(job_id: str) -> str:
    # %B: the node running the batch script, where a runtime's kernel is; for a multi-node job %N
    # lists them all ("node[1-2]"). "n/a" while pending: no node yet.
    return f"squeue -h -j {shlex.quote(job_id)} -o %B 2>/dev/null | grep -vx n/a"


def position_command(job_id: str, partition: str | None) -> str:
    """Prints the pending job's position among its partition's pending jobs, by priority."""
    return (f"squeue -h -t PD -p {shlex.quote(partition or '')} --sort=-p,i -o %i 2>/dev/null "
            f"| grep -n -x {shlex.quote(job_id)} | cut -d: -f1")


def enter_command(job_id: str) -> str:
    """A login shell inside the job's allocation, beside its own steps."""
    return f"srun --jobid={shlex.quote(job_id)} --overlap --pty bash -l"


def step_command(job_id: str, command: str, workdir: str, node: str | None = None) -> str:
    """Runs `command` (a shell string) as one task inside the job's allocation, beside its own steps, with
    stdin and stdout passed through unbuffered; it takes no GPU and no CPU from the job's own step.

    The "allocation" transport starts its relay so, but carries no kernel bytes over this stdio: measured
    here, bursts of small writes from the task to srun wait ~44 ms (slurmstepd's Nagle meeting srun's
    delayed ACK), 10.0 ms median / 48.5 ms p90 per cell against 6.4 / 7.9 ms direct."""
    where = f"--nodelist={shlex.quote(node)} " if node else ""  # a multi-node job: the kernel's node
    return (f"srun --jobid={shlex.quote(job_id)} --overlap --nodes=1 --ntasks=1 --gres=none --unbuffered --quiet "
            f"{where}--chdir={shlex.quote(workdir)} bash -c {shlex.quote(command)}")


def steps_refused(shell: Shell) -> str | None:
    """None when srun can start a step beside a running job's own (`--overlap`, Slurm 20.11+), else why not."""
    out = shell.run("srun --help 2>&1", login_shell=True, check=False, timeout=30).stdout
    if "--jobid" not in out:
        return "no srun in a login shell"
    if "--overlap" not in out:
        return "this srun has no --overlap (Slurm 20.11 or newer starts steps beside a job's own)"
    return None


def pending_count(shell: Shell, partition: str) -> int:
    """How many jobs wait in `partition`."""
    out = shell.run(f"squeue -h -t PD -p {shlex.quote(partition)} -o %i | wc -l", login_shell=True,
                    check=False, timeout=30).stdout.strip()
    return int(out) if out.isdigit() else 0


def queue_place(shell: Shell, job_id: str, partition: str | None) -> tuple[int | None, float | None]:
    """(position among the partition's pending jobs, Slurm's expected start) of a pending job."""
    out = shell.run(f"echo \"P $({position_command(job_id, partition)})\"; "
                    f"{_TEXT_ENV} squeue --start -h -j {shlex.quote(job_id)} -o %S 2>/dev/null | sed 's/^/S /'",
                    login_shell=True, check=False, timeout=COMMAND_TIMEOUT_S).stdout.splitlines()
    position = start = None
    for line in out:
        word, _, value = line.partition(" ")
        value = value.strip()
        if word == "P" and value.isdigit():
            position = int(value)
        elif word == "S" and start is None:
            start = _ts(value)
    return position, start


# ----------------------------------------------------------------------------- helpers

_SINFO_FMT = "%P|%a|%l|%N|%c|%m|%G|%t"
_SINFO_SUMMARY_FMT = "%P|%a|%l"
_SQUEUE_FMT = "%i|%T|%r|%N|%S|%e"
# JobName goes last: it is the one free-text column, and a "|" in it must not shift the others.
_SACCT_FIELDS = ("JobID", "State", "ExitCode", "Start", "End", "ElapsedRaw", "AllocCPUS", "AllocTRES",
                 "TotalCPU", "MaxRSS", "NodeList", "Partition", "User", "Reason", "JobName")
_TEXT_ENV = "env SLURM_TIME_FORMAT=%s"  # `env` works whatever the login shell (csh too)
_JOB_ID_RE = re.compile(r"[0-9]+(_[0-9]+)?(\.\w+)?")

_BASE_STATES = {s: s for s in STATES if s != "UNKNOWN"}
_BASE_STATES.update({
    "BOOT_FAIL": "NODE_FAIL", "DEADLINE": "TIMEOUT", "OOM": "OUT_OF_MEMORY",
    "PD": "PENDING", "R": "RUNNING", "CG": "COMPLETING", "CD": "COMPLETED", "F": "FAILED",
    "CA": "CANCELLED", "TO": "TIMEOUT", "NF": "NODE_FAIL", "PR": "PREEMPTED", "S": "SUSPENDED",
    "BF": "NODE_FAIL", "DL": "TIMEOUT",
})
# Flags squeue prints instead of the base state; mapped to the base state they imply.
_FLAG_STATES = {
    "CONFIGURING": "RUNNING", "CF": "RUNNING", "RESIZING": "RUNNING", "SIGNALING": "RUNNING",
    "SI": "RUNNING", "REQUEUED": "PENDING", "RQ": "PENDING", "REQUEUE_HOLD": "PENDING",
    "RH": "PENDING", "REQUEUE_FED": "PENDING", "RF": "PENDING", "SPECIAL_EXIT": "PENDING",
    "SE": "PENDING", "RESV_DEL_HOLD": "PENDING", "RD": "PENDING", "POWER_UP_NODE": "PENDING",
    "STAGE_OUT": "COMPLETING", "SO": "COMPLETING", "STOPPED": "SUSPENDED", "ST": "SUSPENDED",
    "REVOKED": "CANCELLED", "RV": "CANCELLED", "LAUNCH_FAILED": "FAILED",
}
# squeue's own words that are not JobState words, rewritten on the login node (state_command).
_STATE_SED = shlex.quote(";".join(f"s/^{word}$/{state}/" for word, state in {**_BASE_STATES, **_FLAG_STATES}.items()
                                  if len(word) > 2 and word != state))
# Node state flags (JSON) under which an idle node cannot take a job now.
_UNAVAILABLE_NODE_FLAGS = frozenset({
    "DRAIN", "DRAINED", "DRAINING", "NOT_RESPONDING", "NO_RESPOND", "MAINTENANCE", "RESERVED",
    "FAIL", "POWERING_DOWN", "POWER_DOWN", "REBOOT_REQUESTED", "REBOOT_ISSUED", "DOWN",
    "INVALID_REG", "FUTURE", "INVALID",
})


class _Unparsable(Exception):
    """Output that is not in a shape this module understands (triggers the fallback)."""


def _run(shell: Shell, command: str) -> Any:
    return shell.run(command, check=False, timeout=COMMAND_TIMEOUT_S)


def _describe(result: Any) -> str:
    if result is None:
        return "nothing"
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return f"exit {result.exit_code}: {detail[-1][:300] if detail else 'no output'}"


def _validate_ids(job_ids: Iterable[Any]) -> list[str]:
    if isinstance(job_ids, str):
        job_ids = [job_ids]
    out: list[str] = []
    for raw in job_ids:
        jid = str(raw).strip()
        if not _JOB_ID_RE.fullmatch(jid):
            raise CybershuttleError(
                f"{raw!r} is not a Slurm job id: use digits, optionally _TASK and .STEP (123, 123_4, 123.batch)"
            )
        if jid not in out:
            out.append(jid)
    return out


def _load_json(text: str) -> Any:
    """JSON from a command's stdout, tolerating lines a login script printed before it."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    for match in re.finditer(r"^\{", text, re.MULTILINE):
        try:
            return json.JSONDecoder().raw_decode(text[match.start():])[0]
        except ValueError:
            continue
    raise _Unparsable("not JSON")


def _num(value: Any) -> float | None:
    """A number from an int, a numeric string or a v0.0.40+ `{"set", "infinite", "number"}` object.

    None for null, unset and infinite values.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        if value.get("infinite") or value.get("set") is False:
            return None
        return _num(value.get("number"))
    if isinstance(value, (int, float)):
        return value
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _int(value: Any) -> int:
    """An int from a count that sinfo may print as "32+" (minimum of a group)."""
    number = _num(str(value).rstrip("+")) if isinstance(value, str) else _num(value)
    if number is None:
        raise ValueError(f"not a number: {value!r}")
    return int(number)


def _ts(value: Any) -> float | None:
    """Epoch seconds, or None for the 0/"Unknown"/"N/A"/"NONE" Slurm uses for no time."""
    number = _num(value)
    return float(number) if number is not None and number > 0 else None


def _duration_s(text: str) -> float:
    """Seconds in an elapsed/CPU time: `[D-][HH:]MM:SS[.mmm]`."""
    text = text.strip()
    if not text:
        return 0.0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return days * 86400 + seconds


def _none_if(value: Any, *empty: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text == "" or text in empty else text


def _state_word(raw: Any) -> str:
    words = str(raw).strip().upper().split()
    return words[0].rstrip("+") if words else ""


def _partition_state(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else ""
    text = str(raw).strip().upper().rstrip("*")
    return {"INACT": "INACTIVE", "": "UNKNOWN"}.get(text, text)


def _text_node_idle(state: str) -> bool:
    # sinfo's compact state: "idle" plus a suffix: "~" powered off (boots on demand),
    # "#" powering up and "-" planned still take jobs; "*", "!", "%", "$", "@", "^" do not.
    state = state.strip().lower()
    return state.startswith("idle") and state[4:] in ("", "~", "#", "-")


def _json_node_idle(state: Any, flags: Iterable[Any] = ()) -> bool:
    names = [str(s).upper() for s in (state if isinstance(state, (list, tuple)) else [state])]
    names += [str(f).upper() for f in flags or ()]
    return "IDLE" in names and not (set(names) & _UNAVAILABLE_NODE_FLAGS)


@dataclass
class _PartAcc:
    """A partition being assembled from per-node or per-group records."""

    name: str
    default: bool = False
    state: str = "UNKNOWN"
    max_time_min: int | None = None
    attrs_set: bool = False  # default/state/max_time came from a source that has them
    nodes: int = 0
    idle_nodes: int = 0
    cpus: int = 0
    mem: int = 0
    gpus: int = 0
    gpu_types: list[str] = field(default_factory=list)

    def add_node(self, cpus: int, mem: int, gres: Any, idle: bool, count: int = 1,
                 idle_count: int | None = None) -> None:
        self.nodes += count
        self.idle_nodes += (count if idle else 0) if idle_count is None else idle_count
        self.cpus = max(self.cpus, cpus)
        self.mem = max(self.mem, mem)
        gpus, types = parse_gres(gres)
        self.gpus = max(self.gpus, gpus)
        for t in types:
            if t not in self.gpu_types:
                self.gpu_types.append(t)

    def build(self) -> Partition:
        return Partition(self.name, self.default, self.state, self.max_time_min, self.nodes,
                         self.idle_nodes, self.cpus, self.mem, self.gpus, sorted(self.gpu_types))


def _partitions_from_json(data: Any) -> dict[str, _PartAcc]:
    if not isinstance(data, dict):
        raise _Unparsable("not a JSON object")
    accs: dict[str, _PartAcc] = {}
    try:
        if isinstance(data.get("sinfo"), list):  # v0.0.39+: one entry per partition and node group
            for entry in data["sinfo"]:
                part = entry.get("partition") or {}
                name = part.get("name")
                if not name:
                    continue
                acc = accs.setdefault(name, _PartAcc(name))
                nodes = entry.get("nodes") or {}
                total = int(_num(nodes.get("total")) or 0)
                acc.add_node(int(_num((entry.get("cpus") or {}).get("maximum")) or 0),
                             int(_num((entry.get("memory") or {}).get("maximum")) or 0),
                             (entry.get("gres") or {}).get("total"), False, count=total,
                             idle_count=int(_num(nodes.get("idle")) or 0))
                maximums = part.get("maximums") or {}
                state = (part.get("partition") or {}).get("state")
                if "time" in maximums and state:
                    acc.state = _partition_state(state)
                    acc.max_time_min = parse_time_limit(maximums.get("time"))
                    flags = [str(f).upper() for f in part.get("flags") or []]
                    if "DEFAULT" in flags or isinstance(part.get("default"), bool):
                        # Versions that say which partition is the default.
                        acc.default = "DEFAULT" in flags or part.get("default") is True
                        acc.attrs_set = True
        elif isinstance(data.get("nodes"), list):  # v0.0.38 (22.05): nodes only, no partitions
            for node in data["nodes"]:
                for name in node.get("partitions") or []:
                    acc = accs.setdefault(name, _PartAcc(name))
                    acc.add_node(int(_num(node.get("cpus")) or 0), int(_num(node.get("real_memory")) or 0),
                                 node.get("gres"), _json_node_idle(node.get("state"), node.get("state_flags")))
        else:
            raise _Unparsable("neither `sinfo` nor `nodes` in sinfo JSON")
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Unparsable(f"unexpected sinfo JSON: {exc}") from exc
    return accs


def _merge_summary(accs: dict[str, _PartAcc], summary: dict[str, tuple[bool, str, int | None]]) -> None:
    for name, acc in accs.items():
        if name in summary:
            acc.default, acc.state, acc.max_time_min = summary[name]
            acc.attrs_set = True


def _parse_sinfo_text(text: str) -> list[Partition]:
    """Partitions from `sinfo -h -N -o '%P|%a|%l|%N|%c|%m|%G|%t'` (one line per node and partition)."""
    accs: dict[str, _PartAcc] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        fields = line.split("|")
        if len(fields) != 8:
            continue  # a banner or warning, not ours
        part, avail, limit, _node, cpus, mem, gres, state = (f.strip() for f in fields)
        try:
            name = part.rstrip("*")
            acc = accs.setdefault(name, _PartAcc(name))
            acc.default = part.endswith("*")
            acc.state = _partition_state(avail)
            acc.max_time_min = parse_time_limit(limit)
            acc.attrs_set = True
            acc.add_node(_int(cpus), _int(mem), gres, _text_node_idle(state))
        except ValueError:
            continue
    if lines and not accs:
        raise _Unparsable(f"no line of sinfo output was understood: {lines[0]!r}")
    return [acc.build() for acc in accs.values()]


def _parse_sinfo_summary(text: str) -> dict[str, tuple[bool, str, int | None]]:
    """{name: (default, state, max_time_min)} from `sinfo -h -o '%P|%a|%l'`."""
    out: dict[str, tuple[bool, str, int | None]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 3 or not fields[0]:
            continue
        try:
            out[fields[0].rstrip("*")] = (fields[0].endswith("*"), _partition_state(fields[1]),
                                          parse_time_limit(fields[2]))
        except ValueError:
            continue
    return out


# -- job records ------------------------------------------------------------------------


class _Index:
    """Job states by id, answering for array tasks and whole arrays too."""

    def __init__(self) -> None:
        self.exact: dict[str, JobState] = {}
        # pending array records cover a task range: (array id) -> [(task test, state)]
        self.groups: dict[str, list[tuple[Callable[[int], bool], JobState]]] = {}

    def add(self, jid: str, state: JobState) -> None:
        self.exact[jid] = state

    def add_group(self, array_id: str, tasks: Callable[[int], bool], state: JobState) -> None:
        self.groups.setdefault(array_id, []).append((tasks, state))

    def pick(self, jid: str) -> JobState | None:
        if jid in self.exact:
            return replace(self.exact[jid], job_id=jid)
        array_id, _, task = jid.partition("_")
        if task and "." not in task:
            for tasks, state in self.groups.get(array_id, []):
                if tasks(int(task)):
                    return replace(state, job_id=jid)
            return None
        if not task and jid.isdigit():
            members = [s for key, s in self.exact.items() if key.startswith(jid + "_") and "." not in key]
            members += [s for _, s in self.groups.get(jid, [])]
            if members:
                return _aggregate(jid, members)
        return None


def _aggregate(jid: str, members: list[JobState]) -> JobState:
    """A whole array's state: the most active task while any runs, else the first that did not complete."""
    active = [m for m in members if not m.final]
    if active:
        order = ("RUNNING", "COMPLETING", "SUSPENDED", "PENDING")
        rep = min(active, key=lambda m: order.index(m.state) if m.state in order else len(order))
    else:
        failed = [m for m in members if m.state != "COMPLETED"]
        rep = failed[0] if failed else members[0]
    starts = [m.start for m in members if m.start is not None]
    ends = [m.end for m in members if m.end is not None]
    return replace(rep, job_id=jid, start=min(starts) if starts else None,
                   end=max(ends) if ends and not active else None)


def _job_state(jid: str, state: str, reason: Any, exit_pair: tuple[int | None, int | None],
               nodes: Any, start: Any, end: Any) -> JobState:
    """A JobState with Slurm's placeholders removed and exit/end only once final."""
    final = _states.final(state)
    code, sig = exit_pair if final else (None, None)
    return JobState(
        job_id=jid, state=state, reason=_none_if(reason, "None", "(null)"),
        exit_code=code, signal=sig if code is not None or sig else None,
        nodes=_none_if(nodes, "None assigned", "(null)"),
        start=None if state == "PENDING" else _ts(start), end=_ts(end) if final else None,
    )


def _task_test(spec: Any) -> Callable[[int], bool]:
    """A membership test for an array task spec: "1-3,5,7-11:2%4", "[1-3]" or a hex bitmap "0xE"."""
    text = str(spec or "").strip().strip("[]").split("%")[0]
    if text.lower().startswith("0x"):  # 22.05 sacct JSON gives pending tasks as a bitmap
        bits = int(text, 16)
        return lambda t: t >= 0 and bool(bits >> t & 1)
    ranges: list[tuple[int, int, int]] = []
    for item in filter(None, text.split(",")):
        rng, _, step = item.partition(":")
        lo, _, hi = rng.partition("-")
        ranges.append((int(lo), int(hi or lo), int(step or 1)))
    return lambda t: any(lo <= t <= hi and (t - lo) % step == 0 for lo, hi, step in ranges)


def _task_ranges(spec: Any) -> str:
    """sacct's own form of a task set ("1-3,5") from 22.05 JSON's hex bitmap ("0x2E")."""
    text = str(spec).strip()
    if not text.lower().startswith("0x"):
        return text
    bits, tasks = int(text, 16), []
    while bits >> len(tasks):
        tasks.append(bool(bits >> len(tasks) & 1))
    ranges, t = [], 0
    while t < len(tasks):
        if tasks[t]:
            end = t
            while end + 1 < len(tasks) and tasks[end + 1]:
                end += 1
            ranges.append(str(t) if end == t else f"{t}-{end}")
            t = end
        t += 1
    return ",".join(ranges)


def _squeue_index(shell: Shell, ids: list[str]) -> _Index:
    # --me: newer Slurm filters server-side (22.05 ignores it and returns every job).
    js = _run(shell, "squeue --json --me -t all")
    if js.ok:
        try:
            return _squeue_json_index(_load_json(js.stdout))
        except _Unparsable:
            pass
    text = _run(shell, f"{_TEXT_ENV} squeue -h -t all -r -j {shlex.quote(','.join(ids))} "
                       f"-o {shlex.quote(_SQUEUE_FMT)}")
    if text.ok:
        return _parse_squeue_text(text.stdout)
    if "invalid job id" in (text.stderr + text.stdout).lower():
        return _Index()  # squeue errors out when it knows none of the ids
    raise RemoteCommandError(
        f"cannot read job states: `squeue --json` gave {_describe(js)}; `squeue -o` gave {_describe(text)}"
    )


def _squeue_json_index(data: Any) -> _Index:
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise _Unparsable("no `jobs` list in squeue JSON")
    index = _Index()
    try:
        for job in data["jobs"]:
            state = _job_state(
                "", normalize_state(job.get("job_state")), job.get("state_reason"),
                parse_exit_code(job.get("exit_code")), job.get("nodes"), job.get("start_time"),
                job.get("end_time"),
            )
            array_id = _num(job.get("array_job_id"))
            task_id = _num(job.get("array_task_id"))
            if array_id and task_id is not None:
                index.add(f"{int(array_id)}_{int(task_id)}", state)
            elif array_id and job.get("array_task_string"):
                index.add_group(str(int(array_id)), _task_test(job["array_task_string"]), state)
            else:
                index.add(str(int(_num(job.get("job_id")))), state)
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Unparsable(f"unexpected squeue JSON: {exc}") from exc
    return index


def _parse_squeue_text(text: str) -> _Index:
    """Job states from `squeue -h -r -o '%i|%T|%r|%N|%S|%e'` with SLURM_TIME_FORMAT=%s."""
    index = _Index()
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 6:
            continue
        jid, state, reason, nodes, start, end = (f.strip() for f in fields)
        index.add(jid, _job_state(jid, normalize_state(state), reason, (None, None), nodes, start, end))
    return index


@dataclass
class _AcctRecord:
    """One sacct line (allocation or step), from JSON or text."""

    job_id: str  # as sacct names it: 12, 12.batch, 8_1, 17_[1-3]
    state: str
    reason: str | None = None
    exit: tuple[int | None, int | None] = (None, None)
    start: float | None = None
    end: float | None = None
    elapsed_s: float = 0.0
    alloc_cpus: int = 0
    alloc_gpus: int = 0
    total_cpu_s: float = 0.0
    max_rss_mb: float | None = None
    nodes: str | None = None
    partition: str = ""
    user: str = ""
    name: str = ""
    steps: list[_AcctRecord] = field(default_factory=list)

    @property
    def is_allocation(self) -> bool:
        return "." not in self.job_id

    def folded(self) -> _AcctRecord:
        """The allocation with its steps' usage folded in."""
        if not self.steps:
            return self
        rss = [s.max_rss_mb for s in self.steps if s.max_rss_mb is not None]
        code, sig = self.exit
        if self.state != "COMPLETED" and not code and not sig:
            # scancel/timeouts: Slurm records the signal on the batch step only.
            batch = next((s for s in self.steps if s.job_id.endswith(".batch")), None)
            if batch is not None and batch.exit[1]:
                sig = batch.exit[1]
        # Text sacct already sums the steps on the allocation line; 22.05 JSON leaves it 0.
        return replace(self, total_cpu_s=max(self.total_cpu_s, sum(s.total_cpu_s for s in self.steps)),
                       max_rss_mb=max(rss) if rss else None, exit=(code, sig))

    def usage(self) -> JobUsage:
        rec = self.folded()
        final = _states.final(rec.state)
        return JobUsage(
            job_id=rec.job_id, name=rec.name, user=rec.user, state=rec.state, partition=rec.partition,
            alloc_cpus=rec.alloc_cpus, alloc_gpus=rec.alloc_gpus, elapsed_s=rec.elapsed_s,
            total_cpu_s=round(rec.total_cpu_s, 6), max_rss_mb=rec.max_rss_mb,
            start=None if rec.state == "PENDING" else rec.start, end=rec.end if final else None,
            exit_code=rec.exit[0] if final else None,
        )

    def add_to(self, index: _Index) -> None:
        rec = self.folded()
        array_id, _, tasks = rec.job_id.partition("_")
        state = _job_state(rec.job_id, rec.state, rec.reason, rec.exit, rec.nodes, rec.start, rec.end)
        if tasks.startswith("["):  # a pending array's record covers a task range
            index.add_group(array_id, _task_test(tasks), state)
        else:
            index.add(rec.job_id, state)
        for step in rec.steps:
            index.add(step.job_id, _job_state(step.job_id, step.state, step.reason, step.exit, step.nodes,
                                              step.start, step.end))


def _sacct_jobs(shell: Shell, args: list[str]) -> list[_AcctRecord]:
    """sacct records for `args` (already validated; quoted here): JSON, else `-P` text."""
    quoted = " ".join(shlex.quote(a) for a in args)
    js = _run(shell, f"sacct --json {quoted}")
    if js.ok:
        try:
            jobs = _parse_sacct_json(_load_json(js.stdout))
        except _Unparsable:
            jobs = None
        if jobs is not None:
            _repair_exit_codes(shell, jobs)
            return jobs
    text = _run(shell, f"{_TEXT_ENV} sacct -P -n -o {','.join(_SACCT_FIELDS)} {quoted}")
    if text.ok:
        return _parse_sacct_text(text.stdout)
    raise RemoteCommandError(
        f"cannot read accounting: `sacct --json` gave {_describe(js)}; `sacct -P` gave {_describe(text)}"
    )


def _repair_exit_codes(shell: Shell, jobs: list[_AcctRecord]) -> None:
    """Fill exit codes that sacct JSON lost (22.05 prints every exit code as 0).

    A FAILED record with exit 0 and no signal contradicts itself; one batched
    `sacct -P` call gives those records their real codes.
    """
    suspect = [r for job in jobs for r in [job, *job.steps]
               if r.state == "FAILED" and not r.exit[0] and not r.exit[1]]
    if not suspect:
        return
    ids = sorted({r.job_id.split(".")[0] for r in suspect})
    text = _run(shell, f"sacct -P -n -o JobID,ExitCode -j {shlex.quote(','.join(ids))}")
    if not text.ok:
        return
    codes: dict[str, tuple[int | None, int | None]] = {}
    for line in text.stdout.splitlines():
        jid, _, code = line.partition("|")
        try:
            codes[jid.strip()] = parse_exit_code(code.strip())
        except ValueError:
            continue
    for rec in suspect:
        if rec.job_id in codes:
            rec.exit = codes[rec.job_id]


def _parse_sacct_json(data: Any) -> list[_AcctRecord]:
    """Allocation records, steps attached, from `sacct --json` (v0.0.38 and v0.0.40+ shapes)."""
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise _Unparsable("no `jobs` list in sacct JSON")
    out: list[_AcctRecord] = []
    try:
        for job in data["jobs"]:
            jid = str(int(_num(job.get("job_id"))))
            array = job.get("array") or {}
            array_id = _num(array.get("job_id"))
            task_id = _num(array.get("task_id"))
            if array_id and task_id is not None:
                jid = f"{int(array_id)}_{int(task_id)}"
            elif array_id and array.get("task"):
                jid = f"{int(array_id)}_[{_task_ranges(array['task'])}]"
            state_obj = job.get("state")
            if isinstance(state_obj, dict):
                state, reason = state_obj.get("current"), state_obj.get("reason")
            else:
                state, reason = state_obj, job.get("state_reason")
            times = job.get("time") or {}
            tres = _tres_counts((job.get("tres") or {}).get("allocated"))
            cpus = tres.get("cpu")
            if cpus is None:  # pending jobs have no allocation yet; sacct text shows the request
                cpus = _num((job.get("required") or {}).get("CPUs")) or 0
            rec = _AcctRecord(
                job_id=jid, state=normalize_state(state), reason=_none_if(reason, "None"),
                exit=parse_exit_code(job.get("exit_code")), start=_ts(times.get("start")),
                end=_ts(times.get("end")), elapsed_s=float(_num(times.get("elapsed")) or 0),
                alloc_cpus=int(cpus), alloc_gpus=int(_gpus_from_tres(tres)),
                total_cpu_s=_cpu_seconds(times.get("total")), nodes=_none_if(job.get("nodes"), "None assigned"),
                partition=str(job.get("partition") or ""), user=str(job.get("user") or ""),
                name=str(job.get("name") or ""),
            )
            for step in job.get("steps") or []:
                rec.steps.append(_acct_step_json(jid, step))
            out.append(rec)
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Unparsable(f"unexpected sacct JSON: {exc}") from exc
    return out


def _acct_step_json(jid: str, step: dict[str, Any]) -> _AcctRecord:
    ident = (step.get("step") or {}).get("id")
    if isinstance(ident, dict):
        ident = ident.get("step_id", ident.get("id"))
    suffix = str(ident).rsplit(".", 1)[-1]  # "batch", 0 (v0.0.38) or "123.batch" (v0.0.40+)
    times = step.get("time") or {}
    rss = None
    usage_max = ((step.get("tres") or {}).get("requested") or {}).get("max")  # sacct's MaxRSS lives here
    mem_bytes = _tres_counts(usage_max).get("mem")
    if mem_bytes:
        rss = mem_bytes / 1024 ** 2
    nodes = step.get("nodes")
    if isinstance(nodes, dict):
        nodes = nodes.get("range")
    return _AcctRecord(
        job_id=f"{jid}.{suffix}", state=normalize_state(step.get("state")),
        exit=parse_exit_code(step.get("exit_code")), start=_ts(times.get("start")), end=_ts(times.get("end")),
        elapsed_s=float(_num(times.get("elapsed")) or 0), total_cpu_s=_cpu_seconds(times.get("total")),
        max_rss_mb=rss, nodes=_none_if(nodes),
    )


def _tres_counts(items: Any) -> dict[str, float]:
    """{"cpu": 4, "mem": ..., "gres/gpu": 2, "gres/gpu:a100": 2} from a JSON TRES list."""
    out: dict[str, float] = {}
    for item in items or []:
        kind, name = item.get("type"), item.get("name")
        count = _num(item.get("count"))
        if not kind or count is None:
            continue
        out[f"{kind}/{name}" if name else kind] = count
    return out


def _gpus_from_tres(tres: dict[str, float]) -> float:
    # "gres/gpu" is the total; typed entries ("gres/gpu:a100") repeat it per type.
    if "gres/gpu" in tres:
        return tres["gres/gpu"]
    return sum(v for k, v in tres.items() if k.startswith("gres/gpu:"))


def _cpu_seconds(value: Any) -> float:
    if isinstance(value, dict):
        return float(_num(value.get("seconds")) or 0) + float(_num(value.get("microseconds")) or 0) / 1e6
    return float(_num(value) or 0)


def _parse_sacct_text(text: str) -> list[_AcctRecord]:
    """Allocation records, steps attached, from `sacct -P -n -o <_SACCT_FIELDS>` with SLURM_TIME_FORMAT=%s."""
    out: list[_AcctRecord] = []
    by_id: dict[str, _AcctRecord] = {}
    for line in text.splitlines():
        fields = line.split("|", len(_SACCT_FIELDS) - 1)
        if len(fields) != len(_SACCT_FIELDS):
            continue
        row = dict(zip(_SACCT_FIELDS, fields))
        try:
            tres = dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)
            gpus = tres.get("gres/gpu")
            if gpus is None:
                gpus = sum(float(v) for k, v in tres.items() if k.startswith("gres/gpu:"))
            rec = _AcctRecord(
                job_id=row["JobID"].strip(), state=normalize_state(row["State"]),
                reason=_none_if(row["Reason"], "None"), exit=parse_exit_code(row["ExitCode"]),
                start=_ts(row["Start"]), end=_ts(row["End"]), elapsed_s=float(_num(row["ElapsedRaw"]) or 0),
                alloc_cpus=int(_num(row["AllocCPUS"]) or 0), alloc_gpus=int(float(gpus or 0)),
                total_cpu_s=_duration_s(row["TotalCPU"]),
                # 0 means never sampled (a step shorter than the gather interval): unknown, as in JSON.
                max_rss_mb=(parse_memory_mb(row["MaxRSS"]) or None) if row["MaxRSS"].strip() else None,
                nodes=_none_if(row["NodeList"], "None assigned"), partition=row["Partition"].strip(),
                user=row["User"].strip(), name=row["JobName"],
            )
        except ValueError:
            continue
        parent_id, dot, _ = rec.job_id.partition(".")
        parent = by_id.get(parent_id) if dot else None
        if parent is not None:
            parent.steps.append(rec)
        else:  # an allocation, or a step asked for on its own
            by_id[rec.job_id] = rec
            out.append(rec)
    return out


# ----------------------------------------------------------------------------- job arrays (template sweeps)
# What a sweep asks before packing its points into array tasks, and while it watches them.
# Kept together so a scheduler package can take the block over whole.


@dataclass(frozen=True)
class ArrayLimits:
    """The site's and the caller's limits that bound a job array (None: no limit known)."""

    max_array_size: int | None  # MaxArraySize: task ids must stay below it
    max_job_count: int | None  # MaxJobCount: jobs the controller holds at once (array tasks count)
    user_max_jobs: int | None  # the caller's association: jobs running at once
    user_max_submit: int | None  # the caller's association: jobs queued and running

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PartitionCpus:
    partition: str
    idle: int
    total: int


def array_limits(shell: Shell) -> ArrayLimits:
    """MaxArraySize and MaxJobCount from `scontrol show config`, and the caller's job limits from its
    association (sacctmgr; none where the site has no accounting)."""
    config = _run(shell, "scontrol show config")
    values: dict[str, int | None] = {"MaxArraySize": None, "MaxJobCount": None}
    for line in config.stdout.splitlines() if config.ok else []:
        key, _, value = line.partition("=")
        if key.strip() in values and value.strip().isdigit():
            values[key.strip()] = int(value.strip())
    assoc = _run(shell, 'sacctmgr -nP show assoc where user="$(id -un)" format=MaxJobs,MaxSubmit')
    jobs: list[int] = []
    submit: list[int] = []
    for line in assoc.stdout.splitlines() if assoc.ok else []:
        max_jobs, _, max_submit = line.strip().partition("|")
        jobs += [int(max_jobs)] if max_jobs.isdigit() else []
        submit += [int(max_submit)] if max_submit.isdigit() else []
    return ArrayLimits(values["MaxArraySize"], values["MaxJobCount"], min(jobs) if jobs else None,
                       min(submit) if submit else None)


def partition_cpus(shell: Shell, partition: str | None) -> PartitionCpus:
    """Idle and total CPUs of `partition` (None: the default one), from `sinfo -o %C`."""
    result = _run(shell, "sinfo -h -o '%P|%C'")
    rows = []
    for line in result.stdout.splitlines() if result.ok else []:
        name, _, cpus = line.strip().partition("|")
        counts = cpus.split("/")  # allocated/idle/other/total
        if len(counts) == 4 and all(c.isdigit() for c in counts):
            rows.append((name, int(counts[1]), int(counts[3])))
    for name, idle, total in rows:
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            return PartitionCpus(name.rstrip("*"), idle, total)
    raise RemoteCommandError(f"cannot read the CPUs of partition {partition or '(default)'}: `sinfo -o %C` gave "
                             f"{_describe(result)}")


def pending_places(shell: Shell, array_ids: list[str]) -> dict[str, tuple[int | None, float | None]]:
    """For every pending task of the arrays `array_ids`: ("<array>_<task>" ->) its 1-based position among
    its partition's pending jobs (highest priority first) and Slurm's expected start (`squeue --start`)."""
    ids = _validate_ids(array_ids)
    if not ids:
        return {}
    out = _run(shell, f"squeue -h -r -t PD --sort=-p,i -o '%i|%P'; echo '--'; "
                      f"{_TEXT_ENV} squeue --start -h -r -j {','.join(ids)} -o '%i|%S'").stdout
    queue, _, starts = out.partition("--\n")
    seen: dict[str, int] = {}
    places: dict[str, tuple[int | None, float | None]] = {}
    for line in queue.splitlines():
        jid, _, partition = line.strip().partition("|")
        seen[partition] = seen.get(partition, 0) + 1
        if jid.partition("_")[0] in ids:
            places[jid] = (seen[partition], None)
    for line in starts.splitlines():
        jid, _, start = line.strip().partition("|")
        if jid in places:
            places[jid] = (places[jid][0], _ts(start))
    return places
