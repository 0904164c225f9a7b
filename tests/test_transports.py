"""Transports: how a runtime's kernel is reached (issue 14 point 3 and the registry).

The "allocation" transport needs nothing on the node but the job: a relay started inside
the job's allocation (`srun --overlap --jobid J`) through the login SSH session. These
tests run it for real, on the login node's Slurm partition and on the compute nodes
(partition `$CS_TEST_NODE_PARTITION`), with node SSH on or off (`CS_NODE_SSH` of
`cluster.sh start`).
"""
from __future__ import annotations

import json
import shlex
import socket
import statistics
import subprocess
import time

import pytest

from cybershuttle.errors import CybershuttleError

from conftest import assert_large_output_whole


def _env() -> dict[str, str]:
    from conftest import CLUSTER_SH

    out = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True).stdout
    return dict(shlex.split(line)[1].split("=", 1) for line in out.splitlines() if line.startswith("export "))


def _node_ssh(env: dict[str, str]) -> bool:
    """Whether `cluster.sh start` left SSH to the nodes on (CS_NODE_SSH)."""
    return env["CS_TEST_NODE_SSH"] in ("1", "on")


def _register(cluster, name: str, partition: str, **extra):
    from cybershuttle import compute

    spec = dict(name=name, kind="slurm", host=cluster.host, port=cluster.port, user=cluster.user, key=cluster.key,
                known_hosts=cluster.known_hosts, partition=partition, **extra)
    return compute.validate_and_register(spec, replace_existing=True)


def _cells(kc, count: int) -> list[float]:
    for _ in range(5):
        kc.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
    times = []
    for _ in range(count):
        begin = time.perf_counter()
        kc.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
        times.append(time.perf_counter() - begin)
    return times


def _interleaved(a, b, count: int) -> tuple[list[float], list[float]]:
    """Round trips of trivial cells on two kernels, one after the other, so a busy machine slows both alike."""
    _cells(a, 0), _cells(b, 0)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(count):
        for kc, into in ((a, times[0]), (b, times[1])):
            begin = time.perf_counter()
            kc.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
            into.append(time.perf_counter() - begin)
    return times


def _p90(times: list[float]) -> float:
    return sorted(times)[int(len(times) * 0.9) - 1]


def _output(kc, code: str) -> str:
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def _step_table(job_native: str) -> str:
    """The job's steps as squeue lists them (id, state, name), for a failure's message."""
    return subprocess.run(["squeue", "-h", "-s", "-j", job_native, "-o", "%i %T %j"], capture_output=True,
                          text=True).stdout


def _steps(job_native: str) -> list[str]:
    """The job's running steps started by srun (the relay is one; not the batch or extern step)."""
    out = subprocess.run(["squeue", "-h", "-s", "-j", job_native, "-o", "%i"], capture_output=True, text=True)
    return [s for s in out.stdout.split() if s.rpartition(".")[2].isdigit()]


@pytest.fixture
def alloc_runtime(cluster):
    """A runtime on a compute node reached through the allocation transport: detected when the cluster
    forbids SSH to nodes (`CS_NODE_SSH=0`), set on the resource when it allows it."""
    from cybershuttle import runtime

    env = _env()
    setting = {"transport": "allocation"} if _node_ssh(env) else {}
    reg = _register(cluster, "onnodes", env["CS_TEST_NODE_PARTITION"], **setting)
    assert reg.saved, reg.to_dict()
    runtime.request("viaalloc", "onnodes")
    try:
        yield runtime.wait("viaalloc", timeout=180)
    finally:  # also when the wait failed: no job left behind in the queue
        runtime.stop("viaalloc")


def test_transports_are_registered_like_schedulers_and_ordered_by_preference():
    from cybershuttle.runtime import transports

    assert list(transports.installed())[:3] == ["login", "node-ssh", "allocation"]
    assert transports.node_transports()[:2] == ["node-ssh", "allocation"]
    with pytest.raises(transports.TransportError, match="no transport named 'carrier-pigeon'.*installed: login"):
        transports.get("carrier-pigeon")


def test_a_transport_setting_that_names_nothing_installed_is_refused(cluster):
    from cybershuttle.compute.resources import ResourceSpecError

    with pytest.raises(ResourceSpecError, match=r"transport must be one of login, node-ssh, allocation.*'scp'"):
        _register(cluster, "badtransport", cluster.partition, transport="scp")


