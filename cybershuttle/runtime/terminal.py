"""The command that puts an interactive shell on a runtime's host, inside its job's allocation.

A front end runs it in a terminal: a JupyterLab terminal (`%open_web_terminal`),
or the user's own. The allocation is entered the way the resource's scheduler
says (`compute.enter_command`: a shell step inside the job on a batch
scheduler, a login shell in the job's working directory for a process); a remote host is reached with the
OpenSSH client, with the resource's key and its pinned known_hosts.
"""
from __future__ import annotations

from .. import compute


def terminal_command(name: str) -> list[str]:
    """argv of a shell on runtime `name`'s host, inside its allocation."""
    from . import get

    rt = get(name)
    job = compute.get_job(rt.job_id)
    res = compute.get(rt.resource)
    inside = compute.enter_command(job)
    if not res.remote:
        return ["bash", "-lc", inside]
    ep = res.endpoint
    argv = ["ssh", "-t", "-p", str(ep.port), "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={ep.known_hosts_path}"]
    if ep.key:
        argv += ["-i", ep.key, "-o", "IdentitiesOnly=yes"]
    return argv + [f"{ep.user}@{ep.host}", inside]
