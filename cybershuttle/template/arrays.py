"""What a sweep asks the resource's scheduler about job arrays (the `Scheduler` contract's array
hooks: task states, limits, free CPUs, queue places of pending tasks)."""
from __future__ import annotations

from .. import compute
from ..errors import CybershuttleError
from . import packing


def check(res: compute.Resource) -> None:
    if not compute.schedulers.for_resource(res).arrays:
        raise CybershuttleError(f"a sweep runs as Slurm job arrays, but {res.name} is a {res.kind} resource: "
                                "choose a Slurm resource (see `cybershuttle compute list`)")


def plan(res: compute.Resource, points: list[int], *, tasks: int | None, points_per_task: int | None,
         max_running: int | None) -> packing.Plan:
    """Pack `points` for `res`: its default queue's idle CPUs, the site's and your limits."""
    sched = compute.schedulers.for_resource(res)
    shell = res.shell()
    limits = sched.array_limits(shell)
    idle, total = sched.free_cpus(shell, None)
    return packing.plan(points, idle_cpus=idle, total_cpus=total, max_array_size=limits["max_array_size"],
                        user_max_jobs=limits["user_max_jobs"], user_max_submit=limits["user_max_submit"], tasks=tasks,
                        points_per_task=points_per_task, max_running=max_running)


def task_states(job: compute.Job, tasks: list[int]) -> dict[int, str]:
    sched = compute.scheduler(job)
    return sched.task_states(sched.resource.shell(), job, tasks)


def pending_places(job: compute.Job, tasks: list[int]) -> dict[int, tuple[int | None, float | None]]:
    """task -> (queue position, expected start) for the pending `tasks` of the array `job`."""
    if not tasks:
        return {}
    sched = compute.scheduler(job)
    try:
        found = sched.task_places(sched.resource.shell(), job, tasks)
    except CybershuttleError:
        return {}
    return {t: (place.position, place.estimated_start) for t, place in found.items()}
