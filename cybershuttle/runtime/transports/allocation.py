"""The "allocation" transport, for sites that forbid SSH to compute nodes: nothing on the node but the job.

A relay (`allocation_relay.py`) is started inside the runtime's job, on its
node, through the scheduler's step command (`Scheduler.step_command`: for
Slurm an overlapping step of the job) on an exec channel of the pooled login
SSH connection. It gets a fresh secret token on its stdin and answers the port
it listens on. Each forwarded connection is then a `direct-tcpip` channel from
the login node to `node:port` that first presents the token and the loopback
port or Unix socket it wants (the kernel's sockets, a runtime's web server);
the relay answers `+` once connected, so a socket where nothing listens is
refused at once, as a `direct-tcpip` channel would be.

Why the bytes do not travel over the step's own stdin/stdout (measured on
this cluster, one runtime, same run: one step per kernel connection gave
10.0 ms median, 48.5 ms p90 per trivial cell against 6.4 / 7.9 ms direct):
the batch system's I/O forwarding holds back bursts of small writes ~44 ms
waiting for ACKs, and neither end of that connection is ours to tune. The
relay owns its end of the TCP connection and sets TCP_NODELAY and
TCP_QUICKACK (see `cybershuttle/slurm.py` `step_command`).

The relay lives as long as the exec channel that started it: closing it
(runtime stop, this process ending, a dropped connection) ends the step; the
next connection starts a new relay with a new token.
"""
from __future__ import annotations

import secrets
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paramiko

from ... import compute, ssh
from ...compute import schedulers
from ...errors import CybershuttleError, SSHError
from . import TransportError
from .base import Transport

PROGRAM = (Path(__file__).parent / "allocation_relay.py").read_text()
START_TIMEOUT_S = 30.0
#: after a relay failed to start, connections fail at once with the same reason for this long: ZeroMQ
#: reconnects every 100 ms per port, which must not become a stream of steps asked of the scheduler
RETRY_AFTER_S = 5.0


