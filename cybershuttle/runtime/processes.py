"""A background process beside a runtime's kernel (a web app, TensorBoard, a solver's GUI).

It runs on the kernel's host, from the runtime's working directory, in a
login shell and a session of its own (so stopping it stops its children),
its output appended to `subprocess.log` in the job directory. Its pid is kept
in the runtime's catalog record, so whichever front end started it, any
other (or a restarted notebook) can stop it; stopping the runtime stops it.
One process per runtime; its ports are forwarded here on request (`tunnels`).
"""
from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

from .. import compute
from ..compute.shell import Shell
from ..errors import CybershuttleError
from . import tunnels


def start_subprocess(name: str, command: str, *, ports: list[int] | tuple[int, ...] = ()) -> dict[str, Any]:
    """Start `command` on runtime `name`'s host; returns {"pid", "command", "ports": {remote: local}}."""
    from . import KIND, RuntimeError_, _to_data, get, wait

    if not command.strip():
        raise CybershuttleError("the subprocess needs a command to run")
    rt = get(name)
    if rt.subprocess:
        raise RuntimeError_(f"runtime {name} already runs a subprocess (pid {rt.subprocess['pid']}): stop it first",
                            next_step=("runtime.stop_subprocess", name))
    if rt.state != "READY":
        rt = wait(name)
    job = compute.get_job(rt.job_id)
    log = shlex.quote(f"{job.jobdir}/subprocess.log")
    shell, there = _background(rt, command)
    # `setsid` in a non-interactive shell does not fork, so $! is both the pid and the process group.
    script = (f"cd {shlex.quote(job.workdir)} 2>/dev/null || cd; "
              f"setsid bash -lc {shlex.quote(there)} >>{log} 2>&1 </dev/null & echo $!")
    out = shell.run(script, timeout=60).stdout.split()
    if not out or not out[-1].isdigit():
        raise RuntimeError_(f"runtime {name}: the subprocess did not start (no pid came back)")
    info = {"pid": int(out[-1]), "command": command, "ports": sorted(set(ports))}
    from ..registry import catalog

    catalog().private.update(KIND, name, lambda _: _to_data(replace(rt, subprocess=info)))
    mapping = tunnels.open_tunnels(name, list(ports)) if ports else {}
    return {**info, "ports": mapping}


def stop_subprocess(name: str) -> dict[str, Any]:
    """Stop runtime `name`'s subprocess (its whole process group) and close the runtime's tunnels."""
    from . import KIND, RuntimeError_, _to_data, get

    rt = get(name)
    if not rt.subprocess:
        raise RuntimeError_(f"runtime {name} runs no subprocess", next_step=("runtime.start_subprocess", name))
    info = dict(rt.subprocess)
    pid = int(info["pid"])
    try:
        shell, _ = _background(rt, info["command"])
        shell.run(f"kill -TERM -- -{pid} 2>/dev/null || kill -TERM {pid} 2>/dev/null || true", timeout=30)
    except CybershuttleError:
        if rt.state == "READY":
            raise  # the host is unreachable while the runtime should be there: say so
        # a dead runtime's host may be gone with it: nothing left to stop
    from ..registry import catalog

    catalog().private.update(KIND, name, lambda _: _to_data(replace(rt, subprocess=None)))
    info["closed_ports"] = tunnels.close_tunnels(name)
    return info


def _background(rt: Any, command: str) -> tuple[Shell, str]:
    """Where the subprocess is started and signalled, and `command` as that shell runs it on the kernel's host
    (its compute node, reached as the runtime's transport says: see `Transport.background`)."""
    from . import transports

    res = compute.get(rt.resource)
    if not res.remote:
        return res.shell(), command
    return transports.for_runtime(rt, res).background(command)
