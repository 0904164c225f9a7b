"""A shell on a compute resource: this machine, or a host behind the SSH pool.

Both kinds answer the same three calls (`run`, `stream`, `write_file`), so
the job, Slurm and environment code never asks where it runs. File transfer
goes through the command channel (`cat > file`) on purpose: one mechanism,
one round trip, and it works the same on both sides.
"""
from __future__ import annotations

import shlex
import subprocess
import threading
from typing import Callable, Protocol

from .. import ssh
from ..errors import RemoteCommandError, SSHError


class Shell(Protocol):
    """The one shell protocol: what the job, scheduler, Slurm and environment code run commands through."""

    label: str

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            stdin: bytes | None = None, login_shell: bool = False) -> ssh.Result: ...

    def stream(self, command: str, sink: Callable[[bytes], None], *, login_shell: bool = False,
               timeout: float | None = None) -> int: ...


class LocalShell:
    """Commands run by bash on this machine."""

    label = "this machine"

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            stdin: bytes | None = None, login_shell: bool = False) -> ssh.Result:
        argv = ["bash", "-lc" if login_shell else "-c", command]
        try:
            proc = subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RemoteCommandError(f"{self.label}: {command!r} did not finish within {timeout} s") from exc
        result = ssh.Result(command, proc.returncode, proc.stdout.decode(errors="replace"),
                            proc.stderr.decode(errors="replace"))
        return result.check(self.label) if check else result

    def stream(self, command: str, sink: Callable[[bytes], None], *, login_shell: bool = False,
               timeout: float | None = None) -> int:
        argv = ["bash", "-lc" if login_shell else "-c", command]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            expired = threading.Event()
            timer = threading.Timer(timeout, lambda: (expired.set(), proc.kill())) if timeout is not None else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                while chunk := proc.stdout.read1(65536):
                    sink(chunk)
                code = proc.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                if proc.poll() is None:  # the sink refused more: stop the command, not only the reading
                    proc.kill()
            if expired.is_set():
                raise RemoteCommandError(f"{self.label}: {command!r} did not finish within {timeout} s")
            return code


class RemoteShell:
    """Commands run over the pooled SSH connection, reconnecting when it dropped."""

    def __init__(self, endpoint: ssh.Endpoint, prompter: ssh.Prompter | None = None) -> None:
        self.endpoint = endpoint
        self.prompter = prompter
        self.label = endpoint.label

    def connection(self) -> ssh.Connection:
        return ssh.connect(self.endpoint, self.prompter)

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            stdin: bytes | None = None, login_shell: bool = False) -> ssh.Result:
        try:
            return self.connection().run(command, check=check, timeout=timeout, stdin=stdin, login_shell=login_shell)
        except SSHError:
            # One retry on a fresh transport: the pooled one may have died
            # since its last use (laptop sleep, NAT timeout).
            ssh.pool.drop(self.endpoint)
            return self.connection().run(command, check=check, timeout=timeout, stdin=stdin, login_shell=login_shell)

    def stream(self, command: str, sink: Callable[[bytes], None], *, login_shell: bool = False,
               timeout: float | None = None) -> int:
        return self.connection().stream(command, sink, login_shell=login_shell, timeout=timeout)


def line_sink(on_line: Callable[[str], None]) -> Callable[[bytes], None]:
    """A `stream` sink that hands `on_line` each whole line, decoded (a partial line waits for its end)."""
    buffer = b""

    def sink(data: bytes) -> None:
        nonlocal buffer
        buffer += data
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            on_line(raw.decode(errors="replace"))

    return sink


def write_file(shell: Shell, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` (parent created 0700, file `mode`), atomically."""
    q = shlex.quote(path)
    shell.run(
        f"umask 077 && mkdir -p \"$(dirname {q})\" && cat > {q}.tmp && chmod {mode:o} {q}.tmp && mv -f {q}.tmp {q}",
        stdin=data,
    )


def quote_path(path: str) -> str:
    """Quote a path for the shell, keeping a leading `~/` expandable."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