def test_a_transport_the_site_does_not_allow_is_refused_at_registration(cluster):
    """A workstation has no job allocation to start a relay in: asking for that transport fails
    registration with the reason, and nothing is saved."""
    from cybershuttle import compute

    spec = dict(name="ws", kind="ssh", host=cluster.host, port=cluster.port, user=cluster.user, key=cluster.key,
                known_hosts=cluster.known_hosts, transport="allocation")
    reg = compute.validate_and_register(spec)
    check = next(c for c in reg.checks if c.name == "transport")
    assert not reg.saved and not check.ok and check.required
    assert check.detail == ("transport allocation is not allowed on ws: the process scheduler starts nothing inside "
                            "a job's allocation; allowed: login")


def test_registration_detects_the_allowed_transports_and_compute_show_names_the_one_in_use(cluster, cli):
    env = _env()
    reg = _register(cluster, "nodes", env["CS_TEST_NODE_PARTITION"])
    assert reg.saved, reg.to_dict()
    allowed = reg.resource.facts["transports"]
    expected = ["node-ssh", "allocation"] if _node_ssh(env) else ["allocation"]
    assert allowed == expected, reg.to_dict()
    shown = cli("compute", "show", "nodes")
    assert shown.code == 0, shown.err
    summary = {"node-ssh": "SSH to the compute node", "allocation": "a relay inside the job's allocation"}[expected[0]]
    line = next(ln for ln in shown.out.splitlines() if ln.strip().startswith("transport:"))
    assert line.strip().startswith(f"transport: {expected[0]}: {summary}"), line
    assert f"(detected; allowed: {', '.join(expected)})" in line
    data = json.loads(cli("compute", "show", "nodes", "--json").out)
    assert data["transport_in_use"]["transport"] == expected[0] and data["transport"] is None

    # The resource setting overrides what was detected, and show says so.
    assert _register(cluster, "nodes", env["CS_TEST_NODE_PARTITION"], transport="allocation").saved
    line = next(ln for ln in cli("compute", "show", "nodes").out.splitlines() if "transport:" in ln)
    assert line.strip() == ("transport: allocation: a relay inside the job's allocation, started through the "
                            "scheduler (no SSH to the node) (set by the resource)")
    if not _node_ssh(env):
        return

    # The nodes' SSH port is a setting of its own (a login host's port is often a gateway's): detection probes
    # the nodes there. Each node's sshd also listens on the cluster's no-Unix-socket port; nothing on port 1.
    from cybershuttle import compute

    spec = ["--kind", "slurm", "--host", cluster.host, "--port", str(cluster.port), "--user", cluster.user,
            "--key", cluster.key, "--known-hosts", cluster.known_hosts, "--partition", env["CS_TEST_NODE_PARTITION"]]
    moved = cli("compute", "register", "--name", "moved", *spec, "--node-port", str(cluster.no_unix_port))
    assert moved.code == 0, moved.out + moved.err
    res = compute.get("moved")
    assert res.node_port == cluster.no_unix_port and res.facts["transports"] == expected, res
    assert f"nodes:     SSH on port {cluster.no_unix_port}" in cli("compute", "show", "moved").out
    closed = cli("compute", "register", "--name", "closed", *spec, "--node-port", "1")
    assert closed.code == 0, closed.out + closed.err
    assert compute.get("closed").facts["transports"] == ["allocation"]
    assert ":1 from the login host" in closed.out, closed.out


