"""Ports of a runtime's host reached from this machine (a subprocess's web page, TensorBoard, ...).

Each remote port gets a 127.0.0.1 port here, forwarded by the same in-process
forwarder as the kernel's ports, through the runtime's transport (the login
host's SSH connection, SSH to its compute node, or a relay in its allocation).
"""
from __future__ import annotations

import threading

from .. import compute
from ..errors import CybershuttleError
from .forward import Forward, forwarder

_tunnels: dict[str, dict[int, Forward]] = {}
_lock = threading.Lock()


def open_tunnels(name: str, ports: list[int]) -> dict[int, int]:
    """Forward `ports` of runtime `name`'s host; returns {remote port: local port}."""
    from . import get, transports

    for port in ports:
        if not 0 < port < 65536:
            raise CybershuttleError(f"port {port} is not a TCP port (1-65535)")
    rt = get(name)
    res = compute.get(rt.resource)
    mapping: dict[int, int] = {}
    with _lock:
        mine = _tunnels.setdefault(name, {})
        for port in ports:
            if port in mine:
                mapping[port] = mine[port].local_port
            elif not res.remote:
                mapping[port] = port  # the runtime runs on this machine
            else:
                # asked per connection: the runtime's transport may have been closed and reopened meanwhile
                fwd = forwarder().add(rt.remote_host, port,
                                      lambda h, p: transports.for_runtime(rt, res).open_channel(h, p))
                mine[port] = fwd
                mapping[port] = fwd.local_port
    return mapping


def close_tunnels(name: str) -> list[int]:
    """Close every tunnel of runtime `name`; returns the remote ports that were open."""
    with _lock:
        mine = _tunnels.pop(name, {})
    for fwd in mine.values():
        forwarder().remove(fwd)
    return sorted(mine)


def tunnels(name: str) -> dict[int, int]:
    with _lock:
        return {port: fwd.local_port for port, fwd in _tunnels.get(name, {}).items()}


def parse_ports(text: str) -> list[int]:
    """`5321`, `5321,8888` or `8000-8002` -> ports."""
    ports: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, sep, high = part.partition("-")
        try:
            ports.extend(range(int(low), int(high) + 1) if sep else [int(low)])
        except ValueError:
            raise CybershuttleError(f"{part!r} is not a port or a range of ports (e.g. 5321 or 8000-8002)") from None
    return ports
