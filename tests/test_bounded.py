"""Bounded and timed (issue 16, point 5): every SSH and SFTP wait ends, one dead host stalls
nothing else, command output and job logs never have to fit in the server's memory, and long
template runs leave the REST worker threads free. Against the real loopback sshd and Slurm."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from rest_api import SERVER_CONFIG, call

from cybershuttle import ssh
from cybershuttle.errors import OutputTooLargeError, RemoteCommandError, SSHError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


class Silent:
    """A host that accepts TCP connections and never says a word (no SSH banner)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


class Proxy:
    """A TCP relay to the cluster's sshd that can be frozen: it then keeps both connections open
    and forwards nothing, as a host that vanished from the network (no RST, no FIN) looks."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.frozen.is_set():
                    return  # swallow it and everything after: the peer hears nothing more
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def silent():
    host = Silent()
    yield host
    host.close()


@pytest.fixture
def proxy(cluster):
    relay = Proxy(cluster.port)
    yield relay
    relay.close()


@pytest.fixture
def short_timeouts(monkeypatch):
    """Seconds instead of the production tens of seconds, so a test of a dead host stays quick."""
    monkeypatch.setattr(ssh, "CONNECT_TIMEOUT_S", 2.0)
    monkeypatch.setattr(ssh, "PROBE_S", 1.0)
    monkeypatch.setattr(ssh, "SFTP_TIMEOUT_S", 2.0)


@pytest.fixture
def via_proxy(cluster, proxy, tmp_path):
    """The cluster's sshd reached through `proxy` (its host key recorded under the proxy's port)."""
    import paramiko

    keys = paramiko.HostKeys(cluster.known_hosts).lookup(f"[{cluster.host}]:{cluster.port}")
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"[{cluster.host}]:{proxy.port} {k.get_name()} {k.get_base64()}\n" for k in keys.values()))
    return cluster.endpoint(port=proxy.port, known_hosts=str(path))


# -- the pool: one dead host stalls nothing else --------------------------------
def test_a_host_that_never_speaks_ssh_does_not_stall_other_connections(cluster, ssh_pool, silent):
    stuck: list[BaseException] = []

    def dial_silent() -> None:
        try:
            ssh_pool.connect(cluster.endpoint(port=silent.port))
        except BaseException as exc:  # noqa: BLE001 - the error is the thing observed
            stuck.append(exc)

    waiter = threading.Thread(target=dial_silent, daemon=True)
    waiter.start()
    while not silent.accepted:
        time.sleep(0.02)
    start = time.monotonic()
    assert ssh_pool.connect(cluster.endpoint()).run("echo here").stdout == "here\n"
    assert time.monotonic() - start < 3.0 and waiter.is_alive()  # the silent host still holds its own caller
    waiter.join(ssh.CONNECT_TIMEOUT_S + 10)
    assert len(stuck) == 1 and isinstance(stuck[0], SSHError)
    assert f"check that an SSH server listens on port {silent.port}" in str(stuck[0])


async def test_other_routes_answer_within_3_s_while_a_host_never_speaks_ssh(jp_fetch, cluster, silent):
    from cybershuttle.registry import catalog

    common = {"user": cluster.user, "key": cluster.key, "known_hosts": cluster.known_hosts, "host": "127.0.0.1"}
    catalog().add("compute", "silent", {"kind": "ssh", **common, "port": silent.port})
    catalog().add("compute", "workstation", {"kind": "ssh", **common, "port": cluster.port})
    ssh.pool.close_all()
    slow = asyncio.ensure_future(call(jp_fetch, "compute/silent"))
    while not silent.accepted:
        await asyncio.sleep(0.05)
    for _ in range(3):
        ssh.pool.close_all()  # each request dials the real host anew, through the same pool
        start = time.monotonic()
        code, body = await call(jp_fetch, "compute/workstation")
        assert code == 200 and body["status"]["reachable"] is True, body
        assert time.monotonic() - start < 3.0
    assert not slow.done()
    code, body = await slow
    assert code == 200 and body["status"]["reachable"] is False
    assert f"listens on port {silent.port}" in body["status"]["error"]


# -- every wait ends ------------------------------------------------------------
def test_a_host_that_vanishes_mid_command_is_an_error_not_a_hang(ssh_pool, proxy, via_proxy, short_timeouts):
    conn = ssh_pool.connect(via_proxy)
    assert conn.run("echo up").stdout == "up\n"
    failed: list[BaseException] = []

    def wait_on_sleep() -> None:
        try:
            conn.run("sleep 120")  # no timeout: a wait that may rightly last long
        except BaseException as exc:  # noqa: BLE001
            failed.append(exc)

    waiter = threading.Thread(target=wait_on_sleep, daemon=True)
    waiter.start()
    time.sleep(0.5)
    proxy.frozen.set()
    start = time.monotonic()
    waiter.join(30)
    assert not waiter.is_alive() and time.monotonic() - start < ssh.PROBE_S + ssh.CONNECT_TIMEOUT_S + 3
    assert isinstance(failed[0], SSHError) and "stopped answering while waiting for 'sleep 120'" in str(failed[0])
    assert not conn.alive  # the pool dials afresh next time


def test_a_stream_on_a_vanished_host_ends_with_an_error(ssh_pool, proxy, via_proxy, short_timeouts):
    conn = ssh_pool.connect(via_proxy)
    seen: list[bytes] = []
    proxy_freezer = threading.Timer(0.5, proxy.frozen.set)
    proxy_freezer.start()
    start = time.monotonic()
    with pytest.raises(SSHError, match="stopped answering"):
        conn.stream("echo first; sleep 120", seen.append)
    assert b"".join(seen) == b"first\n" and time.monotonic() - start < 10


def test_commands_and_sftp_on_a_frozen_connection_fail_within_their_timeouts(ssh_pool, proxy, via_proxy,
                                                                             short_timeouts):
    conn = ssh_pool.connect(via_proxy)
    sftp = conn.sftp()
    assert sftp.stat("/etc/hostname").st_size > 0
    proxy.frozen.set()
    start = time.monotonic()
    with pytest.raises(OSError):  # paramiko's SFTP raises socket.timeout (TimeoutError)
        sftp.stat("/etc/hostname")
    assert time.monotonic() - start < ssh.SFTP_TIMEOUT_S + 2
    start = time.monotonic()
    with pytest.raises(SSHError, match="cannot open a channel"):
        conn.run("true")
    assert time.monotonic() - start < ssh.CONNECT_TIMEOUT_S + 2


def test_a_stream_past_its_timeout_is_reported(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    seen: list[bytes] = []
    start = time.monotonic()
    with pytest.raises(RemoteCommandError, match="did not finish within 1 s"):
        conn.stream("echo early; sleep 30", seen.append, timeout=1)
    assert seen == [b"early\n"] and time.monotonic() - start < 3


# -- output is capped -----------------------------------------------------------
def test_command_output_beyond_the_cap_is_refused_with_what_to_do(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    with pytest.raises(OutputTooLargeError, match=r"wrote more than 1 MiB: read its output in pieces or stream it"):
        conn.run("head -c 3000000 /dev/zero", max_output=2**20, timeout=30)
    # Within the cap all of it arrives; of stderr the end is kept (an error explains itself last).
    result = conn.run("head -c 1000 /dev/zero | tr '\\0' a; seq 1 200000 >&2; echo LAST >&2", max_output=2**20,
                      check=False)
    assert result.stdout == "a" * 1000 and len(result.stderr) == 2**20 and result.stderr.endswith("200000\nLAST\n")
    assert conn.run("echo still usable").stdout == "still usable\n"

