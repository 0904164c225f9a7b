"""A runtime's kernel sockets forwarded by an OpenSSH client process, outside this process.

The in-process forwarder (`forward.py`, paramiko) costs every kernel message
Python work in the process that also runs the notebook's client (the Jupyter
server, with its event loop): both take turns on one interpreter lock, so each
message waits for the other's Python. Measured on the loopback cluster, trivial
cell, same runtime, same run: 1.10-1.12x a local kernel's round trip in-process,
1.02-1.04x through `ssh -L` (the peer, whose forwarding is the same OpenSSH
client, 1.04x). The client is C, runs beside ours on another core, and its
AES-GCM keeps large outputs as fast as our in-process path.

Used when the runtime's transport reaches the kernel through one SSH server
(`Transport.openssh`: the login transport), the `ssh` client exists, the paths fit
its `-L LOCAL:REMOTE` syntax, and it logs in without asking anything (BatchMode:
a key file or an agent; host keys checked against the resource's known_hosts,
no configuration file read, nothing secret on its command line). Anything else
(a passphrase, a one-time code, no client) keeps the in-process forwarder.
A node hop stays in-process too: two OpenSSH layers and a relay measured worse
on large outputs (1.75x against 1.30x a local kernel).

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
    """Local Unix sockets (`pairs`: local path, remote path) forwarded by one `ssh` process to `endpoint`."""

    def __init__(self, endpoint: ssh.Endpoint, pairs: list[tuple[str, str]], label: str) -> None:
        self.endpoint = endpoint
        self.pairs = pairs
        self.label = label  # names the runtime in log lines
        self._proc: subprocess.Popen | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=5)

    def argv(self) -> list[str]:
        """The client's command line: options, forwards, destination and the session's command."""
        forwards = [arg for local, remote in self.pairs for arg in ("-L", f"{local}:{remote}")]
        return ["ssh", *_OPTIONS, *self.endpoint.openssh_options(), *forwards,
                f"{self.endpoint.user}@{self.endpoint.host}", "exec cat"]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the client and wait until every local socket listens; Unavailable (nothing left behind) if not."""
        if self.endpoint.via is not None:
            raise Unavailable("a node hop is forwarded in-process")
        if shutil.which("ssh") is None:
            raise Unavailable("no OpenSSH client (ssh) on PATH")
        for local, remote in self.pairs:
            if ":" in local or ":" in remote or "\n" in local + remote:
                raise Unavailable(f"a socket path the client's -L cannot name: {local} -> {remote}")
        self._spawn(timeout)
        threading.Thread(target=self._watch, name=f"cybershuttle-openssh-{self.label}", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def close(self) -> None:
        """End the client (its forwards and session) and remove the local sockets."""
        self._closed.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for local, _ in self.pairs:
            with contextlib.suppress(OSError):
                os.unlink(local)

    # -- the process -----------------------------------------------------------
    def _spawn(self, timeout: float) -> None:
        for local, _ in self.pairs:  # so that "it exists" below means this client made it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
        self._stderr.clear()
        proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, close_fds=True)
        with self._lock:
            self._proc = proc
            if self._closed.is_set():  # closed while this started: `close` saw the previous process
                proc.kill()
        threading.Thread(target=self._drain, args=(proc,), name="cybershuttle-openssh-stderr", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(local) for local, _ in self.pairs):
            if proc.poll() is not None or time.monotonic() > deadline or self._closed.is_set():
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                time.sleep(0.05)  # the last lines of stderr
                said = "; ".join(self._stderr) or (f"exited with {proc.returncode}" if proc.returncode
                                                   else f"no forward within {timeout:.0f} s")
                for local, _ in self.pairs:
                    with contextlib.suppress(OSError):
                        os.unlink(local)
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
        """Start the client again whenever it exits before `close` (a dropped connection)."""
        delay = 0.1
        warned = False
        while not self._closed.is_set():
            with self._lock:
                proc = self._proc
            assert proc is not None
            proc.wait()
            if self._closed.is_set():
                return
            log.debug("ssh for runtime %s exited (%s); starting it again", self.label, proc.returncode)
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
