"""The "node-ssh" transport: SSH to the compute node, carried by our relay on the login node.

The node's SSH session runs inside an exec channel of the pooled login
connection, where our relay (`runtime/relay.py`) holds the TCP connection to
the node's sshd with TCP_NODELAY and quick ACKs; the kernel's sockets are then
forwarded by the node's session, on the node. Why not the login sshd's own
`direct-tcpip` (as ProxyJump): the connection sshd opens for it keeps Nagle's
algorithm, so our small messages toward the node can wait for the node's delayed
ACK; measured, after the node's sshd had its TCP_NODELAY (`ssh.Connection._nodelay`),
1.09-1.13x a local kernel on a quiet machine but 1.8x in one CI run under load,
where the relay has held. The node is checked against the same known_hosts and
authenticated with the same key as the login host (a cluster's shared home), so
a site that lets users SSH to the nodes where their jobs run (pam_slurm_adopt)
needs nothing more.
"""
from __future__ import annotations

import threading
from typing import Any

from ... import ssh
from ...compute.shell import RemoteShell
from ...errors import CybershuttleError
from .. import relay
from .base import Transport

#: how long registration waits for one node's sshd to greet the login host (seconds)
PROBE_TIMEOUT_S = 5

_users: dict[ssh.Endpoint, int] = {}  # runtimes of this process using each pooled node connection
_users_lock = threading.Lock()


def node_endpoint(res: Any, node: str) -> ssh.Endpoint:
    """How this machine reaches `node` of resource `res`: through its login host and our relay.

    Port 22 unless the resource sets `node_port` (the login host's port is often
    a gateway's, so it says nothing about the nodes').
    """
    login = res.endpoint
    return ssh.Endpoint(node, res.node_port, login.user, login.key, login.known_hosts, via=login, hop="relay")


class NodeSSHTransport(Transport):
    name = "node-ssh"
    summary = "SSH to the compute node through a relay on the login node (TCP_NODELAY, quick ACKs)"
    preference = 10

    def __init__(self, res: Any, rt: Any) -> None:
        super().__init__(res, rt)
        self.endpoint = node_endpoint(res, rt.node)
        with _users_lock:
            _users[self.endpoint] = _users.get(self.endpoint, 0) + 1
        self._closed = False

    @classmethod
    def allowed(cls, res: Any, shell: Any) -> str | None:
        """Allowed when a node's sshd greets the login host (read by our relay program; no login needed:
        pam_slurm_adopt refuses users without a job there only after the greeting)."""
        from ...compute import schedulers

        own = {res.facts.get("hostname"), res.host, "localhost"}
        nodes = [n for n in schedulers.for_resource(res).nodes(shell) if n not in own][:3]
        if not nodes:
            return "the scheduler names no compute nodes other than the login host"
        port = res.node_port
        why = ""
        for node in nodes:
            probe = (f"timeout {PROBE_TIMEOUT_S} {relay.command(node, port)} </dev/null 2>&1 | head -c 300")
            out = shell.run(probe, check=False, timeout=PROBE_TIMEOUT_S + 15).stdout
            if "SSH-2.0" in out:
                return None
            said = [ln.removeprefix("cybershuttle-relay: ") for ln in out.splitlines() if ln.strip()]
            why = f"no SSH server answers on {node}:{port} from the login host" + (
                f" ({said[0]})" if said and said[0] != "ok" else "")
        return why

    def start(self) -> None:
        """Connect to the node now, so that an unknown host key or an unreachable node is said here,
        in one line naming the runtime, its job and the node (the forwarder's thread could only log it)."""
        try:
            conn = ssh.connect(self.endpoint)
        except CybershuttleError as exc:
            error = type(exc)(f"runtime {self.rt.name} (job {self.rt.job_id}) on node {self.rt.node}: {exc}")
            error.next_step = exc.next_step
            raise error from exc
        if self.rt.ipc_path and self.rt.remote_ports:
            # Registration saw the login node's sshd forward to Unix sockets; a node's may not, and then every
            # connection would look like a kernel not there yet (OpenSSH answers both alike): say it once here.
            hb = f"{self.rt.ipc_path}-{int(self.rt.remote_ports['hb_port'])}"
            try:
                conn.open_unix(hb).close()
            except CybershuttleError as exc:
                raise CybershuttleError(
                    f"runtime {self.rt.name} (job {self.rt.job_id}): the SSH server of node {self.rt.node} does not "
                    f"forward to the kernel's socket {hb} ({exc}): either the job has just ended, or the nodes "
                    f"forbid forwarding to Unix sockets (AllowStreamLocalForwarding no); then set `transport: "
                    f"allocation` on {self.res.name}") from exc

    def open_channel(self, host: str, port: int) -> Any:
        return ssh.connect(self.endpoint).open_tunnel(host, port)

    unix_sockets = True  # the node's sshd, like the login node's (one sshd_config per site, as a rule)

    def open_unix(self, path: str) -> Any:
        return ssh.connect(self.endpoint).open_unix(path)

    def openssh(self) -> ssh.Endpoint:
        return self.endpoint  # the node, behind its login host: a master there carries the node's client

    def shell(self) -> RemoteShell:
        return RemoteShell(self.endpoint)

    def close(self) -> None:
        """Drop the node connection (and with it the relay) when no other runtime here uses it."""
        if self._closed:
            return
        self._closed = True
        with _users_lock:
            left = _users.get(self.endpoint, 1) - 1
            if left > 0:
                _users[self.endpoint] = left
                return
            _users.pop(self.endpoint, None)
        ssh.pool.drop(self.endpoint)


__all__ = ["NodeSSHTransport", "node_endpoint"]
