"""`cybershuttle compute ...`"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .output import print_json, print_table
from .verbs import Group, arg


def _initialize(user: str) -> list[str]:
    from .. import compute

    res, created = compute.register_local()
    return [f"compute resource {res.name!r} {'registered' if created else 'already registered'} ({res.kind})"]


group = Group("compute", initialize=_initialize)
JOB = arg("job", help="the job's id (as `compute jobs` shows it, or the bare Slurm id)")
SPEC_ARGS = (
    arg("--kind", required=True, help="local, ssh, slurm, or the kind of an installed scheduler"),
    arg("--host", help="login node or workstation (leave out for this machine)"),
    arg("--port", type=int, default=22), arg("--user", help="your login name there"),
    arg("--key", help="your private key file"), arg("--known-hosts", help="known_hosts file holding its host key"),
    arg("--partition", help="default Slurm partition"), arg("--account", help="Slurm account"),
    arg("--qos", help="Slurm QoS"), arg("--python", help="python3 to run jobs and kernels with"),
    arg("--transport", help="how runtimes on compute nodes are reached (node-ssh, allocation, ...); "
                            "default: the one registration detects"),
    arg("--node-port", type=int, help="the compute nodes' SSH port, when not 22 (node-ssh transport)"),
)


@group.verb("list", "list compute resources with their live status", "cybershuttle compute list --json",
            arg("--offline", action="store_true", help="do not contact the resources"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import compute

    items = compute.list()
    live = {} if args.offline else compute.statuses(items)
    rows = []
    for r in items:
        s = live.get(r.name, {})
        rows.append({"name": r.name, "kind": r.kind, "host": r.host or "this machine", "scope": r.scope,
                     "partition": r.default_partition, "status": s, "resource": r.to_data()})
    if args.json:
        print_json(rows)
        return
    print_table([{**row, "status": _status_text(row["status"]) if not args.offline else "-"} for row in rows],
                [("name", "name"), ("kind", "kind"), ("host", "host"), ("partition", "partition"),
                 ("status", "status"), ("scope", "scope")])


@group.verb("show", "show one resource: partitions, limits, GPUs, software, live status",
            "cybershuttle compute show testcluster", arg("name"), listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import compute
    from ..compute import schedulers

    res = compute.get(args.name)
    live = compute.statuses([res])[res.name]
    if args.json:
        from .. import runtime

        print_json({"name": res.name, "scope": res.scope, "status": live, **res.to_data(),
                    "transport_in_use": runtime.transports.describe(res)})
        return
    f = res.facts
    print(f"{res.name} ({res.kind}, {res.scope}) on {res.host or 'this machine'}"
          + (f":{res.port} as {res.user}" if res.host else ""))
    print(f"  status:    {_status_text(live)}")
    if schedulers.for_resource(res).queues:
        print(f"  {res.kind + ':':<10} {f.get(res.kind + '_version')}; default partition {res.default_partition}"
              + (f", account {res.account}" if res.account else "") + (f", qos {res.qos}" if res.qos else ""))
        for p in res.partitions:
            limit = f"{p['max_time_min']} min" if p.get("max_time_min") else "no limit"
            print(f"    {p['name']}{'*' if p.get('default') else ''}: {p['nodes']} node(s), {p['cpus_per_node']} CPUs, "
                  f"{p['memory_mb_per_node']} MB, {p['gpus_per_node']} GPUs per node; time limit {limit}")
    else:
        print(f"  machine:   {f.get('cpus')} CPUs, {f.get('memory_mb')} MB memory, {f.get('gpus', 0)} GPUs")
    print(f"  python:    {res.python or f.get('python') or 'none'} ({f.get('python_version', '?')})")
    print(f"  lmod:      {f.get('lmod') or 'none'};  conda: {f.get('conda') or 'none'};  uv: {f.get('uv') or 'none'}")
    if f.get("free_disk_mb") is not None:
        print(f"  disk:      {f['free_disk_mb']} MB free in {f.get('home')}")
    from .. import runtime

    t = runtime.transports.describe(res)
    why = "set by the resource" if t["set_by_resource"] else f"detected; allowed: {', '.join(t['allowed']) or 'none'}"
    print(f"  transport: " + (f"{t['transport']}: {t['summary']} ({why})" if t["transport"] else f"none ({why})"))
    if res.node_port != 22:
        print(f"  nodes:     SSH on port {res.node_port}")
    print("  kernels:   " + ("Unix sockets in the job's 0700 directory, forwarded over SSH" if t["kernel_sockets"] == "unix"
                             else "127.0.0.1 ports, CurveZMQ-encrypted"))

    for rt in [r for r in runtime.list_all() if r.resource == res.name and r.state in runtime.LIVE_STATES]:
        print(f"  runtime:   {rt.name} ({rt.state.lower()}, job {rt.job_id}, {runtime.privacy(rt)})")


@group.verb("register", "check a resource and register it when every required check passes",
            "cybershuttle compute register --name testcluster --kind slurm --host 127.0.0.1 --port 2222 --user csuser "
            "--key ~/.ssh/id_ed25519 --partition debug",
            arg("--name", required=True), *SPEC_ARGS,
            arg("--public", action="store_true", help="register in the site catalog, for every user"), listing=True)
def _register(args: argparse.Namespace) -> int:
    from .. import compute

    keys = ("name", "kind", "host", "port", "user", "key", "known_hosts", "partition", "account", "qos", "python",
            "transport", "node_port")
    spec = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    result = compute.validate_and_register(spec, public=args.public)
    return _report([result], args.json)


@group.verb("import", "validate and register the resources listed in a YAML file (re-import updates them)",
            "cybershuttle compute import resources.yml", arg("file"),
            arg("--public", action="store_true", help="register in the site catalog, for every user"), listing=True)
def _import(args: argparse.Namespace) -> int:
    from .. import compute

    return _report(compute.import_file(args.file, public=args.public), args.json)


@group.verb("configure", "set your own login, key, account, default partition or QoS on a resource",
            "cybershuttle compute configure testcluster --account csaccount --partition short",
            arg("name"), arg("--user"), arg("--key"), arg("--account"), arg("--partition"), arg("--qos"))
def _configure(args: argparse.Namespace) -> None:
    from .. import compute

    res = compute.configure(args.name, user=args.user, key=args.key, account=args.account, partition=args.partition,
                            qos=args.qos)
    print(f"{res.name}: user {res.user}, account {res.account or '-'}, partition {res.default_partition or '-'}, "
          f"qos {res.qos or '-'}")


@group.verb(
    "execute", "run a command on a resource (a Slurm batch job, or a detached process)",
    "cybershuttle compute execute 'python train.py' --resource testcluster --cpus 4 --memory 4G --walltime 30 "
    "--setup_file cybershuttle.yml --wait",
    arg("command", help="a shell command, quoted"), arg("--resource", required=True, metavar="R"),
    arg("--resources", choices=["CPU", "GPU"], help="GPU asks for one GPU unless --gpus says more"),
    arg("--cpus", type=int), arg("--gpus", type=int), arg("--memory", help="e.g. 4G or 512M"),
    arg("--walltime", metavar="MIN", help="minutes, or a Slurm time such as 1:30:00"),
    arg("--nodes", type=int, help="nodes (Slurm): the command runs on the first; its parallel job steps use all"),
    arg("--tasks-per-node", type=int, help="tasks on each node for the command's parallel steps (Slurm)"),
    arg("--partition"), arg("--account"), arg("--qos"),
    arg("--setup-file", metavar="FILE", help="cybershuttle.yml: modules, pip packages, minimum resources"),
    arg("--name", help="a name for the job"), arg("--workdir", help="directory to run in (default: here, or home)"),
    arg("--wait", action="store_true", help="wait for the end; exit with the job's exit code"),
    arg("--follow", action="store_true", help="stream the output until the end; exit with the job's exit code"),
    listing=True,
)
def _execute(args: argparse.Namespace) -> int:
    from .. import compute

    job = compute.execute(args.command, args.resource, cpus=args.cpus, gpus=args.gpus, memory=args.memory,
                          walltime=args.walltime, partition=args.partition, account=args.account, qos=args.qos,
                          resources_kind=args.resources, setup_file=args.setup_file, name=args.name,
                          workdir=args.workdir, nodes=args.nodes, tasks_per_node=args.tasks_per_node)
    for note in job.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.json:
        print(f"submitted {job.id} on {job.resource}", file=sys.stderr if (args.wait or args.follow) else sys.stdout)
    if args.follow:
        job = compute.follow(job.id, _write_stdout)
    elif args.wait:
        job = compute.wait(job.id)
    if args.json:
        print_json(job.to_dict())
    elif args.wait or args.follow:
        print(f"{job.id}: {job.state}" + (f", exit code {job.exit_code}" if job.exit_code is not None else ""),
              file=sys.stderr)
    return _job_exit(job) if (args.wait or args.follow) else 0


@group.verb("jobs", "list your jobs with their live state", "cybershuttle compute jobs --resource testcluster --json",
            arg("--resource", metavar="R"), arg("--all", action="store_true", help="include finished jobs"),
            listing=True)
def _jobs(args: argparse.Namespace) -> None:
    from .. import compute

    items = compute.jobs(args.resource, include_finished=args.all)
    if args.json:
        print_json([j.to_dict() for j in items])
        return
    print_table([{"id": j.id, "name": j.name, "state": j.state, "exit": j.exit_code,
                  "submitted": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.submitted)),
                  "command": j.command if len(j.command) < 40 else j.command[:37] + "..."} for j in items],
                [("id", "id"), ("name", "name"), ("state", "state"), ("exit", "exit"), ("submitted", "submitted"),
                 ("command", "command")], empty="(no jobs; --all includes finished ones)")


@group.verb("status", "show one job's state", "cybershuttle compute status testcluster.42", JOB, listing=True)
def _status(args: argparse.Namespace) -> None:
    from .. import compute

    job = compute.status(args.job)
    if args.json:
        print_json(job.to_dict())
        return
    print(f"{job.id} ({job.name}) on {job.resource}: {job.state}"
          + (f", exit code {job.exit_code}" if job.exit_code is not None else "")
          + (f" ({job.reason})" if job.reason else ""))
    if job.state == "PENDING":
        place = compute.queue_place(job)
        if place.position is not None or place.estimated_start is not None:
            import time

            start = (time.strftime(", expected to start at %H:%M", time.localtime(place.estimated_start))
                     if place.estimated_start else "")
            print(f"  queue: position {place.position or '?'}{start}")


@group.verb("logs", "print (or follow) a job's output", "cybershuttle compute logs testcluster.42 --follow",
            JOB, arg("--follow", action="store_true"))
def _logs(args: argparse.Namespace) -> int:
    from .. import compute

    if args.follow:
        return _job_exit(compute.follow(args.job, _write_stdout))
    offset = 0
    while True:  # in pieces: a log of gigabytes never sits in memory whole
        piece = compute.read_log(args.job, offset, 8 * 2**20)
        _write_stdout(piece.data)
        offset = piece.next_offset
        if not piece.more:
            return 0


@group.verb("cancel", "cancel a job", "cybershuttle compute cancel testcluster.42", JOB)
def _cancel(args: argparse.Namespace) -> None:
    from .. import compute

    job = compute.cancel(args.job)
    print(f"{job.id}: {job.state}")


@group.verb("wait", "wait until a job ends; exit with its exit code", "cybershuttle compute wait testcluster.42",
            JOB, arg("--timeout", type=float, metavar="S", help="give up after S seconds (exit 124)"))
def _wait(args: argparse.Namespace) -> int:
    from .. import compute

    job = compute.wait(args.job, timeout=args.timeout)
    print(f"{job.id}: {job.state}" + (f", exit code {job.exit_code}" if job.exit_code is not None else ""))
    return _job_exit(job) if job.final else 124


@group.verb("usage", "CPU-hours, GPU-hours, memory and wall time per job and in total",
            "cybershuttle compute usage --since 2026-01-01 --json", arg("--resource", metavar="R"),
            arg("--since", metavar="DATE", help="YYYY-MM-DD[THH:MM]; default: 30 days ago"), listing=True)
def _usage(args: argparse.Namespace) -> None:
    from .. import compute

    report = compute.usage(args.resource, args.since)
    if args.json:
        print_json(report)
        return
    print_table([{**r, "elapsed": _duration(r["elapsed_s"]), "cpu_h": f"{r['cpu_hours']:.4f}",
                  "gpu_h": f"{r['gpu_hours']:.4f}", "mem": f"{r['max_rss_mb']:.0f} MB" if r["max_rss_mb"] else "-"}
                 for r in report["jobs"]],
                [("resource", "resource"), ("job", "job"), ("name", "name"), ("state", "state"), ("cpus", "cpus"),
                 ("gpus", "gpus"), ("elapsed", "elapsed"), ("cpu_h", "cpu-h"), ("gpu_h", "gpu-h"), ("mem", "max mem")],
                empty=f"(no jobs since {report['since']})")
    t = report["totals"]
    print(f"total: {t['jobs']} job(s), {t['cpu_hours']:.4f} CPU-hours, {t['gpu_hours']:.4f} GPU-hours, "
          f"{t['elapsed_hours']:.4f} hours of wall time, max memory {t['max_rss_mb']:.0f} MB")
    for err in report["errors"]:
        print(f"warning: {err}", file=sys.stderr)


@group.verb("kernelspec", "install (or remove) a kernelspec that starts notebooks on a resource",
            "cybershuttle compute kernelspec install testcluster --cpus 2 --walltime 60",
            arg("action", choices=["install", "remove"]), arg("name", help="the resource"),
            arg("--kernel-name", help="default: cybershuttle-<resource>"), arg("--display-name"),
            arg("--cpus", type=int), arg("--memory"), arg("--gpus", type=int), arg("--walltime"),
            arg("--partition"), arg("--account"), arg("--setup-file", metavar="FILE"))
def _kernelspec(args: argparse.Namespace) -> None:
    from ..runtime import provisioner

    if args.action == "remove":
        provisioner.remove_kernelspec(args.name, args.kernel_name)
        print(f"removed the kernelspec of {args.name}")
        return
    setup = str(Path(args.setup_file).resolve()) if args.setup_file else None
    path = provisioner.install_kernelspec(args.name, name=args.kernel_name, display_name=args.display_name,
                                          cpus=args.cpus, memory=args.memory, gpus=args.gpus, walltime=args.walltime,
                                          partition=args.partition, account=args.account, setup_file=setup)
    print(f"installed kernelspec {Path(path).name} in {path}: JupyterLab's launcher and papermill "
          f"(-k {Path(path).name}) now start notebooks on {args.name}")


@group.verb("envs", "list, build or remove the software environments cached on a resource (conda and pip)",
            "cybershuttle compute envs list --resource testcluster --json; "
            "cybershuttle compute envs build --resource testcluster --setup-file cybershuttle.yml; "
            "cybershuttle compute envs rm conda-1a2b3c4d5e6f7a8b --resource testcluster",
            arg("action", choices=["list", "build", "rm"]), arg("hash", nargs="*", help="rm: the environments"),
            arg("--resource", metavar="R", help="list: every resource when left out; required otherwise"),
            arg("--setup-file", metavar="FILE", help="build: the cybershuttle.yml whose environment to build"),
            arg("--force", action="store_true", help="rm: even while a job of yours uses it"), listing=True)
def _envs(args: argparse.Namespace) -> int:
    from .. import compute
    from ..compute import condaenv
    from ..errors import CybershuttleError, UsageError

    if args.action != "list" and not args.resource:
        raise UsageError(f"`compute envs {args.action}` needs --resource R")
    if args.action == "build":
        if not args.setup_file:
            raise UsageError("`compute envs build` needs --setup-file cybershuttle.yml")
        entry = condaenv.build(args.resource, args.setup_file,
                               progress=None if args.json else lambda s: print(s, file=sys.stderr, flush=True))
        if args.json:
            print_json(entry)
        else:
            print(f"{entry['hash']} ready on {args.resource}" + (f" ({entry['size_mb']} MB)" if entry.get("size_mb")
                                                                 else ""))
        return 0
    if args.action == "rm":
        if not args.hash:
            raise UsageError("name the environment(s) to remove: see `cybershuttle compute envs list`")
        removed = [condaenv.remove_env(args.resource, h, force=args.force) for h in args.hash]
        if args.json:
            print_json(removed)
        else:
            for entry in removed:
                print(f"removed {entry['hash']} from {args.resource} ({entry.get('size_mb')} MB freed)")
        return 0
    names = [args.resource] if args.resource else [r.name for r in compute.list()]
    rows = []
    for name in names:
        try:
            rows += condaenv.list_envs(name)
        except CybershuttleError as exc:
            if args.resource:
                raise
            print(f"warning: {name}: {exc}", file=sys.stderr)  # one unreachable resource hides no other
    if args.json:
        print_json(rows)
        return 0
    print_table([{**e, "size": f"{e['size_mb']} MB" if e.get("size_mb") is not None else "-",
                  "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(e["created"])) if e.get("created") else "-",
                  "contents": ", ".join(e.get("specs") or []) + (" + pip: " + ", ".join(e["pip"]) if e.get("pip") else "")
                  or "(pip venv)"} for e in rows],
                [("resource", "resource"), ("hash", "hash"), ("kind", "kind"), ("size", "size"), ("created", "created"),
                 ("contents", "contents")], empty="(no cached environments)")
    return 0


# -- helpers ---------------------------------------------------------------
def _report(results: list[Any], as_json: bool) -> int:
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            print(f"{r.resource.name}: {'registered' if r.saved else 'NOT registered'}")
            for c in r.checks:
                mark = "ok" if c.ok else ("FAILED" if c.required else "warning")
                print(f"  {mark:8} {c.name:10} {c.detail}")
    return 0 if all(r.saved for r in results) else 1


def _status_text(s: dict[str, Any]) -> str:
    if not s:
        return "-"
    if not s.get("reachable"):
        return f"unreachable: {s.get('error')}"
    if s.get("idle_nodes") is not None:
        return f"up, {s['idle_nodes']}/{s['nodes']} nodes idle"
    return f"up, load {s.get('load')}" if s.get("load") is not None else "up"


def _job_exit(job: Any) -> int:
    """The job's exit code; a job that did not complete never exits 0."""
    if job.state == "COMPLETED":
        return 0
    code = job.exit_code if job.exit_code is not None else 1
    return code if 0 < code < 256 else 1


def _duration(seconds: float | None) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
