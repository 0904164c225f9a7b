"""The "login" transport: the kernel runs on the resource's own host (an SSH workstation, a one-node
cluster, this machine), so its sockets are forwarded over the pooled SSH connection (`direct-streamlocal@openssh.com` to
its Unix sockets, or `direct-tcpip` to its ports)."""
from __future__ import annotations

import socket
from typing import Any

from ... import ssh
from .base import Transport


class LoginTransport(Transport):
    name = "login"
    summary = "the kernel's host is the resource's own: ports forwarded over the SSH connection to it"
    preference = 0
    for_nodes = False

    def open_channel(self, host: str, port: int) -> Any:
        if not self.res.remote:
            sock = socket.create_connection((host, port), timeout=ssh.CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        return ssh.connect(self.res.endpoint).open_tunnel(host, port)

    unix_sockets = True

    def open_unix(self, path: str) -> Any:
        # only remote resources' kernels bind Unix sockets (transports.unix_sockets): this machine's need no forward
        return ssh.connect(self.res.endpoint).open_unix(path)

    def openssh(self) -> Any:
        return self.res.endpoint if self.res.remote else None

    def shell(self):
        return self.res.shell()
