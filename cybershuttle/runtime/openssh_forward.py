"""A runtime's kernel sockets forwarded by an OpenSSH client process, outside this process.

The in-process forwarder (`forward.py`, paramiko) costs every kernel message
Python work in the process that also runs the notebook's client (the Jupyter
server, with its event loop): both take turns on one interpreter lock, so each
message waits for the other's Python. Measured on the loopback cluster, trivial
cell, same runtime, same run: 1.10-1.12x a local kernel's round trip in-process,
1.02-1.04x through `ssh -L` (the peer, whose forwarding is the same OpenSSH
client, 1.04x). The client is C, runs beside ours on another core, and its
AES-GCM keeps large outputs as fast as our in-process path.

Used when the runtime's transport reaches the kernel's Unix sockets through an
SSH server (`Transport.openssh`: the login transport, and node-ssh's node behind the
login host), the `ssh` client exists, the paths fit its `-L LOCAL:REMOTE` syntax,
and it logs in without asking anything (BatchMode: a key file or an agent; host
keys checked against the resource's known_hosts, no configuration file read,
nothing secret on its command line). Anything else (a passphrase, a one-time code,
no client) keeps the in-process forwarder.

A node is reached through a master connection to the login host that runs a
session of its own, the node's client going through it (`-W`, as ProxyJump does):
the session is what gives the login sshd's side TCP_NODELAY (a hop over a connection
that only forwards stalled ~40 ms a cell). Measured on the three-node cluster in one
run: a trivial cell 1.08x local (in-process 1.21x, the peer 1.12x), one 20 MB write
1.12x (in-process 1.55x, the peer through ProxyJump 1.59x).

A kernel on TCP ports (node-tcp's on the node's cluster address; one on a login host
that forbids forwarding to Unix sockets) is forwarded with `-L LOCAL:host:port` to Unix
sockets here all the same: CurveZMQ still guards the kernel's side, and here no other
local user can even connect (node-tcp's one 20 MB write: 1.46x local in-process, 1.15-1.20x).

The process runs one session (`exec cat` on its stdin) besides the forwards:
sshd turns on TCP_NODELAY only when a session starts (see `ssh.Connection._nodelay`),
and the session ends with this process (its stdin closes). When the connection
drops, the process exits and is started again, as the in-process forwarder
reconnects; ZeroMQ reconnects to the same local sockets by itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque

from .. import ssh

log = logging.getLogger(__name__)

#: how long the first start may take (the client's connection and login), seconds
START_TIMEOUT_S = 20.0
#: longest wait between two restarts after a drop, seconds
RESTART_MAX_S = 5.0

# Options of our own: no configuration file (the in-process path reads none either: the same host, user, key
# and known_hosts in both), a failed forward is fatal (never a half-forwarded kernel), a local socket of ours
# left by a previous client is replaced, a dead connection is noticed, and AES-GCM first (AES-NI; the client's
# default, chacha20-poly1305, costs more per byte on a large output).
_OPTIONS = ["-F", "none", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
            "-o", "StreamLocalBindMask=0177", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
            "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
                  "aes128-ctr,aes256-ctr"]


class Unavailable(Exception):
    """The OpenSSH client cannot carry these forwards (the in-process forwarder will); says why."""


class OpenSSHForwards:
    """Local Unix sockets (`pairs`: local path, remote path or host:port) forwarded by one `ssh` process to
    `endpoint`.

    An endpoint behind a login host (`via`: a compute node) is reached as OpenSSH's ProxyJump does, through
    a master connection to the login host that runs a session too (so its sshd has TCP_NODELAY; a hop
    over a connection that only forwards stalls each cell ~40 ms), with the node's client on `-W` over it.
    """

    def __init__(self, endpoint: ssh.Endpoint, pairs: list[tuple[str, str]], label: str) -> None:
        self.endpoint = endpoint
        self.pairs = pairs
        self.label = label  # names the runtime in log lines
        self._procs: list[subprocess.Popen] = []  # [the login master,] the client that forwards
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=5)

    @property
    def control_path(self) -> str:
        """The login master's socket, beside the local sockets (a 0700 directory of the caller's)."""
        return os.path.join(os.path.dirname(self.pairs[0][0]), "login-master")

    def argv(self) -> list[str]:
        """The forwarding client's command line: options, forwards, destination and the session's command."""
        forwards = [arg for local, remote in self.pairs for arg in ("-L", f"{local}:{remote}")]
        proxy: list[str] = []
        if self.endpoint.via is not None:
            via = self.endpoint.via
            # Through the master; should it be gone, a connection of its own is checked as the master's is.
            jump = ["ssh", "-F", "none", *via.openssh_options(), "-o", "ControlMaster=no",
                    "-o", f"ControlPath={self.control_path}", "-W", "%h:%p", f"{via.user}@{via.host}"]
            proxy = ["-o", "ProxyCommand=" + " ".join(shlex.quote(arg) for arg in jump)]
        return ["ssh", *_OPTIONS, *self.endpoint.openssh_options(), *proxy, *forwards,
                f"{self.endpoint.user}@{self.endpoint.host}", "exec cat"]

    def master_argv(self) -> list[str]:
        """The login master's command line (a node behind `via` only)."""
        via = self.endpoint.via
        assert via is not None
        return ["ssh", *_OPTIONS, *via.openssh_options(), "-o", "ControlMaster=yes",
                "-o", f"ControlPath={self.control_path}", "-o", "ControlPersist=no", f"{via.user}@{via.host}",
                "exec cat"]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the client and wait until every local socket listens; Unavailable (nothing left behind) if not."""
        if shutil.which("ssh") is None:
            raise Unavailable("no OpenSSH client (ssh) on PATH")
        if self.endpoint.via is not None and self.endpoint.via.via is not None:
            raise Unavailable("more than one hop is forwarded in-process")
        for local, remote in self.pairs:  # remote: a Unix socket's path, or host:port (a kernel on TCP ports)
            colons = 0 if remote.startswith("/") else 1
            if ":" in local or remote.count(":") != colons or any(c in local + remote for c in "\n%$"):
                raise Unavailable(f"a socket path the client's -L cannot name: {local} -> {remote}")
        self._spawn(timeout)
        threading.Thread(target=self._watch, name=f"cybershuttle-openssh-{self.label}", daemon=True).start()

    @property
    def pids(self) -> list[int]:
        """The clients' process ids: [the login master,] the forwarding client."""
        with self._lock:
            return [proc.pid for proc in self._procs]

    def close(self) -> None:
        """End the clients (forwards and sessions) and remove the local sockets."""
        self._closed.set()
        with self._lock:
            procs = list(self._procs)
        self._end(procs)
        for path in [local for local, _ in self.pairs] + [self.control_path]:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- the processes ---------------------------------------------------------
    @staticmethod
    def _end(procs: list[subprocess.Popen]) -> None:
        for proc in reversed(procs):  # the forwarding client first, then the master it goes through
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def _spawn(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._stderr.clear()
        procs: list[subprocess.Popen] = []
        with self._lock:
            self._procs = procs
        steps = [(self.master_argv(), [self.control_path])] if self.endpoint.via is not None else []
        steps.append((self.argv(), [local for local, _ in self.pairs]))
        for argv, paths in steps:
            for path in paths:  # so that "it exists" below means this client made it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, close_fds=True)
            with self._lock:
                procs.append(proc)
                if self._closed.is_set():  # closed while this started: `close` saw the processes before it
                    proc.kill()
            threading.Thread(target=self._drain, args=(proc,), name="cybershuttle-openssh-stderr",
                             daemon=True).start()
            while not all(os.path.exists(path) for path in paths):
                if proc.poll() is not None or time.monotonic() > deadline or self._closed.is_set():
                    self._end(procs)
                    time.sleep(0.05)  # the last lines of stderr
                    said = "; ".join(self._stderr) or (f"exited with {proc.returncode}" if proc.returncode
                                                       else f"no forward within {timeout:.0f} s")
                    for path in paths:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    raise Unavailable(f"ssh to {self.endpoint.label}: {said}")
                time.sleep(0.005)

    def _drain(self, proc: subprocess.Popen) -> None:
        """Keep the client's last stderr lines (why it could not start); later ones are the server's
        refusals while a kernel restarts, which are expected and only logged for debugging."""
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._stderr.append(line)
                log.debug("ssh for runtime %s: %s", self.label, line)

    def _watch(self) -> None:
        """Start the clients again whenever the forwarding one exits before `close` (a dropped connection)."""
        delay = 0.1
        warned = False
        while not self._closed.is_set():
            with self._lock:
                procs = list(self._procs)
            if procs:
                procs[-1].wait()
            if self._closed.is_set():
                return
            log.debug("ssh for runtime %s exited; starting it again", self.label)
            self._end(procs)  # the master too: a fresh connection to the login host
            while not self._closed.is_set():
                try:
                    self._spawn(START_TIMEOUT_S)
                    delay = 0.1
                    break
                except Unavailable as exc:
                    if not warned:  # once: the connection is down; ZeroMQ keeps retrying, so do we
                        warned = True
                        log.warning("runtime %s: cannot forward its kernel again yet: %s", self.label, exc)
                    self._closed.wait(delay)
                    delay = min(delay * 2, RESTART_MAX_S)


__all__ = ["OpenSSHForwards", "Unavailable"]
