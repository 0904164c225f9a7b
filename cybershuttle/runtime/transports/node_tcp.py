"""The "node-tcp" transport: straight to the kernel on the compute node's cluster address.

The kernel binds the address its node's name resolves to (the one the login
node reaches, e.g. 10.77.14.11) instead of 127.0.0.1, and each of its ports
is a `direct-tcpip` channel of the pooled login SSH connection to
node:port: the same hops as a kernel on the login host, no second SSH
session, no relay process. Privacy does not rest on the address: every kernel
socket speaks CurveZMQ with a server key that exists only in the job's 0600
connection file and the owner's 0600 secrets, so nobody else on the cluster
network can complete a handshake, and messages are signed with the HMAC key
besides. A runtime without CurveZMQ refuses to start this way (its prelude
says so in one line).

Only the kernel's ports go this way: commands on the node (a terminal, a
runtime's subprocess, its tunnels) use another node transport the resource
allows (node-ssh or allocation). Opt-in: set `transport: node-tcp` on the
resource; detection alone prefers node-ssh.
"""
from __future__ import annotations

import shlex
import socket
from typing import Any

from ... import ssh
from ...errors import CybershuttleError
from .base import Transport

#: how long registration waits for one node's address to answer TCP from the login host (seconds)
PROBE_TIMEOUT_S = 3

# Run in the job before the kernel (the job's own Python, in its job directory): the kernel binds the
# node's cluster address. Refuses a loopback answer (nothing could reach it) and a kernel without
# CurveZMQ (its sockets would be open to the cluster network).
_BIND = r'''
import json, os, socket, sys
path = os.path.join(os.environ["CYBERSHUTTLE_JOB_DIR"], "connection.json")
host = socket.gethostname()
try:
    addr = socket.gethostbyname(host)
except OSError as exc:
    sys.exit(f"cybershuttle: error: node {host} cannot resolve its own name ({exc}): transport node-tcp needs "
             "the node's cluster address; use transport node-ssh")
if addr.startswith("127."):
    sys.exit(f"cybershuttle: error: node {host}'s name resolves to {addr}, a loopback address: transport node-tcp "
             "needs the node's cluster address; use transport node-ssh")
with open(path, "r+") as fh:
    info = json.load(fh)
    if not info.get("curve_secretkey"):
        sys.exit("cybershuttle: error: transport node-tcp exposes the kernel's ports to the cluster network and "
                 "needs CurveZMQ: request the runtime with encryption on")
    info["ip"] = addr
    fh.seek(0)
    json.dump(info, fh)
    fh.truncate()
'''

# Registration: does each node's address answer TCP from the login host? A refusal counts: the address
# is routed and the host answered (no port of the kernel is open yet); silence or no route does not.
_PROBE = r'''
import socket, sys
port, timeout = int(sys.argv[1]), float(sys.argv[2])
for node in sys.argv[3:]:
    try:
        socket.create_connection((node, port), timeout=timeout).close()
    except ConnectionRefusedError:
        pass
    except OSError as exc:
        print(f"{node}:{port}: {exc}")
        continue
    print("reachable", node)
    break
'''


