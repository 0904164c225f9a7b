"""How a sweep's points are packed into array tasks, and the tasks into arrays.

A task runs its points one after another in one warm process, so a point
costs a fresh kernel, not a fresh Python with papermill's imports. How many
tasks: as many as can run at once (the partition's idle CPUs, else all its
CPUs; at most `--max-running` and the caller's own running-jobs limit) times
`BALANCE`, so a CPU that frees up later still finds a task waiting and no
task is left alone with a long tail; never more than there are points.
`tasks=` or `points_per_task=` override that.

An array may hold at most the site's `MaxArraySize` tasks (task ids start at
0 and must stay below it): more tasks become several arrays. `max_running`
becomes Slurm's `%M` throttle, shared out among the arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError

#: tasks per CPU that can run at once (see the module's text)
BALANCE = 2


@dataclass(frozen=True)
class Plan:
    """arrays -> tasks -> point indices; one `%M` throttle per array (None: none)."""

    arrays: list[list[list[int]]]
    throttles: list[int | None]
    why: str  # how the number of tasks was chosen, for the user

    @property
    def tasks(self) -> int:
        return sum(len(a) for a in self.arrays)

    def array_spec(self, index: int) -> str:
        spec = f"0-{len(self.arrays[index]) - 1}"
        throttle = self.throttles[index]
        return spec + (f"%{throttle}" if throttle else "")


def plan(points: list[int], *, idle_cpus: int, total_cpus: int, max_array_size: int | None = None,
         user_max_jobs: int | None = None, user_max_submit: int | None = None, cpus_per_task: int = 1,
         tasks: int | None = None, points_per_task: int | None = None, max_running: int | None = None) -> Plan:
    """Pack `points` (indices) into tasks and arrays; UsageError when the overrides cannot be met."""
    n = len(points)
    if n == 0:
        raise UsageError("there are no points to run")
    for flag, value in (("--tasks", tasks), ("--points-per-task", points_per_task), ("--max-running", max_running)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1 (got {value})")
    if tasks is not None and points_per_task is not None:
        raise UsageError("give --tasks or --points-per-task, not both")
    if tasks is not None:
        count, why = min(tasks, n), f"--tasks {tasks}"
    elif points_per_task is not None:
        count, why = math.ceil(n / points_per_task), f"--points-per-task {points_per_task}"
    else:
        per = max(1, cpus_per_task)
        concurrent, source = idle_cpus // per, "the partition's idle CPUs"
        if not concurrent:
            concurrent, source = max(1, total_cpus // per), "the partition's CPUs, none idle now"
        for label, value in (("--max-running", max_running), ("your running-jobs limit", user_max_jobs)):
            if value is not None and value < concurrent:
                concurrent, source = value, label
        count = min(n, BALANCE * concurrent)
        why = f"{count} task(s): {BALANCE} per task that can run at once ({concurrent}, from {source})"
        if user_max_submit is not None and count > user_max_submit:
            count, why = user_max_submit, f"{user_max_submit} task(s): your submitted-jobs limit"
    if user_max_submit is not None and count > user_max_submit:
        raise UsageError(f"{count} array tasks exceed your limit of {user_max_submit} submitted jobs: "
                         "give fewer --tasks or more --points-per-task")
    chunks = _chunks(points, count)
    size = max_array_size or len(chunks)
    arrays = [chunks[i:i + size] for i in range(0, len(chunks), size)]
    throttles: list[int | None] = [None] * len(arrays)
    if max_running is not None:
        if max_running < len(arrays):
            raise UsageError(f"--max-running {max_running} is below the {len(arrays)} arrays this sweep needs "
                             f"(the site allows {max_array_size} tasks per array): give more --points-per-task")
        throttles = [max_running // len(arrays) + (1 if i < max_running % len(arrays) else 0)
                     for i in range(len(arrays))]
    if len(arrays) > 1:
        why += f"; split into {len(arrays)} arrays (the site allows {max_array_size} tasks per array)"
    return Plan(arrays, throttles, why)


def _chunks(points: list[int], count: int) -> list[list[int]]:
    """`count` runs of consecutive points whose sizes differ by at most one."""
    base, extra = divmod(len(points), count)
    out, start = [], 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        out.append(points[start:start + size])
        start += size
    return [c for c in out if c]