def test_the_relay_takes_no_token_from_a_command_line_and_refuses_a_wrong_one(alloc_runtime, cluster):
    """Another user on the cluster who finds the relay's port gets nothing without the token (tried as
    the second test user, for real), and the token is not in any process's arguments."""
    from cybershuttle import compute, runtime
    from cybershuttle.runtime import transports

    rt = alloc_runtime
    runtime.connection_info(rt.name)
    relay = transports.for_runtime(rt, compute.get(rt.resource))
    assert relay._port and relay._token
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert relay._token not in ps
    probe = (f"import socket; s=socket.create_connection(({relay.node_address()!r}, {relay._port})); "
             f"s.sendall(b'{'0' * 64} unix {rt.ipc_path}-{rt.remote_ports['shell_port']}\\n'); s.settimeout(5); "
             "print('answer', repr(s.recv(100)))")
    out = subprocess.run(["runuser", "-u", cluster.other_user, "--", "/usr/bin/python3", "-c", probe],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "answer b''", out  # closed without a byte
    # The right token for a port that is not on the node's loopback is refused the same way.
    with socket.create_connection((relay.node_address(), relay._port)) as s:
        s.sendall(f"{relay._token} 10.0.0.1 22\n".encode())
        s.settimeout(5)
        assert s.recv(100) == b""
    # A port where nothing listens on the node is refused at open, as a direct-tcpip channel would be
    # (the forwarder stays quiet about it, and a provisioner's stop sees the kernel gone at once).
    from cybershuttle.runtime.forward import refused

    with pytest.raises(transports.TransportError, match="nothing listens on 127.0.0.1:1 on the kernel's host") as info:
        relay.open_channel("127.0.0.1", 1)
    assert refused(info.value)


def test_a_shell_from_the_transport_runs_inside_the_allocation(alloc_runtime):
    from cybershuttle import compute
    from cybershuttle.runtime import transports

    rt = alloc_runtime
    shell = transports.for_runtime(rt, compute.get(rt.resource)).shell()
    result = shell.run("echo job=$SLURM_JOB_ID; cat", stdin=b"through the step\n", timeout=60)
    assert result.stdout.splitlines() == [f"job={compute.get_job(rt.job_id).native_id}", "through the step"]
    with pytest.raises(CybershuttleError, match="inside job .*exited with 3"):
        shell.run("exit 3", timeout=60)


def test_a_dropped_relay_is_started_again_and_the_kernel_keeps_its_state(alloc_runtime):
    """The relay's step ends (scancel of that step, as when the login connection drops): the next
    cell starts a new relay with a new token, and the kernel's variables are still there."""
    from cybershuttle import compute, runtime
    from cybershuttle.runtime import transports

    rt = alloc_runtime
    kc = runtime.client(rt.name)
    try:
        _output(kc, "kept = 41")
        relay = transports.for_runtime(rt, compute.get(rt.resource))
        old_token = relay._token
        native = compute.get_job(rt.job_id).native_id
        steps = _steps(native)
        assert len(steps) == 1, _step_table(native)
        subprocess.run(["scancel", steps[0]], check=True)
        deadline = time.monotonic() + 20
        while relay._relay is not None and not relay._relay.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        # Output printed before ZeroMQ re-subscribed IOPub is lost (its slow joiner), so ask until it shows;
        # the state must be there from the first answer on.
        for _ in range(40):
            out = _output(kc, "print(kept + 1)").strip()
            if out:
                break
            time.sleep(0.25)
        assert out == "42", (out, _step_table(native))
        assert relay._token != old_token, _step_table(native)
    finally:
        kc.stop_channels()


def test_stopping_the_runtime_ends_the_relay_step(cluster):
    from cybershuttle import compute, runtime

    assert _register(cluster, "alloc", _env()["CS_TEST_NODE_PARTITION"], transport="allocation").saved
    runtime.request("shortlived", "alloc")
    try:
        rt = runtime.wait("shortlived", timeout=180)
        native = compute.get_job(rt.job_id).native_id
        runtime.connection_info("shortlived")
        assert len(_steps(native)) == 1
    finally:
        runtime.stop("shortlived")
    deadline = time.monotonic() + 20
    while _steps(native) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _steps(native) == []


def test_a_kernel_on_a_compute_node_through_its_allocation(alloc_runtime, local_kernel):
    """The kernel runs on the node Slurm chose, never the login node; the relay runs beside it in the
    same job on the same node; a trivial cell's round trip stays near a local kernel's."""
    from cybershuttle import compute, runtime

    rt, env = alloc_runtime, _env()
    nodes = env["CS_TEST_NODES"].split()
    assert rt.node in nodes
    assert runtime.status(rt.name)["transport"].endswith("(transport allocation)")
    kc = runtime.client(rt.name)
    try:
        where = _output(kc, "import os, socket; print(os.environ['SLURMD_NODENAME'], socket.gethostname())").split()
        assert where == [rt.node, rt.node]
        remote, local = _interleaved(kc, local_kernel, 80)
        assert_large_output_whole(kc)  # through the relay in the allocation, from the kernel's Unix sockets
    finally:
        kc.stop_channels()
    native = compute.get_job(rt.job_id).native_id
    out = subprocess.run(["squeue", "-h", "-s", "-j", native, "-o", "%i %N"], capture_output=True, text=True).stdout
    relay_steps = [line.split() for line in out.splitlines() if line.split()[0].rpartition(".")[2].isdigit()]
    assert [node for _, node in relay_steps] == [rt.node], out
    # Generous bounds (a test on a shared machine), but a 40 ms ACK stall on every cell fails them.
    assert statistics.median(remote) <= statistics.median(local) * 1.3 + 0.003, (remote, local)
    assert _p90(remote) <= _p90(local) * 1.3 + 0.010, (remote, local)


def test_another_user_on_the_same_node_gets_nothing_from_the_relay(alloc_runtime, cluster):
    """The second test user, holding a job on the same node, connects to the relay from inside that
    node with a guessed token: closed without a byte."""
    from conftest import CLUSTER_SH

    from cybershuttle import compute, runtime
    from cybershuttle.runtime import transports

    rt, env = alloc_runtime, _env()
    runtime.connection_info(rt.name)
    relay = transports.for_runtime(rt, compute.get(rt.resource))
    hold = subprocess.run(["runuser", "-u", cluster.other_user, "--", "bash", "-lc",
                           f"cd /tmp && sbatch --parsable -p {env['CS_TEST_NODE_PARTITION']} -w {rt.node} "
                           "-o /dev/null --wrap 'sleep 120'"], capture_output=True, text=True)
    other_job = hold.stdout.strip()
    assert other_job.isdigit(), hold
    try:
        probe = (f"import socket; s=socket.create_connection(('127.0.0.1', {relay._port})); "
                 f"s.sendall(b'{'f' * 64} unix {rt.ipc_path}-{rt.remote_ports['iopub_port']}\\n'); s.settimeout(5); "
                 "print('answer', repr(s.recv(100)))")
        out = subprocess.run(["bash", str(CLUSTER_SH), "exec", rt.node, "runuser", "-u", cluster.other_user, "--",
                              "/usr/bin/python3", "-c", probe], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "answer b''", out
    finally:
        subprocess.run(["scancel", other_job])


def test_a_job_that_ended_names_the_job_and_node_when_the_relay_cannot_start(alloc_runtime):
    """The job is gone (cancelled outside Cybershuttle): starting the relay fails at once with one line
    naming the runtime, its job and its node, never a hang."""
    from cybershuttle import compute
    from cybershuttle.runtime import transports

    rt = alloc_runtime
    native = compute.get_job(rt.job_id).native_id
    subprocess.run(["scancel", native], check=True)
    deadline = time.monotonic() + 30
    while subprocess.run(["squeue", "-h", "-j", native], capture_output=True, text=True).stdout.strip() \
            and time.monotonic() < deadline:
        time.sleep(0.3)
    transport = transports.get("allocation")(compute.get(rt.resource), rt)
    began = time.monotonic()
    with pytest.raises(transports.TransportError) as info:
        transport.start()
    assert time.monotonic() - began < 15
    message = str(info.value)
    assert message.startswith(f"runtime viaalloc (job {rt.job_id} on node {rt.node}): the relay inside the "
                              "allocation did not start: "), message
    assert "\n" not in message
    from cybershuttle.runtime.forward import refused

    assert refused(info.value)  # the kernel is gone: the forwarder's reconnects stay quiet, as for a closed port
    # ZeroMQ reconnects every 100 ms: the next tries fail at once with the same line, asking nothing of Slurm
    began = time.monotonic()
    for _ in range(20):
        with pytest.raises(transports.TransportError, match="did not start"):
            transport.start()
    assert time.monotonic() - began < 0.5


@pytest.fixture
def node_ssh_off():
    """The cluster as a site that forbids SSH to compute nodes (`cluster.sh node-ssh off`: no sshd on the
    nodes), restored afterwards: other tests need node SSH."""
    from conftest import CLUSTER_SH

    was_on = _node_ssh(_env())
    subprocess.run(["bash", str(CLUSTER_SH), "node-ssh", "off"], check=True, capture_output=True, timeout=60)
    try:
        assert not _node_ssh(_env())
        yield
    finally:
        if was_on:
            subprocess.run(["bash", str(CLUSTER_SH), "node-ssh", "on"], check=True, capture_output=True, timeout=60)


@pytest.mark.cluster_alone
def test_a_site_without_node_ssh_gets_the_allocation_transport_by_itself(node_ssh_off, cluster, cli):
    """Registration finds node SSH refused and allocation allowed; asking for node-ssh anyway is refused
    with why; a runtime then reaches its kernel on the node with nothing set."""
    from cybershuttle import runtime

    partition = _env()["CS_TEST_NODE_PARTITION"]
    reg = _register(cluster, "nossh", partition)
    assert reg.saved and reg.resource.facts["transports"] == ["allocation"], reg.to_dict()
    check = next(c for c in reg.checks if c.name == "transport")
    assert check.detail.startswith("runtimes on compute nodes use allocation; node-ssh: not allowed (no SSH server "
                                   "answers on node"), check.detail
    line = next(ln for ln in cli("compute", "show", "nossh").out.splitlines() if "transport:" in ln)
    assert line.strip().endswith("(no SSH to the node) (detected; allowed: allocation)"), line

    refused = _register(cluster, "forced", partition, transport="node-ssh")
    check = next(c for c in refused.checks if c.name == "transport")
    assert not refused.saved and check.required and not check.ok
    assert check.detail.startswith("transport node-ssh is not allowed on forced: no SSH server answers on node")
    assert check.detail.endswith("; allowed: allocation"), check.detail

    runtime.request("nossh", "nossh")
    try:
        rt = runtime.wait("nossh", timeout=180)
        assert runtime.status("nossh")["transport"].endswith("(transport allocation)")
        kc = runtime.client("nossh")
        try:
            assert _output(kc, "import socket; print(socket.gethostname())").strip() == rt.node
        finally:
            kc.stop_channels()
    finally:
        runtime.stop("nossh")


def test_a_two_node_runtime_through_its_allocation_relay(cluster):
    """The kernel runs on the first node of a two-node allocation; the relay runs beside it on that node
    (not wherever the scheduler would put a one-task step), and `srun hostname` in the kernel sees both."""
    from cybershuttle import compute, runtime

    env = _env()
    assert _register(cluster, "alloc", env["CS_TEST_NODE_PARTITION"], transport="allocation").saved
    runtime.request("wide", "alloc", nodes=2, tasks_per_node=1)
    try:
        rt = runtime.wait("wide", timeout=180)
        kc = runtime.client("wide")
        try:
            out = _output(kc, "import socket, subprocess; print(socket.gethostname()); "
                              "print(subprocess.run(['srun', 'hostname'], capture_output=True, text=True).stdout)")
        finally:
            kc.stop_channels()
        first, *everyone = out.split()
        assert first == rt.node and sorted(everyone) == sorted(env["CS_TEST_NODES"].split()), out
        native = compute.get_job(rt.job_id).native_id
        steps = subprocess.run(["squeue", "-h", "-s", "-j", native, "-o", "%i %N"], capture_output=True,
                               text=True).stdout.splitlines()
        relay = [s.split()[1] for s in steps if s.split()[0].rpartition(".")[2].isdigit()]
        assert relay == [rt.node], steps
    finally:
        runtime.stop("wide")


def test_a_subprocess_beside_the_kernel_has_a_step_of_its_own_that_outlives_its_start(alloc_runtime):
    """`%run_subprocess` through the allocation transport: the process runs on the kernel's node in a step
    of its own (a step ends with its command, and cgroup sites kill what it leaves behind), its web
    server is reached through the relay, and stopping it ends that step."""
    import urllib.request

    from cybershuttle import compute, runtime

    rt = alloc_runtime
    native = compute.get_job(rt.job_id).native_id
    runtime.connection_info(rt.name)  # the relay's step is up
    before = set(_steps(native))
    info = runtime.start_subprocess(rt.name, "python3 -m http.server 8765 --bind 127.0.0.1", ports=[8765])
    try:
        local = info["ports"][8765]
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert b"Directory listing" in body
        out = subprocess.run(["squeue", "-h", "-s", "-j", native, "-o", "%i %N"], capture_output=True, text=True).stdout
        nodes = dict(line.split() for line in out.splitlines())
        server = set(_steps(native)) - before
        assert len(server) == 1 and nodes[next(iter(server))] == rt.node, (before, out)  # a step of its own
    finally:
        runtime.stop_subprocess(rt.name)
    deadline = time.monotonic() + 20
    while server & set(_steps(native)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server & set(_steps(native)), _steps(native)  # stopping it ended its step
