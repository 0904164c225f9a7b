"""Bounded and timed (issue 16, point 5): every SSH and SFTP wait ends, one dead host stalls
nothing else, command output and job logs never have to fit in the server's memory, and long
template runs leave the REST worker threads free. Against the real loopback sshd and Slurm."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from rest_api import SERVER_CONFIG, call
from test_terminal import jupyter_server  # noqa: F401 - a real `jupyter server` process (a fixture used below)

from cybershuttle import compute, ssh
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
                sock = self.listener.accept()[0]
            except OSError:
                return
            self.accepted.append(sock)
            self.answer(sock)

    def answer(self, sock: socket.socket) -> None:
        """Say nothing."""

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


class Proxy(Silent):
    """A TCP relay to the cluster's sshd that can be frozen: it then keeps both connections open
    and forwards nothing, as a host that vanished from the network (no RST, no FIN) looks."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = threading.Event()
        super().__init__()

    def answer(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target))
        self.accepted.append(server)
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
@pytest.mark.waits
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


@pytest.mark.waits
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


# -- job logs: only the new bytes -------------------------------------------------
@pytest.fixture
def server_process(jupyter_server):
    """A real `jupyter server` in its own process (with this test's Cybershuttle home), so its memory is its own:
    (its pid, a function calling a route)."""
    base, token = jupyter_server["url"] + "cybershuttle/api/v1/", jupyter_server["token"]

    def get(path: str, body: dict | None = None, timeout: float = 60) -> tuple[dict, float]:
        """GET `path` (POST `body` when given): (the JSON answer, seconds taken)."""
        start = time.monotonic()
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read()), time.monotonic() - start

    return jupyter_server["pid"], get


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_a_3_gb_job_log_through_the_logs_route_does_not_grow_the_servers_memory(registered, server_process):
    pid, get = server_process
    job = compute.execute("echo first-line", "testcluster", cpus=1, walltime=2)
    assert compute.wait(job.id, timeout=120).state == "COMPLETED"
    shell = compute.get("testcluster").shell()
    log = job.log_path
    # 3 GiB in an instant: a sparse file (the job's own log, grown as the user), with a line at its end.
    shell.run(f"truncate -s {3 * 2**30} {log} && echo the-end >> {log}", timeout=30)
    size = 3 * 2**30 + len("the-end\n")
    get(f"jobs/{job.id}")  # the server has done its imports and SSH set-up before its peak is read
    before = _peak_rss_mb(pid)

    first, took = get(f"jobs/{job.id}/logs")
    assert first["log"].startswith("first-line\n") and len(first["log"]) == 2**20 and took < 10
    assert (first["offset"], first["next_offset"], first["size"], first["more"]) == (0, 2**20, size, True)
    nxt, _ = get(f"jobs/{job.id}/logs?offset={first['next_offset']}&limit=100")
    assert (nxt["offset"], nxt["next_offset"], nxt["log"]) == (2**20, 2**20 + 100, "\0" * 100)
    end, took = get(f"jobs/{job.id}/logs?offset=-8")
    assert (end["log"], end["offset"], end["next_offset"], end["more"]) == ("the-end\n", size - 8, size, False)
    assert took < 10  # tail seeks: nothing before the end is read
    # A follower asks from next_offset and gets exactly what was written since.
    shell.run(f"echo one-more >> {log}", timeout=30)
    more, _ = get(f"jobs/{job.id}/logs?offset={end['next_offset']}")
    assert (more["log"], more["size"], more["more"]) == ("one-more\n", size + 9, False)
    none, _ = get(f"jobs/{job.id}/logs?offset={more['next_offset']}")
    assert none["log"] == "" and none["next_offset"] == size + 9
    # A character cut by a piece's end comes whole in the next piece.
    shell.run(f"printf 'x\\303\\251y' >> {log}", timeout=30)
    cut, _ = get(f"jobs/{job.id}/logs?offset={size + 9}&limit=2")
    assert (cut["log"], cut["next_offset"], cut["more"]) == ("x", size + 10, True)
    whole, _ = get(f"jobs/{job.id}/logs?offset={cut['next_offset']}&limit=2")
    assert (whole["log"], whole["next_offset"]) == ("\u00e9", size + 12)

    grew = _peak_rss_mb(pid) - before
    print(f"server peak memory: {before:.0f} MB before, grew by {grew:.0f} MB")
    assert grew < 150, f"the server's peak memory grew by {grew:.0f} MB reading a piece of a 3 GB log"
    shell.run(f"rm -f {log}", timeout=30)


# -- long template runs leave the REST workers free ----------------------------------
@pytest.fixture
def napping(tmp_path):
    """A template whose run sleeps `seconds`."""
    import nbformat

    from cybershuttle import template

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seconds = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import time\ntime.sleep(seconds)")]
    path = tmp_path / "nap.ipynb"
    nbformat.write(nb, path)
    spec = tmp_path / "spec.toml"
    spec.write_text('[[parameters]]\nname = "seconds"\ntype = "int"\ndefault = 1\n')
    template.add("nap", notebook=str(path), spec=str(spec))
    return "nap"


