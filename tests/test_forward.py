"""Port forwarding (`runtime/forward.py`) over the cluster's real sshd: bytes arrive whole and in order, both
while the transport's thread writes them straight to the local socket and when a slow reader makes them wait
in the channel's buffer, on the login connection and on a second SSH session through our relay."""
from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest

STREAM_MB = 48


def _server(serve) -> int:
    """A TCP server on this host's 127.0.0.1 (the login host: the sshd forwards to it) answering one connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        listener.close()
        with conn:
            serve(conn)

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def _pattern(i: int) -> bytes:
    return hashlib.sha256(b"%d" % i).digest() * 2048  # 64 KiB that differ block to block


@pytest.mark.parametrize("hop", ["login", "tcpip", "relay"])
def test_forwarded_bytes_arrive_whole_and_in_order_also_when_the_reader_falls_behind(cluster, ssh_pool, hop):
    from cybershuttle.runtime.forward import Forwarder

    login = cluster.endpoint()
    endpoint = login if hop == "login" else cluster.endpoint(host="localhost", via=login, hop=hop)
    forwarder = Forwarder()

    def open_channel(host: str, port: int):
        return ssh_pool.connect(endpoint).open_tunnel(host, port)

    # 1. many small messages, each answered before the next: the kernel's traffic
    def echo(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)

    fwd = forwarder.add("127.0.0.1", _server(echo), open_channel)
    with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=30) as client:
        for i in range(500):
            message = b"message %d " % i * (1 + i % 7)
            client.sendall(message)
            got = b""
            while len(got) < len(message):
                got += client.recv(65536)
            assert got == message, i
    forwarder.remove(fwd)

    # 2. a bulk stream to a reader that sleeps first: the local socket fills, the rest waits in the channel
    expected = hashlib.sha256()
    for i in range(STREAM_MB * 16):
        expected.update(_pattern(i))

    def bulk(conn: socket.socket) -> None:
        for i in range(STREAM_MB * 16):
            conn.sendall(_pattern(i))

    fwd = forwarder.add("127.0.0.1", _server(bulk), open_channel)
    with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=60) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        time.sleep(1.0)
        got, received = hashlib.sha256(), 0
        while data := client.recv(256 << 10):
            got.update(data)
            received += len(data)
            # now and then behind: the channel's buffer and window take over, then the socket has room again
            time.sleep(0.002 if received % (1 << 20) < (256 << 10) else 0)
    forwarder.remove(fwd)
    assert received == STREAM_MB << 20
    assert got.hexdigest() == expected.hexdigest()
