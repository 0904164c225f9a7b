"""`cybershuttle compute ...`"""
from __future__ import annotations

import argparse

from .output import print_json, print_table
from .verbs import Group, arg

ISSUE = "Compute resources and jobs"
RUNTIMES = "Remote runtimes and notebook magics"


def _initialize(user: str) -> list[str]:
    from .. import compute

    entry, created = compute.register_local()
    return [f"compute resource {entry.name!r} {'registered' if created else 'already registered'} ({entry.data['kind']})"]


group = Group("compute", initialize=_initialize)


@group.verb("list", "list registered compute resources", "cybershuttle compute list --json", listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import compute

    entries = compute.list()
    if args.json:
        print_json([e.to_dict() for e in entries])
    else:
        print_table(
            [{"name": e.name, "kind": e.data.get("kind"), "host": e.data.get("host"), "scope": e.scope} for e in entries],
            [("name", "name"), ("kind", "kind"), ("host", "host"), ("scope", "scope")],
        )


JOB = arg("job", help="the job's id")
RESOURCE = arg("--resource", metavar="R", help="the compute resource")

group.planned("import", "validate and register the resources listed in a YAML file",
              "cybershuttle compute import resources.yml", ISSUE, arg("file"))
group.planned("show", "show one resource: partitions, limits, GPUs, modules, live status",
              "cybershuttle compute show testcluster", ISSUE, arg("name"), listing=True)
group.planned(
    "execute", "run a command on a resource (a Slurm batch job, or a detached process)",
    "cybershuttle compute execute 'python train.py' --resource testcluster --cpus 4 --memory 4G --walltime 30 --setup_file cybershuttle.yml --wait",
    ISSUE,
    arg("command"), arg("--resource", required=True, metavar="R"), arg("--resources", choices=["CPU", "GPU"]),
    arg("--cpus", type=int), arg("--gpus", type=int), arg("--memory", help="e.g. 4G"),
    arg("--walltime", type=int, metavar="MIN"), arg("--partition"), arg("--account"),
    arg("--setup-file", metavar="FILE"), arg("--name"),
    arg("--wait", action="store_true"), arg("--follow", action="store_true"),
)
group.planned("jobs", "list jobs", "cybershuttle compute jobs --resource testcluster --json", ISSUE,
              RESOURCE, arg("--all", action="store_true"), listing=True)
group.planned("status", "show one job's state", "cybershuttle compute status 42", ISSUE, JOB, listing=True)
group.planned("logs", "print (or follow) a job's output", "cybershuttle compute logs 42 --follow", ISSUE,
              JOB, arg("--follow", action="store_true"))
group.planned("cancel", "cancel a job", "cybershuttle compute cancel 42", ISSUE, JOB)
group.planned("wait", "wait until a job ends; exit with its exit code", "cybershuttle compute wait 42", ISSUE, JOB)
group.planned("usage", "CPU-hours, GPU-hours, memory and wall time per job",
              "cybershuttle compute usage --since 2026-01-01 --json", ISSUE, RESOURCE, arg("--since", metavar="DATE"), listing=True)
group.planned("kernelspec", "install a kernelspec that starts notebooks on a resource",
              "cybershuttle compute kernelspec install testcluster", RUNTIMES, arg("action", choices=["install", "remove"]), arg("name"))