@pytest.mark.waits
async def test_long_template_runs_do_not_occupy_the_rest_worker_threads(jp_fetch, napping, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from cybershuttle_server.handlers import base

    workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cybershuttle-api-test")
    monkeypatch.setattr(base, "_EXECUTOR", workers)  # two workers, three runs: a run holding one would starve the rest
    try:
        ids = []
        for _ in range(3):
            start = time.monotonic()
            code, body = await call(jp_fetch, f"templates/{napping}/runs", "POST", json_body={"inputs": {"seconds": 20}})
            assert code == 202 and body["status"] == "RUNNING" and time.monotonic() - start < 10, body
            ids.append(body["id"])
        for _ in range(3):
            start = time.monotonic()
            code, body = await call(jp_fetch, f"templates/{napping}/runs")
            assert code == 200 and time.monotonic() - start < 3.0
            assert {r["id"]: r["status"] for r in body["items"]} == {i: "RUNNING" for i in ids}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            code, body = await call(jp_fetch, f"templates/{napping}/runs")
            if all(r["status"] != "RUNNING" for r in body["items"]):
                break
            await asyncio.sleep(1)
        assert [r["status"] for r in body["items"]] == ["COMPLETED"] * 3, body
    finally:
        workers.shutdown(wait=False)


# -- template results come back streamed --------------------------------------------
def test_a_remote_runs_100_mb_of_results_come_back_without_growing_the_servers_memory(registered, server_process,
                                                                                      tmp_path):
    import nbformat

    from cybershuttle import template

    pid, get = server_process
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("megabytes = 1")
    params.metadata["tags"] = ["parameters"]
    digest = nbformat.v4.new_code_cell(
        "import hashlib, os\ndata = os.urandom(megabytes * 2**20)\nopen('big.bin', 'wb').write(data)\n"
        "digest = hashlib.sha256(data).hexdigest()\ndigest")
    digest.metadata["tags"] = ["output"]
    nb.cells = [params, digest]
    nbformat.write(nb, tmp_path / "big.ipynb")
    template.add("big", notebook=str(tmp_path / "big.ipynb"))
    small, _ = get("templates/big/runs", {"inputs": {"megabytes": 1}, "resource": "workstation", "output": "small",
                                           "wait": True}, timeout=300)
    assert small["status"] == "COMPLETED", small  # the kernel and the server's code paths are warm now
    before = _peak_rss_mb(pid)

    run, _ = get("templates/big/runs", {"inputs": {"megabytes": 100}, "resource": "workstation", "output": "large",
                                         "wait": True}, timeout=300)
    assert run["status"] == "COMPLETED", run
    import hashlib

    arrived = tmp_path / "large" / "big.bin"
    assert arrived.stat().st_size == 100 * 2**20
    assert hashlib.sha256(arrived.read_bytes()).hexdigest() == run["outputs"]["digest"].strip("'")
    grew = _peak_rss_mb(pid) - before
    print(f"server peak memory: {before:.0f} MB before, grew by {grew:.0f} MB")
    assert grew < 50, f"the server's peak memory grew by {grew:.0f} MB fetching 100 MB of results"


async def test_an_output_too_large_for_a_runs_record_stays_in_its_notebook_and_collect_reads_it(jp_fetch, tmp_path):
    import nbformat

    from cybershuttle import template
    from cybershuttle.template.results import rows

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 10")
    params.metadata["tags"] = ["parameters"]
    shown = nbformat.v4.new_code_cell("text = 'x' * n\ntext")
    shown.metadata["tags"] = ["output"]
    nb.cells = [params, shown]
    nbformat.write(nb, tmp_path / "text.ipynb")
    template.add("text", notebook=str(tmp_path / "text.ipynb"))
    for n in (10, 2**20):
        code, run = await call(jp_fetch, "templates/text/runs", "POST", json_body={"inputs": {"n": n}, "wait": True})
        assert code == 201 and run["status"] == "COMPLETED", run
    code, body = await call(jp_fetch, "templates/text/runs")
    small, large = (r["outputs"]["text"] for r in body["items"])
    assert small == "x" * 10
    assert large == {"cybershuttle_large_output": {"bytes": 2**20 + 2, "in": "executed.ipynb"}}
    assert len(json.dumps(body)) < 10_000  # the list stays small however large the outputs
    # A name planted in the target directory (a shared one: here a hard link to another file) is replaced,
    # never written through.
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / "collected" / body["items"][0]["id"]).mkdir(parents=True)
    os.link(victim, tmp_path / "collected" / body["items"][0]["id"] / "text")
    target = Path(template.collect("text", "text", tmp_path / "collected"))
    assert victim.read_text() == "keep me\n"
    values = [json.loads(p.read_text()) for p in sorted(target.glob("*/text"), key=lambda p: p.stat().st_size)]
    assert values == ["x" * 10, "x" * 2**20]
    assert [len(row["text"]) for row in rows("text")] == [10, 2**20]


def test_the_cli_prints_a_log_longer_than_a_piece_whole_and_logs_refuses_one_too_long_to_hold(cli, tmp_path,
                                                                                              monkeypatch):
    from cybershuttle.compute import job as jobs

    compute.register_local()
    job = compute.execute("head -c 15000000 /dev/zero | tr '\\0' a; echo; echo END", "local")
    assert compute.wait(job.id, timeout=60).state == "COMPLETED"
    result = cli("compute", "logs", job.id)  # 8 MiB pieces: two of them
    assert result.code == 0 and result.out == "a" * 15_000_000 + "\nEND\n"
    monkeypatch.setattr(jobs, "LOG_WHOLE_MAX", 2**20)
    with pytest.raises(OutputTooLargeError, match=f"the log of job {job.id} is 15000005 bytes.*read it in pieces"):
        compute.logs(job.id)
    assert compute.read_log(job.id, -4).data == b"END\n"