class NodeTCPTransport(Transport):
    name = "node-tcp"
    summary = ("direct-tcpip over the SSH connection to the login node, straight to the kernel on the node's "
               "cluster address (CurveZMQ keeps it private)")
    preference = 30  # after node-ssh (10) and allocation (20)
    #: registration probes it only for a resource whose `transport:` names it: its privacy rests on
    #: CurveZMQ alone (ports open to the cluster network), which a site may want to decide on first
    opt_in = True
    #: shell command run in the job before the kernel (see `transports.kernel_command`)
    kernel_prelude = f"python -c {shlex.quote(_BIND)}"

    def __init__(self, res: Any, rt: Any) -> None:
        super().__init__(res, rt)
        self._commands: Transport | None = None

    @classmethod
    def allowed(cls, res: Any, shell: Any) -> str | None:
        """Allowed when a compute node's address answers TCP from the login host."""
        from ...compute import schedulers

        own = {res.facts.get("hostname"), res.host, "localhost"}
        nodes = [n for n in schedulers.for_resource(res).nodes(shell) if n not in own][:3]
        if not nodes:
            return "the scheduler names no compute nodes other than the login host"
        port = res.node_port
        python = shlex.quote(res.python or "python3")
        out = shell.run(f"{python} -c {shlex.quote(_PROBE)} {port} {PROBE_TIMEOUT_S} "
                        + " ".join(shlex.quote(n) for n in nodes), check=False,
                        timeout=PROBE_TIMEOUT_S * len(nodes) + 15).stdout
        if "reachable " in out:
            return None
        said = [ln for ln in out.splitlines() if ln.strip()]
        return "no compute node's address answers TCP from the login host" + (f" ({said[-1]})" if said else "")

    def _kernel_ports(self) -> dict[str, int]:
        """The kernel's ports. This instance may have been made before they were known (`runtime.wait` warms
        the transport when the job starts): then they are read from the runtime's record."""
        if not self.rt.remote_ports:
            from ... import runtime

            found = runtime.find(self.rt.name)
            if found is not None and found.job_id == self.rt.job_id and found.remote_ports:
                self.rt = found
        return {k: int(v) for k, v in self.rt.remote_ports.items()}

    def _kernel_port(self, host: str, port: int) -> bool:
        return host in ("127.0.0.1", "localhost") and port in self._kernel_ports().values()

    def _connect(self, port: int) -> Any:
        if not self.res.remote:
            sock = socket.create_connection((self.rt.node, port), timeout=ssh.CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        return ssh.connect(self.res.endpoint).open_tunnel(self.rt.node, port)

    def start(self) -> None:
        """Reach the kernel's shell port once now, so that a node the login host cannot reach is said here
        in one line naming the runtime, its job and the node (the forwarder's thread could only log it)."""
        port = self._kernel_ports().get("shell_port")
        if port is None:  # warmed while the kernel starts: the login connection is all there is to make
            if self.res.remote:
                ssh.connect(self.res.endpoint)
            return
        try:
            self._connect(port).close()
        except Exception as exc:  # OSError, or paramiko's ChannelException (neither is the other)
            raise CybershuttleError(
                f"runtime {self.rt.name} (job {self.rt.job_id}) on node {self.rt.node}: the login host cannot "
                f"reach {self.rt.node}:{port} ({exc}): set transport node-ssh on {self.res.name}") from exc

    def open_channel(self, host: str, port: int) -> Any:
        if self._kernel_port(host, port):
            return self._connect(port)
        return self._for_commands().open_channel(host, port)  # a runtime's own tunnels: 127.0.0.1 on the node

    def openssh(self) -> Any:
        return self.res.endpoint if self.res.remote else None  # the login host: -L to node:port from there

    def kernel_address(self, host: str) -> str:
        return self.rt.node  # the kernel binds the node's cluster address (see _BIND), not its loopback

    def _for_commands(self) -> Transport:
        """The node transport that runs commands on the node (this one carries only the kernel's ports)."""
        if self._commands is None:
            from . import LOGIN, get

            others = [n for n in self.res.facts.get("transports", []) if n not in (self.name, LOGIN)]
            if not others:
                raise CybershuttleError(
                    f"runtime {self.rt.name} on node {self.rt.node}: transport node-tcp carries only the kernel's "
                    f"ports, and {self.res.name} allows no node transport that runs commands there (node-ssh, "
                    f"allocation): re-register {self.res.name} where one is allowed")
            self._commands = get(others[0])(self.res, self.rt)
        return self._commands

    def shell(self):
        return self._for_commands().shell()

    def background(self, command: str):
        return self._for_commands().background(command)

    def close(self) -> None:
        if self._commands is not None:
            self._commands.close()
            self._commands = None


__all__ = ["NodeTCPTransport"]
