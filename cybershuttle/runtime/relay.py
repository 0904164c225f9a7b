"""A relay of our own on a login node: a byte stream from here to HOST:PORT as the login node sees it.

It carries a node's SSH session (node-ssh: `ssh.Endpoint(..., via=login,
hop="relay")`, and any `via` hop whose sshd will not open a `direct-tcpip`
channel: see `ssh._hop`), and node-ssh's detection uses the program to read a
node's SSH greeting from the login host. Why not the login sshd's `direct-tcpip`:
the connection sshd opens for it keeps Nagle's algorithm on, so small messages
toward the node can wait for its delayed ACK. The relay is a small Python program
run on an exec channel of the pooled login transport:
its stdin/stdout are the channel, and it opens the TCP connection itself with
TCP_NODELAY, re-arming TCP_QUICKACK after every read (Linux turns quick ACKs off
again by itself), so small kernel messages never wait for a delayed ACK on its
hop (measured on this cluster: 5.8 ms a cell against 5.4 ms direct).

The program needs only the standard library of any Python 3 on the remote side,
is passed with `python3 -c` (no file to install, nothing secret on its command
line), and reports one line on stderr: `ok` once connected, or why it could not.
"""
from __future__ import annotations

import shlex
import socket
from typing import Callable

import paramiko

from ..errors import SSHError

#: seconds to wait for the relay to connect (resolution + TCP connect on the far side)
CONNECT_TIMEOUT_S = 15.0

#: The relay program (argv: HOST PORT). Kept small and stdlib-only: it runs on hosts we do not control.
PROGRAM = r"""
import os, select, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
def say(text, code=None):
    os.write(2, ("cybershuttle-relay: " + text + "\n").encode())
    if code is not None:
        sys.exit(code)
try:
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
except socket.gaierror as exc:
    say("%s does not resolve (%s)" % (host, exc.strerror), 3)
sock, why = None, "no address"
for family, kind, proto, _, addr in infos:
    s = socket.socket(family, kind, proto)
    s.settimeout(10)
    try:
        s.connect(addr)
        sock = s
        break
    except OSError as exc:
        why = exc.strerror or str(exc)
        s.close()
if sock is None:
    say(why, 2)
sock.settimeout(None)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
QUICKACK = getattr(socket, "TCP_QUICKACK", None)
def quickack():
    if QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:
            pass
quickack()
say("ok")
sfd = sock.fileno()
inputs = [0, sfd]
while inputs:
    ready = select.select(inputs, [], [])[0]
    if sfd in ready:
        data = sock.recv(262144)
        quickack()
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    if 0 in ready:
        data = os.read(0, 262144)
        if data:
            sock.sendall(data)
        else:
            inputs.remove(0)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                break
"""


def command(host: str, port: int, python: str = "python3") -> str:
    """The shell command that runs the relay to `host:port` (prefix it to run it elsewhere, e.g. inside a job)."""
    return f"{shlex.quote(python)} -c {shlex.quote(PROGRAM)} {shlex.quote(host)} {int(port)}"


def open(conn, host: str, port: int, *, wrap: Callable[[str], str] = lambda cmd: cmd,  # noqa: A001
         python: str = "python3", where: str | None = None) -> paramiko.Channel:
    """Run the relay to `host:port` on an exec channel of `conn` (an `ssh.Connection`); returns the channel.

    The channel is a socket-like byte stream to `host:port`: hand it to a
    paramiko.Transport, or return it from a forward's `open_channel`. Raises
    SSHError with the relay's own one-line reason when it cannot connect.
    """
    where = where or conn.endpoint.host
    # the exec request's answer is awaited under the pool's watchdog (an SSHError, never a hang)
    chan = conn.session(lambda c: c.exec_command(wrap(command(host, port, python))),
                        f"starting the relay to {host}:{port}", bulk=True)
    try:
        line = _status_line(chan)
    except BaseException:
        chan.close()
        raise
    if line != "ok":
        chan.close()
        reason = line or (f"the relay exited with {chan.recv_exit_status()}" if chan.exit_status_ready()
                          else "no answer from the relay")
        raise SSHError(f"cannot reach {host}:{port} from {where}: {reason}")
    chan.settimeout(None)
    return chan


def _status_line(chan: paramiko.Channel) -> str:
    """The relay's first stderr line without its prefix ('ok' once connected); '' if it said nothing."""
    chan.settimeout(CONNECT_TIMEOUT_S)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            piece = chan.recv_stderr(1)
            if not piece:
                break
            buf += piece
    except socket.timeout:
        return f"no answer from the relay within {CONNECT_TIMEOUT_S:.0f} s"
    text = buf.decode(errors="replace").strip()
    if not text and chan.exit_status_ready():
        # a python that could not start (missing, or not runnable by this user) says so on stderr
        return ""
    return text.removeprefix("cybershuttle-relay: ")
