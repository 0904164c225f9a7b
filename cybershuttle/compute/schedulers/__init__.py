"""Schedulers: what runs jobs on a resource, found through the entry-point group `cybershuttle.schedulers`.

Each entry point names a `Scheduler` subclass (see `base` for the contract).
Cybershuttle's own pyproject.toml declares two:

    [project.entry-points."cybershuttle.schedulers"]
    process = "cybershuttle.compute.schedulers.process:ProcessScheduler"   # kinds local, ssh
    slurm = "cybershuttle.compute.schedulers.slurm:SlurmScheduler"          # kind slurm

A resource's `kind` picks its scheduler: the scheduler whose `kinds` holds it
(by default a scheduler serves the kind of its own name). Installing a
distribution that declares another entry point in this group is all it takes
to register resources of a new kind (`cybershuttle compute register --kind
pbs ...`) and run jobs, runtimes and templates on them, the way jupyter_client
finds kernel provisioners and papermill finds engines.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ... import plugins
from ...errors import CybershuttleError
from .base import POLL_S, QueuePlace, Scheduler, Submission, Watch

if TYPE_CHECKING:
    from ..resources import Resource

GROUP = "cybershuttle.schedulers"


class SchedulerError(CybershuttleError):
    """A resource kind no installed scheduler serves, or a scheduler that cannot be loaded."""


@lru_cache(maxsize=None)
def installed() -> dict[str, type[Scheduler]]:
    """Every installed scheduler class by its entry-point name (the first of a duplicated name wins)."""
    # Cybershuttle's own first (process, then slurm), so kinds read "local, ssh, slurm, <installed ones>".
    found, broken = plugins.load(GROUP, Scheduler, order=lambda ep: (ep.name != "process", ep.name))
    for name, why in broken.items():  # a scheduler that is there but broken is not quietly left out
        raise SchedulerError(f"scheduler {name!r} ({why}): reinstall or remove the distribution that provides it")
    if not found:
        raise SchedulerError(f"no schedulers are installed (entry-point group {GROUP} is empty): "
                             "reinstall cybershuttle (pip install -e .)")
    return found


def kinds() -> dict[str, type[Scheduler]]:
    """Every resource kind an installed scheduler serves, with that scheduler."""
    out: dict[str, type[Scheduler]] = {}
    for cls in installed().values():
        for kind in cls.served_kinds():
            out.setdefault(kind, cls)
    return out


def scheduler_class(kind: str) -> type[Scheduler]:
    cls = kinds().get(kind)
    if cls is None:
        raise SchedulerError(f"no installed scheduler serves resources of kind {kind!r} (known kinds: "
                             f"{', '.join(kinds())}): install the distribution that provides it")
    return cls


def for_resource(resource: Resource) -> Scheduler:
    """The scheduler that runs jobs on `resource`."""
    return scheduler_class(resource.kind)(resource)


__all__ = ["GROUP", "POLL_S", "QueuePlace", "Scheduler", "SchedulerError", "Submission", "Watch", "for_resource",
           "installed", "kinds", "scheduler_class"]
