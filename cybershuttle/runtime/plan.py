"""What a runtime request resolves to before anything is submitted: the resource, the
request checked against its limits, and the setup file. Shared by every front end
(the magic's `--dry-run`, `cybershuttle runtime request --dry-run`, the real request)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import compute, setupfile
from ..compute import request as requests
from ..errors import UsageError


@dataclass(frozen=True)
class Plan:
    name: str
    resource: Any  # compute.Resource
    request: Any  # compute.request.Request
    setup: Any  # setupfile.SetupFile | None
    setup_file: str | None


def plan(name: str, *, resource: str | None = None, use: str | None = None, cpus: int | None = None,
         memory: str | int | None = None, gpus: int | None = None, walltime: str | int | None = None,
         partition: str | None = None, account: str | None = None, setup_file: str | None = None,
         nodes: int | None = None, tasks_per_node: int | None = None) -> Plan:
    """Resolve a request; `use` is `R:PARTITION[,R2:P2...]`, of which the one that can start soonest is taken."""
    if use:
        resource, partition = compute.soonest(use, partition)
    if not resource:
        raise UsageError(f"runtime {name}: say where it runs (a resource, or resource:partition choices)")
    setup = setupfile.load(setup_file) if setup_file else None
    res = compute.get(resource)
    req = requests.resolve(res, cpus=cpus, memory=memory, gpus=gpus, walltime=walltime, partition=partition,
                           account=account, setup=setup, nodes=nodes, tasks_per_node=tasks_per_node)
    return Plan(name, res, req, setup, setup_file)


def request_planned(p: Plan, **durable: Any) -> tuple[Any, bool]:
    """Submit (or re-attach to) the planned runtime; returns (Runtime, re-attached).

    `durable`: `options` (runtime.durable.Options) and `resume`, as `runtime.request` takes them.
    """
    from . import request

    req = p.request
    return request(p.name, p.resource.name, cpus=req.cpus, memory=req.memory_mb, gpus=req.gpus,
                   walltime=req.walltime, partition=req.partition, account=req.account, setup_file=p.setup_file,
                   nodes=req.nodes, tasks_per_node=req.tasks_per_node, **durable)


def report(p: Plan, rt: Any, reattached: bool) -> list[str]:
    """What a request did, in the lines every front end prints."""
    if reattached:
        lines = [f"Re-attached to runtime {rt.name} on {rt.resource} (job {rt.job_id}, still running)"]
    else:
        lines = [f"Requested runtime {rt.name} {p.request.summary(p.resource)} as job {rt.job_id}"]
    return lines + [f"note: {note}" for note in p.request.notes]


def describe(p: Plan) -> list[str]:
    """The dry-run lines: what would be asked for, and what the setup file brings."""
    lines = [f"runtime {p.name} would be requested as {p.request.summary(p.resource)}"]
    if p.setup is not None:
        mounts = [f"{m.identifier} -> {m.mount_point} ({m.kind})" for m in p.setup.mounts]
        lines += [f"  mounts:  {', '.join(mounts) or 'none'}", f"  modules: {', '.join(p.setup.modules) or 'none'}",
                  f"  pip:     {', '.join(p.setup.pip) or 'none'}", f"  conda:   {', '.join(p.setup.conda) or 'none'}"]
    lines += [f"  note: {note}" for note in p.request.notes]
    return lines + ["(dry run: nothing submitted)"]
