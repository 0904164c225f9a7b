"""Compute resources (local, ssh, slurm) and the jobs run on them.

    from cybershuttle import compute
    compute.import_file("resources.yml")
    job = compute.execute("python train.py", "testcluster", cpus=4, memory="4G", setup_file="cybershuttle.yml")
    compute.wait(job.id).exit_code

Modules: `resources` (kinds, checks, registration), `request` (what a job
asks for, checked against the resource), `environment` (setup-file modules
and cached pip environments), `job` (submit, state, logs, cancel),
`schedulers` (the Scheduler contract and its entry-point registry: what runs
jobs on a resource), `states` (the one job/runtime state vocabulary), `usage`.
"""
from __future__ import annotations

from . import schedulers, states
from .job import (Job, LogPiece, cancel, enter_command, execute, follow, logs, queue_place, read_log, refresh,
                  scheduler, status, wait, watch)
from .job import get as get_job
from .job import list_jobs as jobs
from .request import Request, RequestError
from .resources import (Check, Registration, Resource, ResourceSpecError, configure, get, home_dir, import_file,
                        list_all, register_local, soonest, statuses, validate_and_register)
from .resources import list_all as list  # noqa: A001 - `cybershuttle compute list`
from .usage import usage

__all__ = [
    "Check", "Job", "LogPiece", "Registration", "Request", "RequestError", "Resource", "ResourceSpecError", "cancel",
    "configure", "enter_command", "execute", "follow", "get", "get_job", "home_dir", "import_file", "jobs", "list",
    "logs", "queue_place", "read_log", "refresh", "register_local", "scheduler", "schedulers", "soonest", "states",
    "status", "statuses", "usage", "validate_and_register", "wait", "watch",
]
