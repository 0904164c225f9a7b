"""`cybershuttle runtime ...`: remote kernels from a terminal (the magics' twin)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from .output import print_json, print_table
from .verbs import Group, arg

group = Group("runtime")
NAME = arg("name", help="the runtime's name")


def _minutes(text: str) -> float:
    from ..runtime.durable import minutes

    return minutes(text)


_TIMEOUT = arg("--timeout", type=float, default=600.0, help="seconds to wait for the kernel (default 600)")


@group.verb("request", "start a runtime (a remote kernel) on a resource, or re-attach to it; waits until it is ready",
            "cybershuttle runtime request hpc --resource testcluster --cpus 2 --walltime 60",
            NAME, arg("--resource", help="the compute resource (see `cybershuttle compute list`)"),
            arg("--use", help="R:PARTITION[,R2:P2...]: the choice that can start soonest is used"),
            arg("--cpus", type=int), arg("--memory", help="MB, or a size such as 4G"), arg("--gpus", type=int),
            arg("--walltime", help="minutes, or a Slurm time such as 1:30:00"), arg("--partition"),
            arg("--nodes", type=int, help="nodes (Slurm): the kernel runs on the first; its parallel steps use all"),
            arg("--tasks-per-node", type=int, help="tasks on each node for the kernel's parallel steps (Slurm)"),
            arg("--account", help="Slurm account"), arg("--setup-file", help="a cybershuttle.yml to build on the resource"),
            arg("--dry-run", action="store_true", help="print what would be asked for; submit nothing"),
            arg("--no-wait", action="store_true", help="return once submitted"), _TIMEOUT,
            arg("--warn-before", type=_minutes,
                help="minutes (or 30s, 1h) before the walltime to warn and checkpoint (default 5)"),
            arg("--no-checkpoint", action="store_true", help="warn only; take no checkpoint at the warning"),
            arg("--idle-timeout", type=_minutes,
                help="minutes (or 20s, 1h) without a cell after which it checkpoints and gives its job back "
                     "(0: never, whatever the site's default)"),
            arg("--journal-mb", type=float, help="recent output kept for re-attaching notebooks (default 64)"),
            arg("--resume", action="store_true", help="a new job with the namespace of its last checkpoint"))
def _request(args: argparse.Namespace) -> None:
    from ..runtime import plan as plans

    plan = plans.plan(args.name, resource=args.resource, use=args.use, cpus=args.cpus, memory=args.memory,
                      gpus=args.gpus, walltime=args.walltime, partition=args.partition, account=args.account,
                      setup_file=args.setup_file, nodes=args.nodes, tasks_per_node=args.tasks_per_node)
    if args.dry_run:
        print("\n".join(plans.describe(plan)))
        return
    from ..runtime import durable

    options = durable.Options(warn_before_min=args.warn_before, checkpoint=not args.no_checkpoint,
                              idle_timeout_min=args.idle_timeout, journal_mb=args.journal_mb or durable.DEFAULT_JOURNAL_MB)
    rt, reattached = plans.request_planned(plan, options=options, resume=args.resume)
    print("\n".join(plans.report(plan, rt, reattached)))
    if not args.no_wait:
        _wait(rt.name, args.timeout)


@group.verb("list", "list your runtimes and their states", "cybershuttle runtime list --json", listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import runtime

    items = runtime.list_all()
    if args.json:
        print_json([rt.to_dict() for rt in items])
        return
    print_table([{**rt.to_dict(), "node": rt.node or "-",
                  "subprocess": f"pid {rt.subprocess['pid']}" if rt.subprocess else "-"} for rt in items],
                [("name", "name"), ("state", "state"), ("resource", "resource"), ("job_id", "job"),
                 ("node", "node"), ("subprocess", "subprocess")],
                empty="no runtimes: start one with `cybershuttle runtime request NAME --resource R`")


@group.verb("status", "show a runtime: its job's live state, request, transport and subprocess",
            "cybershuttle runtime status hpc --wait", NAME,
            arg("--wait", action="store_true", help="first wait until the kernel is ready"), _TIMEOUT, listing=True)
def _status(args: argparse.Namespace) -> None:
    from .. import runtime

    if args.wait:
        _wait(args.name, args.timeout, quiet=args.json)
    s = runtime.status(args.name)
    durable = _durable(args.name)
    if args.json:
        print_json({**s, **durable})
        return
    job, req = s["job"], s["request"]
    print(f"runtime {s['name']} on {s['resource']}: {s['state']}" + (f" ({s['message']})" if s["message"] else ""))
    print(f"  job:        {job['id']} {job['state']}" + (f" on {s['node']}" if s.get("node") else ""))
    print(f"  request:    {req.get('cpus')} CPU(s), {req.get('memory_mb') or 0} MB, {req.get('gpus')} GPU(s), "
          f"walltime {req.get('walltime') or 'none'}")
    print(f"  transport:  {s['transport']}")
    if s.get("subprocess"):
        print(f"  subprocess: pid {s['subprocess']['pid']}: {s['subprocess']['command']}")
    for key, found in durable.items():
        if found is not None:
            print(f"  {key + ':':11} {found['text']}")


def _durable(name: str) -> dict[str, Any]:
    """The walltime warning the kernel got and what a resume restored (None where nothing)."""
    from .. import runtime
    from ..runtime import durable

    rt = runtime.get(name)
    return {"warning": durable.warning(rt), "resumed": durable.restored(rt)}


@group.verb("checkpoint", "save a runtime's namespace now (dill) into its private directory on the resource; "
            "what cannot be saved is named", "cybershuttle runtime checkpoint hpc", NAME, listing=True)
def _checkpoint(args: argparse.Namespace) -> None:
    from ..runtime import durable

    result = durable.checkpoint(args.name)
    if args.json:
        print_json(result)
        return
    print("\n".join(durable.report(args.name, result)))


@group.verb("extend", "raise a running runtime's time limit, where the site lets users",
            "cybershuttle runtime extend hpc --walltime +30", NAME,
            arg("--walltime", required=True, help="+MINUTES to add"))
def _extend(args: argparse.Namespace) -> None:
    from ..errors import UsageError
    from ..runtime import durable

    minutes = args.walltime.lstrip("+")
    if not minutes.isdigit():
        raise UsageError(f"runtime extend {args.name}: give --walltime +MINUTES (got {args.walltime!r})")
    done = durable.extend(args.name, int(minutes))
    print(f"runtime {args.name}: job {done['job']} got {done['added_min']} more minute(s)")


@group.verb("restart", "give a runtime a fresh kernel: a new job with the same request (variables are lost)",
            "cybershuttle runtime restart hpc", NAME, _TIMEOUT)
def _restart(args: argparse.Namespace) -> None:
    from .. import runtime

    start = time.monotonic()
    rt = runtime.restart(args.name, timeout=args.timeout, progress=_progress(args.name, start))
    print(f"runtime {rt.name} restarted with a fresh kernel as job {rt.job_id} ({time.monotonic() - start:.1f} s)")


@group.verb("stop", "stop a runtime: its job, subprocess, tunnels, files and keys",
            "cybershuttle runtime stop hpc", NAME)
def _stop(args: argparse.Namespace) -> None:
    from .. import runtime

    rt = runtime.stop(args.name)
    print(f"runtime {rt.name} stopped (job {rt.job_id})")


@group.verb("connect", "write a connection file any Jupyter client can use, and forward the kernel's ports "
            "while this runs (or open `jupyter console` on it)",
            "cybershuttle runtime connect hpc --console", NAME,
            arg("--file", help="where to write it (default: kernel-cybershuttle-NAME.json in Jupyter's runtime "
                               "directory, where clients look for existing kernels)"),
            arg("--console", action="store_true", help="start `jupyter console` on the runtime; end with it"))
def _connect(args: argparse.Namespace) -> int:
    from ..runtime import connection

    _wait(args.name, 600.0)
    path, forwarded = connection.write_connection_file(args.name, args.file)
    if args.console:
        try:
            return _console(path)
        finally:
            path.unlink(missing_ok=True)
    print(f"connection file: {path}")
    if json.loads(path.read_text()).get("curve_secretkey"):
        print(f"  use it with: cybershuttle runtime connect {args.name} --console, or any client that loads the "
              "whole file (jupyter_client's load_connection_file: the kernel is CurveZMQ-encrypted)")
    else:  # Unix sockets, private by their directory: any client, `jupyter console --existing` too
        print(f"  use it with: jupyter console --existing {path}, or any Jupyter client")
    if not forwarded:
        return 0  # the kernel runs on this machine: its sockets need no forward
    print("forwarding the kernel's sockets while this runs; Ctrl-C (or SIGTERM) ends it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause() if hasattr(signal, "pause") else time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        path.unlink(missing_ok=True)  # its ports are gone with this process
    return 0


def _console(path: Any) -> int:
    """`jupyter console` on the file, in this process (which holds the forwards)."""
    from jupyter_console.app import ZMQTerminalIPythonApp

    class Console(ZMQTerminalIPythonApp):  # type: ignore[misc]
        def init_kernel_client(self) -> None:
            # jupyter_client's console app builds its client from the file's ports alone and drops
            # its CurveZMQ keys, so it could not talk to an encrypted kernel: load the whole file.
            self.kernel_client = self.kernel_client_class(session=self.session, parent=self)
            self.kernel_client.load_connection_file(str(path))
            self.kernel_client.start_channels()

    app = Console()
    app.initialize(["--existing", str(path)])
    try:
        app.start()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _wait(name: str, timeout: float, quiet: bool = False) -> Any:
    from .. import runtime

    start = time.monotonic()
    rt = runtime.wait(name, timeout=timeout, progress=None if quiet else _progress(name, start))
    if not quiet:
        print(f"runtime {name} is ready on {rt.resource} ({time.monotonic() - start:.1f} s)", flush=True)
    return rt


def _progress(name: str, start: float):
    def show(text: str) -> None:
        print(f"runtime {name}: {text} ({time.monotonic() - start:.1f} s)", file=sys.stderr, flush=True)

    return show
