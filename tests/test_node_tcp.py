"""The node-tcp transport (issue 14, point 2's third way): the kernel on a compute node binds the node's
cluster address and the login SSH connection's direct-tcpip goes straight to it, so it stays private
only by CurveZMQ and the HMAC key: tested against the second OS user holding a job on the same node.
"""
from __future__ import annotations

import shlex
import time
import uuid

import pytest

from cybershuttle import compute, runtime
from cybershuttle.runtime import transports

from test_node_runtimes import _cluster_env, _output, interleaved_medians_ms, served_through_tunnel
from test_privacy import _print_secret_for, snoop_targets, zmq_for_other_user  # noqa: F401  (a fixture used below)



@pytest.fixture
def tcpcluster(registered, cluster):
    """The test cluster registered with `transport: node-tcp` (its node partition the default one)."""
    env = _cluster_env()
    if not env.get("CS_TEST_NODES"):
        pytest.fail("the test cluster has no compute nodes: re-run `bash tests/cluster/cluster.sh start`",
                    pytrace=False)
    result = compute.validate_and_register(dict(
        name="tcpcluster", kind="slurm", host=cluster.host, port=cluster.port, user=cluster.user, key=cluster.key,
        known_hosts=cluster.known_hosts, partition=env.get("CS_TEST_NODE_PARTITION", "nodes"), transport="node-tcp"))
    assert result.saved, result.to_dict()
    yield "tcpcluster"
    for rt in runtime.list_all():
        if rt.resource == "tcpcluster" and rt.state in runtime.LIVE_STATES:
            runtime.stop(rt.name)
    for job in compute.jobs():
        if job.resource == "tcpcluster" and not job.final:
            try:
                compute.cancel(job.id)
            except Exception:
                pass


def _node_addr(node: str) -> str:
    env = _cluster_env()
    return dict(zip(env["CS_TEST_NODES"].split(), env["CS_TEST_NODE_ADDRS"].split()))[node]


def _where(kc) -> tuple[str, str, bool]:
    """(node name, the address the kernel bound, whether its shell port answers on the node's loopback)."""
    code = ("import socket\nfrom ipykernel.kernelapp import IPKernelApp\napp = IPKernelApp.instance()\n"
            "s = socket.socket()\nopen_ = s.connect_ex(('127.0.0.1', app.shell_port)) == 0\ns.close()\n"
            "print(socket.gethostname(), app.ip, open_)")
    host, ip, loopback = _output(kc, code).split()
    return host, ip, loopback == "True"


def test_a_kernel_on_each_node_binds_the_nodes_address_answers_through_node_tcp_at_local_speed(
        tcpcluster, local_kernel):
    described = transports.describe(compute.get(tcpcluster))
    assert described["transport"] == "node-tcp" and described["set_by_resource"], described
    assert "node-tcp" in described["allowed"], described
    # node1: partition short holds node1 only; node2: the only node with GPUs
    runtime.request("tcp1", tcpcluster, partition="short")
    runtime.request("tcp2", tcpcluster, gpus=1)
    for name, node in (("tcp1", "node1"), ("tcp2", "node2")):
        rt = runtime.wait(name, timeout=180)
        assert rt.node == node, rt
        assert "node-tcp" in runtime.status(name)["transport"]
        kc = runtime.client(name)
        try:
            host, ip, loopback = _where(kc)
            assert (host, ip) == (node, _node_addr(node))  # the cluster address, not 127.0.0.1
            assert not loopback
            assert _output(kc, "print(6 * 7)").strip() == "42"
            # The login host's OpenSSH client carries the ports (-L to node:port), to Unix sockets here.
            with runtime._local_lock:
                carrier = runtime._local[name][3]
            assert carrier is not None and {r for _, r in carrier.pairs} == {
                f"{node}:{p}" for p in rt.remote_ports.values()}
            assert runtime.connection_info(name)["transport"] == "ipc"
            if node == "node1":
                # A trivial cell's round trip against a local kernel's, in alternating blocks (the machine is
                # shared). A 40 ms Nagle/delayed-ACK stall a cell would be 10x; this bound catches it. The issue's
                # goal (1.15x) is benchmarks/cell_latency.py's (tcp_node_ratio).
                node_ms, local_ms = interleaved_medians_ms(kc, local_kernel)
                assert node_ms <= local_ms * 1.5 + 2.0, (node_ms, local_ms)
        finally:
            kc.stop_channels()
            runtime.stop(name)