class AllocationTransport(Transport):
    name = "allocation"
    summary = "a relay inside the job's allocation, started through the scheduler (no SSH to the node)"
    preference = 20

    def __init__(self, res: Any, rt: Any) -> None:
        super().__init__(res, rt)
        self._lock = threading.Lock()
        self._relay: paramiko.Channel | None = None
        self._port = 0
        self._token = ""
        self._failed: tuple[float, TransportError] | None = None

    @classmethod
    def allowed(cls, res: Any, shell: Any) -> str | None:
        return schedulers.for_resource(res).steps_refused(shell)

    # -- the relay ---------------------------------------------------------
    def _job(self) -> Any:
        return compute.get_job(self.rt.job_id)

    def _where(self) -> str:
        return f"runtime {self.rt.name} (job {self.rt.job_id}" + (f" on node {self.rt.node})" if self.rt.node else ")")

    def _step(self, command: str) -> str:
        sched = schedulers.for_resource(self.res)
        node = self.rt.node if self.rt.node not in (None, "localhost") else None
        step = sched.step_command(self._job(), command, node)
        if step is None:
            raise TransportError(f"{self._where()}: the {sched.name} scheduler of {self.res.name} cannot start "
                                 "anything inside a job's allocation: use another transport")
        return f"bash -lc {shlex.quote(step)}" if sched.login_shell else step

    def start(self) -> None:
        """Start the relay in the allocation (once; again after it ended)."""
        with self._lock:
            relay = self._relay
            if relay is not None and not relay.closed and not relay.exit_status_ready() \
                    and relay.get_transport().is_active():
                return
            self._close_relay()
            if self._failed is not None and time.monotonic() - self._failed[0] < RETRY_AFTER_S:
                raise self._failed[1]
            try:
                self._start()
            except TransportError as exc:
                self._failed = (time.monotonic(), exc)
                raise
            self._failed = None

    def _start(self) -> None:
        """One try: the relay's step, its token on stdin, its `LISTEN` line back (lock held)."""
        python = self.res.python or "python3"
        command = self._step(f"exec {shlex.quote(python)} -u -c {shlex.quote(PROGRAM)}")
        token = secrets.token_hex(32)
        chan = ssh.connect(self.res.endpoint).session(lambda c: c.exec_command(command),
                                                      f"starting the relay of {self._where()}")
        try:
            chan.sendall(f"{token}\n".encode())
        except (paramiko.SSHException, OSError, EOFError) as exc:
            chan.close()
            raise SSHError(f"{self.res.endpoint.label}: cannot start the relay of {self._where()}: {exc}") from exc
        port = _read_listen(chan, START_TIMEOUT_S)
        if port is None:
            why = _last_line(chan) or "it ended without a word"
            chan.close()
            error = TransportError(f"{self._where()}: the relay inside the allocation did not start: {why}")
            if self._job_ended():
                # The kernel is gone with its job: for the forwarder that is a port where nothing listens
                # (expected after a stop or a walltime end), not a transport that fails.
                raise error from ConnectionRefusedError(f"job {self.rt.job_id} has ended")
            raise error
        self._relay, self._port, self._token = chan, port, token

    def _job_ended(self) -> bool:
        try:
            return compute.status(self.rt.job_id).final
        except CybershuttleError:
            return False  # cannot tell now: say what failed

    def _close_relay(self) -> None:
        if self._relay is not None:
            self._relay.close()  # stdin EOF: the relay and its step end
        self._relay, self._port, self._token = None, 0, ""

    def node_address(self) -> str:
        """The node as the login node names it (the kernel's host)."""
        if self.rt.node and self.rt.node not in ("localhost",):
            return str(self.rt.node)
        return "127.0.0.1"  # the job runs on the login host itself (a one-node cluster)

    # -- the contract ------------------------------------------------------
    unix_sockets = True  # the relay connects to the kernel's Unix sockets on the node itself

    def open_channel(self, host: str, port: int) -> Any:
        return self._through_relay(f"{host} {int(port)}", f"{host}:{port}")

    def open_unix(self, path: str) -> Any:
        return self._through_relay(f"unix {path}", path)

    def _through_relay(self, target: str, what: str) -> Any:
        """A channel to the relay that has presented the token and `target` (`host port`, or `unix PATH`)."""
        self.start()
        node = self.node_address()
        try:
            chan = ssh.connect(self.res.endpoint).open_tunnel(node, self._port)
        except SSHError as exc:
            with self._lock:
                self._close_relay()  # a relay nobody can reach is no use: the next try starts another
            raise TransportError(f"{self._where()}: the login node cannot reach the relay on {node}:{self._port} "
                                 f"({exc})") from exc
        try:
            chan.sendall(f"{self._token} {target}\n".encode())
            chan.settimeout(ssh.CONNECT_TIMEOUT_S)
            answer = chan.recv(1)  # one round trip, once per connection
            chan.settimeout(None)
        except (socket.timeout, OSError, EOFError, paramiko.SSHException) as exc:
            chan.close()
            raise TransportError(f"{self._where()}: the relay on {node}:{self._port} did not answer ({exc})") from exc
        if answer != b"+":
            chan.close()
            # Nothing listens at host:port on the node (a kernel starting, restarting or gone): expected.
            raise TransportError(f"{self._where()}: nothing listens on {what} on the kernel's host") \
                from ConnectionRefusedError(what)
        return chan

    def shell(self) -> AllocationShell:
        return AllocationShell(self)

    def background(self, command: str) -> tuple[Any, str]:
        # A step ends when its command returns, and sites that keep steps in cgroups kill whatever is left
        # in it: a long-lived process gets a step of its own, whose launcher runs on the login node for as long
        # as the process does (signalling the launcher there signals the step).
        workdir = shlex.quote(self._job().workdir)
        return self.res.shell(), self._step(f"cd {workdir} 2>/dev/null || cd; {command}")

    def close(self) -> None:
        with self._lock:
            self._close_relay()


class AllocationShell:
    """A `compute.shell.Shell` whose commands run inside the runtime's allocation, on its node."""

    def __init__(self, transport: AllocationTransport) -> None:
        self.transport = transport
        self.label = f"{transport.res.endpoint.label}, inside job {transport.rt.job_id}"
        self._login = transport.res.shell()

    def _wrap(self, command: str, login_shell: bool) -> str:
        inner = f"bash -lc {shlex.quote(command)}" if login_shell else command
        return self.transport._step(inner)

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            stdin: bytes | None = None, login_shell: bool = False) -> ssh.Result:
        result = self._login.run(self._wrap(command, login_shell), check=False, timeout=timeout, stdin=stdin)
        result = ssh.Result(command, result.exit_code, result.stdout, result.stderr)
        return result.check(self.label) if check else result

    def stream(self, command: str, sink: Callable[[bytes], None], *, login_shell: bool = False,
               timeout: float | None = None) -> int:
        return self._login.stream(self._wrap(command, login_shell), sink, timeout=timeout)


def _read_listen(chan: paramiko.Channel, timeout: float) -> int | None:
    """The port of the relay's `LISTEN <port>` line, or None when it ended first."""
    deadline = time.monotonic() + timeout
    data = b""
    chan.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = chan.recv(256)
        except socket.timeout:
            if chan.exit_status_ready():
                return None
            continue
        if not chunk:
            return None
        data += chunk
        if b"\n" in data:
            words = data.split(b"\n", 1)[0].split()
            chan.settimeout(None)
            return int(words[1]) if len(words) == 2 and words[0] == b"LISTEN" and words[1].isdigit() else None
    return None


def _last_line(chan: paramiko.Channel) -> str:
    chan.settimeout(2)
    err = b""
    try:
        while len(err) < 65536:
            chunk = chan.recv_stderr(4096)
            if not chunk:
                break
            err += chunk
    except socket.timeout:
        pass
    lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
