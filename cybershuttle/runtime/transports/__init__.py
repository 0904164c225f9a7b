"""Transports: how a runtime's kernel is reached, found through the entry-point group `cybershuttle.transports`.

Each entry point names a `Transport` subclass (see `base` for the contract).
Cybershuttle's own pyproject.toml declares four:

    [project.entry-points."cybershuttle.transports"]
    login = ...        # the kernel runs on the resource's host: forwards over the pooled SSH connection
    node-ssh = ...     # a compute node reached by SSH through a relay on the login node
    allocation = ...   # a relay started inside the job's allocation (sites that forbid SSH to nodes)
    node-tcp = ...     # direct-tcpip to the kernel on the node's cluster address (opt-in; CurveZMQ keeps it private)

Registration asks every node transport whether the resource allows it
(`detect`, kept in `facts["transports"]`); a runtime whose kernel landed on a
compute node uses the resource's `transport:` setting when it has one, else
the allowed transport of lowest `preference`. A kernel on the resource's own
host needs no node transport ("login"), unless the setting says otherwise.
"""
from __future__ import annotations

import socket
import threading
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from ... import plugins
from ...errors import CybershuttleError
from .base import Transport

if TYPE_CHECKING:
    from ...compute.resources import Check, Resource
    from ...compute.shell import Shell

GROUP = "cybershuttle.transports"
LOGIN = "login"


class TransportError(CybershuttleError):
    """A transport that is unknown, cannot be loaded, or that the resource does not allow."""

    http_status = 502


@lru_cache(maxsize=None)
def _entry_points() -> tuple[dict[str, type[Transport]], dict[str, str]]:
    return plugins.load(GROUP, Transport)


def installed() -> dict[str, type[Transport]]:
    """Every loadable transport class by its entry-point name, lowest preference first."""
    found = _entry_points()[0]
    return dict(sorted(found.items(), key=lambda item: (item[1].preference, item[0])))


def get(name: str) -> type[Transport]:
    found, broken = _entry_points()
    if name in found:
        return found[name]
    if name in broken:
        raise TransportError(f"transport {name!r}: {broken[name]}: reinstall cybershuttle "
                             "or the distribution that provides it")
    raise TransportError(f"no transport named {name!r} (installed: {', '.join(installed()) or 'none'}): "
                         f"install the distribution that provides it")


def node_transports() -> list[str]:
    """The installed transports that reach compute nodes, in order of preference."""
    return [name for name, cls in installed().items() if cls.for_nodes]


def detect(res: Resource, shell: Shell, facts: dict[str, Any]) -> list[Check]:
    """Registration: which node transports `res` allows (into `facts["transports"]`), as one check.

    The check is required only when the resource's `transport:` setting names a
    transport that is not allowed (a setting that cannot work is not saved).
    """
    from dataclasses import replace

    from ...compute import schedulers
    from ...compute.resources import Check

    if res.transport is not None:
        get(res.transport)  # an unknown name is refused before anything else is said
    if res.remote:
        facts["unix_sockets"] = ssh_forwards_unix_sockets(res)
    probe = replace(res, facts=facts)
    if not schedulers.for_resource(res).runs_on_nodes:
        facts["transports"] = [LOGIN]  # jobs run on the resource's own host
        if res.transport in (None, LOGIN):
            return []
        why = get(res.transport).allowed(probe, shell) or "its jobs run on the resource's own host"
        return [Check("transport", False, True, f"transport {res.transport} is not allowed on {res.name}: {why}; "
                                                f"allowed: {LOGIN}")]
    allowed: list[str] = []
    refused: dict[str, str] = {}
    for name in node_transports():
        if getattr(get(name), "opt_in", False) and res.transport != name:
            continue  # probed only for a resource whose setting names it (node-tcp)
        try:
            why = get(name).allowed(probe, shell)
        except CybershuttleError as exc:
            why = str(exc)
        if why is None:
            allowed.append(name)
        else:
            refused[name] = why
    facts["transports"] = allowed
    use = res.transport or (allowed[0] if allowed else None)
    parts = [f"runtimes on compute nodes use {use}" + (" (set by the resource)" if res.transport else "")
             if use else "no transport reaches the compute nodes (kernels can run on the login host only)"]
    parts += [f"{name}: not allowed ({why})" for name, why in refused.items()]
    if res.transport is not None and res.transport not in allowed and res.transport != LOGIN:
        return [Check("transport", False, True, f"transport {res.transport} is not allowed on {res.name}: "
                                                f"{refused.get(res.transport, 'it does not reach nodes')}; "
                                                f"allowed: {', '.join(allowed) or 'none'}")]
    return [Check("transport", bool(allowed) or res.transport == LOGIN, False, "; ".join(parts))]


def chosen(res: Resource) -> str | None:
    """The transport runtimes of `res` use on compute nodes (None: none is allowed)."""
    if res.transport:
        return res.transport
    allowed = res.facts.get("transports")
    if allowed is None:  # registered before transports were detected: the first installed one
        allowed = node_transports()
    return next((name for name in allowed if name != LOGIN), None)


def _reaching(res: Resource) -> list[str]:
    """The transports that may reach a runtime's kernel on `res` (its own host, and its nodes')."""
    from ...compute import schedulers

    if res.transport:
        return [res.transport]
    node = chosen(res) if schedulers.for_resource(res).runs_on_nodes else None
    return [LOGIN] + ([node] if node else [])


