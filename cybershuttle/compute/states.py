"""The one vocabulary of states: of jobs (and so of array tasks, template runs
and sweep points, which are jobs or parts of one) and of the runtimes built on
jobs.

Every state is *active* (it holds or waits for resources: it may still
change), *final* (it never changes again), or neither (`UNKNOWN`: the
scheduler has forgotten the job, or cannot be asked now). `final()` and
`active()` here are the only definitions; everything else (Job.final,
Run.final, the runtime's liveness, the sidebar through the REST route
`states`) asks them.

A scheduler maps its own words onto `JobState` (Slurm's `CONFIGURING` is
RUNNING, `REQUEUED` is PENDING: see cybershuttle/slurm.py); nothing outside a
scheduler sees a state that is not listed here.
"""
from __future__ import annotations

from enum import Enum
from typing import Any


class _State(str, Enum):
    """A state word; what it means comes from the one table below."""

    @property
    def final(self) -> bool:
        return final(self.value)

    @property
    def active(self) -> bool:
        return active(self.value)


class JobState(_State):
    """Where a job (or one task of an array, or a template run) is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"


class RuntimeState(_State):
    """Where a runtime (a kernel running as a job) is."""

    REQUESTED = "REQUESTED"  # its job is submitted; the kernel has not bound its ports yet
    READY = "READY"  # the kernel answers
    STOPPED = "STOPPED"  # stopped on purpose
    DEAD = "DEAD"  # its job ended behind our back


class RunState(_State):
    """A template run's word beyond the job states (a sweep point is a part of an array task)."""

    NOT_RUN = "NOT_RUN"  # its array task ended (walltime, cancel, node lost) before the point finished


ACTIVE: frozenset[str] = frozenset({"PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUESTED", "READY"})
FINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                                   "PREEMPTED", "STOPPED", "DEAD", "NOT_RUN"})


def final(state: str | None) -> bool:
    """True when `state` never changes again (COMPLETED, FAILED, ..., a STOPPED or DEAD runtime)."""
    return state in FINAL


def active(state: str | None) -> bool:
    """True while `state` may still change (PENDING, RUNNING, ..., a REQUESTED or READY runtime)."""
    return state in ACTIVE


def vocabulary() -> dict[str, Any]:
    """Every state with its meaning, as the REST route `states` serves it to the sidebar."""
    return {
        "states": [{"name": s.value, "of": of, "final": final(s.value), "active": active(s.value)}
                   for of, enum in (("job", JobState), ("runtime", RuntimeState), ("run", RunState))
                   for s in enum],
        "final": sorted(FINAL),
        "active": sorted(ACTIVE),
    }
