"""What a job asks for, resolved against a resource before anything is submitted.

Explicit options win; a setup file's `workspace.resources` are minimums; the
resource's defaults fill the rest. Anything the resource cannot give — a GPU
where there is none, more CPUs or memory than a node has, a walltime past the
partition's limit, an unknown partition — is refused here, with the limit
named, so no request is silently shrunk or dropped.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import names, units
from ..errors import CybershuttleError
from ..setupfile import SetupFile
from .resources import Resource


class RequestError(CybershuttleError):
    """A request the resource cannot satisfy."""


@dataclass(frozen=True)
class Request:
    cpus: int = 1
    memory_mb: int | None = None
    gpus: int = 0
    walltime: str | None = None  # Slurm time string: MIN, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    notes: list[str] = field(default_factory=list)  # what was adjusted or taken from where
    nodes: int = 1
    tasks_per_node: int | None = None  # None: one task in all (single-node requests)

    @property
    def walltime_s(self) -> int | None:
        return None if self.walltime is None else walltime_seconds(self.walltime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, resource: Resource) -> str:
        where = f"{resource.name}:{self.partition}" if self.partition else resource.name
        wall = f"{(self.walltime_s or 0) // 60} Minutes" if self.walltime else "no time limit"
        tasks = f", {self.tasks_per_node} task(s) per node" if self.tasks_per_node else ""
        return (f"[{where}, {wall}, {self.nodes} Node(s){tasks}, {self.cpus} CPU(s), {self.gpus} GPU(s), "
                f"{self.memory_mb or 0} MB RAM]")


def resolve(resource: Resource, *, cpus: int | None = None, memory: str | int | None = None, gpus: int | None = None,
            walltime: str | int | None = None, partition: str | None = None, account: str | None = None,
            qos: str | None = None, resources: str | None = None, setup: SetupFile | None = None,
            nodes: int | None = None, tasks_per_node: int | None = None) -> Request:
    """The request to submit on `resource`, or RequestError saying what cannot be met.

    `nodes` > 1 or `tasks_per_node` (Slurm) ask for a multi-node allocation; `cpus` is then per task.
    """
    notes: list[str] = []
    for what, value in (("--partition", partition), ("--account", account), ("--qos", qos)):
        if value is not None:  # they go into the job script's header, one line each
            names.script_value(value, what)
    for what, value in (("cpus", cpus), ("gpus", gpus)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0 or
                                  (what == "cpus" and value == 0)):
            raise RequestError(f"--{what} must be a whole number{' >= 1' if what == 'cpus' else ' >= 0'}, got {value!r}")
    for what, value in (("nodes", nodes), ("tasks-per-node", tasks_per_node)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RequestError(f"--{what} must be a whole number >= 1, got {value!r}")
    nodes = nodes or 1
    if nodes > 1 and tasks_per_node is None:
        tasks_per_node = 1
    memory_mb = parse_memory(memory) if memory is not None else None
    if resources is not None:
        if resources.upper() not in ("CPU", "GPU"):
            raise RequestError(f"--resources must be CPU or GPU, got {resources!r}")
        if resources.upper() == "GPU" and not gpus:
            gpus = 1
            notes.append("--resources GPU: 1 GPU")
    wall = None if walltime is None else normalize_walltime(walltime)

    if setup is not None:
        mins = setup.resources
        if cpus is None or cpus < mins.min_cpu:
            if cpus is not None:
                notes.append(f"cpus raised to the setup file's minimum {mins.min_cpu}")
            cpus = max(cpus or 1, mins.min_cpu)
        if mins.min_mem_mb and (memory_mb is None or memory_mb < mins.min_mem_mb):
            if memory_mb is not None:
                notes.append(f"memory raised to the setup file's minimum {mins.min_mem_mb} MB")
            memory_mb = mins.min_mem_mb
        if mins.min_gpu and (gpus or 0) < mins.min_gpu:
            gpus = mins.min_gpu
            notes.append(f"{mins.min_gpu} GPU(s) from the setup file")
        if wall is None and mins.walltime_min:
            wall = str(mins.walltime_min)
        if partition is None and mins.queue:
            if mins.cluster in (None, resource.name) and resource.partition_info(mins.queue) is not None:
                partition = mins.queue
            else:
                notes.append(f"the setup file's queue {mins.queue!r}"
                             f"{' on cluster ' + repr(mins.cluster) if mins.cluster else ''} is not on "
                             f"{resource.name}; using its default partition")

    cpus = cpus or 1
    gpus = gpus or 0
    from . import schedulers

    if schedulers.for_resource(resource).queues:
        partition = partition or resource.default_partition
        info = resource.partition_info(partition) if partition else None
        if partition and info is None:
            known = ", ".join(p["name"] for p in resource.partitions) or "none"
            raise RequestError(f"{resource.name} has no partition {partition!r} (partitions: {known})")
        if info is not None:
            if info.get("nodes") is not None and nodes > info["nodes"]:
                raise RequestError(f"{nodes} nodes requested but partition {partition} on {resource.name} has "
                                   f"{info['nodes']}")
            _within(resource.name, f"partition {partition}", cpus * (tasks_per_node or 1), memory_mb, gpus,
                    info.get("cpus_per_node"), info.get("memory_mb_per_node"), info.get("gpus_per_node", 0))
            limit = info.get("max_time_min")
            if wall is not None and limit is not None and walltime_seconds(wall) > limit * 60:
                raise RequestError(f"walltime {wall} is longer than partition {partition}'s limit of {limit} minutes "
                                   f"on {resource.name}")
        return Request(cpus, memory_mb, gpus, wall, partition, account or resource.account, qos or resource.qos, notes,
                       nodes, tasks_per_node)
    if nodes > 1 or (tasks_per_node or 1) > 1:
        raise RequestError(f"{resource.name} is a {resource.kind} resource, one machine: --nodes/--tasks-per-node "
                           "only apply to Slurm resources")
    if partition or account or qos:
        raise RequestError(f"{resource.name} is a {resource.kind} resource: --partition/--account/--qos only apply "
                           "to Slurm resources")
    facts = resource.facts
    _within(resource.name, "the machine", cpus, memory_mb, gpus, facts.get("cpus"), facts.get("memory_mb"),
            facts.get("gpus", 0))
    return Request(cpus, memory_mb, gpus, wall, None, None, None, notes)


def parse_memory(value: str | int) -> int:
    """`4G`, `512M`, `4096` (MB) -> MB, rounded up."""
    try:
        mb = math.ceil(units.size_mb(value))
    except ValueError:
        raise RequestError(f"--memory must look like 4G, 512M or 4096 (MB), got {value!r}") from None
    if mb <= 0:
        raise RequestError(f"--memory must be positive, got {value!r}")
    return mb


def normalize_walltime(value: str | int) -> str:
    """Validate a walltime: whole minutes, or a Slurm time string."""
    if isinstance(value, bool):
        raise RequestError(f"--walltime must be minutes or a Slurm time (MM:SS, HH:MM:SS, D-HH:MM:SS), got {value!r}")
    text = str(value).strip()
    walltime_seconds(text)
    return text


def walltime_seconds(text: str) -> int:
    try:
        seconds = units.walltime_seconds(text)
    except ValueError:
        raise RequestError(f"--walltime must be {units.WALLTIME_FORM}, got {text!r}") from None
    if seconds <= 0:
        raise RequestError(f"--walltime must be longer than zero, got {text!r}")
    return seconds


def _within(resource: str, what: str, cpus: int, memory_mb: int | None, gpus: int,
            max_cpus: int | None, max_mem: int | None, max_gpus: int | None) -> None:
    if gpus and not max_gpus:
        raise RequestError(f"{resource} has no GPUs ({what}): remove --gpus/--resources GPU, "
                           "or choose a resource with GPUs")
    if max_gpus is not None and gpus > max_gpus:
        raise RequestError(f"{gpus} GPUs requested but {what} on {resource} has at most {max_gpus} per node")
    if max_cpus and cpus > max_cpus:
        raise RequestError(f"{cpus} CPUs requested but {what} on {resource} has at most {max_cpus} per node")
    if max_mem and memory_mb and memory_mb > max_mem:
        raise RequestError(f"{memory_mb} MB memory requested but {what} on {resource} has at most {max_mem} MB per node")