def test_a_runtime_without_curvezmq_is_refused_by_node_tcp_in_one_line(tcpcluster):
    runtime.request("tcpplain", tcpcluster, partition="short", encrypt=False)
    with pytest.raises(runtime.RuntimeError_) as caught:
        runtime.wait("tcpplain", timeout=180)
    assert "needs CurveZMQ" in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_a_node_tcp_kernel_stays_private_from_another_user_with_a_job_on_the_same_node(
        tcpcluster, cluster, zmq_for_other_user):  # noqa: F811
    """The kernel's ports are open to the cluster network: the second test user, holding a job on the
    kernel's node, tries them from that node and from the login host, and can neither read nor run."""
    from cybershuttle import ssh

    runtime.request("tcppriv", tcpcluster, partition="short")
    rt = runtime.wait("tcppriv", timeout=180)
    addr = _node_addr(rt.node)
    kc = runtime.client("tcppriv")
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    other = ssh.Pool()
    login = cluster.endpoint(user=cluster.other_user, key=cluster.other_key)
    theirs = other.connect(login).run(f"sbatch --parsable -p short -w {shlex.quote(rt.node)} -t 5 --wrap 'sleep 240'",
                                      login_shell=True).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while other.connect(login).run(f"squeue -h -j {theirs} -o %T", login_shell=True).stdout.strip() != "RUNNING":
            assert time.monotonic() < deadline, "the second user's job did not start"
            time.sleep(0.5)
        node = other.connect(cluster.endpoint(host=rt.node, port=22, user=cluster.other_user,
                                              key=cluster.other_key, via=login, hop="relay"))
        assert node.run("hostname").stdout.strip() == rt.node  # they are on the kernel's node
        job = compute.get_job(rt.job_id)
        # the server key is in the job's connection file, which they cannot read
        assert node.run(f"cat {shlex.quote(job.jobdir + '/connection.json')}", check=False).exit_code != 0
        assert rt.ipc_path is None  # node-tcp: ports on the cluster address, CurveZMQ
        snoop = (f"PYTHONPATH={zmq_for_other_user} /usr/bin/python3 {zmq_for_other_user}/snoop.py "
                 f"{snoop_targets(rt.remote_ports, host=addr)} {secret} 3")
        printer = _print_secret_for(kc, secret, 4)
        from_node = node.run(snoop, timeout=60).stdout
        printer.join(60)
        printer = _print_secret_for(kc, secret, 4)
        from_login = other.connect(login).run(snoop, timeout=60).stdout
        printer.join(60)
        assert "leaked=False" in from_node, from_node
        assert "leaked=False" in from_login, from_login
        assert node.run("test -e /tmp/pwned", check=False).exit_code != 0  # their execute_request never ran
        secrets = runtime._read_secrets("tcppriv")
        shown = node.run("ps -eo args", check=False).stdout + other.connect(login).run("ps -eo args").stdout
        assert secrets["key"] not in shown and secrets["curve_secretkey"] not in shown
        assert secret in _output(kc, f"print({secret!r})")  # the owner, with the keys, still reads it
    finally:
        kc.stop_channels()
        other.connect(login).run(f"scancel {theirs}", login_shell=True, check=False)
        other.close_all()
        runtime.stop("tcppriv")


def test_a_node_tcp_runtimes_subprocess_and_tunnel_go_through_the_other_node_transport(tcpcluster):
    """node-tcp carries only the kernel's ports: a subprocess on the node's loopback is started and reached
    through the node transport the resource also allows (node-ssh here)."""
    runtime.request("tcpsub", tcpcluster, partition="short")
    rt = runtime.wait("tcpsub", timeout=180)
    assert compute.get(tcpcluster).facts["transports"][0] in ("node-ssh", "allocation")
    _, body = served_through_tunnel("tcpsub", 18768)
    assert body == f"served-by-{rt.node}\n"  # the node's own loopback, served here
    assert runtime.stop_subprocess("tcpsub")["closed_ports"] == [18768]
    kc = runtime.client("tcpsub")  # and the kernel still answers on the node's address
    try:
        assert _where(kc)[:2] == (rt.node, _node_addr(rt.node))
    finally:
        kc.stop_channels()