# Listens on a Unix socket in a fresh 0700 directory, says where, answers one connection with "+", cleans up.
_UNIX_PROBE = r'''
import os, socket, sys, tempfile
d = tempfile.mkdtemp(prefix="cs-probe-")
path = os.path.join(d, "s")
s = socket.socket(socket.AF_UNIX)
try:
    s.bind(path); s.listen(1); s.settimeout(20)
    print(path, flush=True)
    c = s.accept()[0]; c.sendall(b"+"); c.close()
except OSError:
    pass
finally:
    s.close()
    for p in (path, d):
        try:
            os.unlink(p) if p == path else os.rmdir(p)
        except OSError:
            pass
'''


def ssh_forwards_unix_sockets(res: Resource) -> bool:
    """Whether the SSH server of `res` forwards to Unix sockets: a socket made there for the purpose is
    reached through it. (OpenSSH answers a socket nobody listens on, a server that forbids it
    (`AllowStreamLocalForwarding no`) and an unknown channel type alike, so only a real one tells.)"""
    import shlex

    from ... import ssh

    conn = ssh.connect(res.endpoint)
    chan = conn.session(lambda c: c.exec_command(f"{shlex.quote(res.python or 'python3')} -c "
                                                 f"{shlex.quote(_UNIX_PROBE)}"), "probing Unix-socket forwarding")
    try:
        chan.settimeout(ssh.CONNECT_TIMEOUT_S)
        path = chan.makefile("rb").readline().decode(errors="replace").strip()
        if not path.startswith("/"):
            return False  # no Python there to make the socket: keep to TCP with CurveZMQ
        try:
            probe = conn.open_unix(path)
        except CybershuttleError:
            return False
        try:
            probe.settimeout(ssh.CONNECT_TIMEOUT_S)
            return probe.recv(1) == b"+"
        finally:
            probe.close()
    except (OSError, EOFError):  # a silent or vanished probe: not evidence that it works
        return False
    finally:
        chan.close()


def unix_sockets(res: Resource, *, probe: bool = True) -> bool:
    """Whether runtime kernels on `res` bind Unix sockets (private by their 0700 directory, no CurveZMQ):
    a remote resource whose SSH server forwards them and every transport that may reach the kernel can.
    This machine's kernels keep loopback TCP with CurveZMQ (no SSH hop, so nothing to save)."""
    if not res.remote or not hasattr(socket, "AF_UNIX"):  # Windows' Python: no Unix sockets here to forward to
        return False
    allowed = res.facts.get("unix_sockets")
    if allowed is None and probe:  # registered before this was detected
        allowed = ssh_forwards_unix_sockets(res)
    return bool(allowed) and all(get(name).unix_sockets for name in _reaching(res))


def kernel_command(res: Resource, command: str) -> str:
    """The job command of a runtime kernel on `res`: `command`, after the prelude of the transport that will
    reach it, if that transport has one (node-tcp binds the kernel to the node's cluster address)."""
    from ...compute import schedulers

    name = res.transport or (chosen(res) if schedulers.for_resource(res).runs_on_nodes else None)
    prelude = getattr(get(name), "kernel_prelude", "") if name else ""  # optional: most transports need none
    return f"{{ {prelude}; }} || exit 1; {command}" if prelude else command


def describe(res: Resource) -> dict[str, Any]:
    """What `compute show` says: the transport runtimes use, why, and which the resource allows."""
    from ...compute import schedulers

    on_nodes = schedulers.for_resource(res).runs_on_nodes
    name = chosen(res) if on_nodes or res.transport else LOGIN
    summary = ""
    if name is not None:
        try:
            summary = get(name).summary
        except TransportError as exc:
            summary = str(exc)
    return {"transport": name, "summary": summary, "set_by_resource": bool(res.transport),
            "allowed": list(res.facts.get("transports", [])), "on_nodes": on_nodes,
            "kernel_sockets": "unix" if unix_sockets(res, probe=False) else "tcp"}


def name_for(rt: Any, res: Resource) -> str:
    """Which transport reaches runtime `rt`'s kernel."""
    if res.transport:
        return res.transport
    if not rt.node or rt.node in (res.facts.get("hostname"), res.host, "localhost"):
        return LOGIN
    name = chosen(res)
    if name is None:
        raise TransportError(f"runtime {rt.name} runs on node {rt.node} (job {rt.job_id}), but {res.name} allows no "
                             f"transport to its compute nodes: re-register {res.name} to detect them again")
    return name


_cache: dict[str, Transport] = {}
_cache_lock = threading.Lock()


def for_runtime(rt: Any, res: Resource) -> Transport:
    """The transport instance reaching runtime `rt` in this process (one per runtime and job)."""
    name = name_for(rt, res)
    key = rt.name
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached.name == name and cached.rt.job_id == rt.job_id and cached.rt.node == rt.node:
            return cached
    cls = get(name)
    transport = cls(res, rt)
    with _cache_lock:
        old, _cache[key] = _cache.get(key), transport
    if old is not None:
        old.close()
    return transport


def close(runtime_name: str) -> None:
    """Release the transport this process holds for `runtime_name` (stop, restart, re-request)."""
    with _cache_lock:
        transport = _cache.pop(runtime_name, None)
    if transport is not None:
        transport.close()


__all__ = ["GROUP", "LOGIN", "Transport", "TransportError", "chosen", "close", "describe", "detect", "for_runtime", "get",
           "installed", "kernel_command", "name_for", "node_transports", "ssh_forwards_unix_sockets", "unix_sockets"]
