"""The SSH-to-node hop: a node's SSH session inside a channel of its login node's.

Here the "node" is the login node's own sshd reached through the login connection
(`localhost:2222` from the login host), the same path a node takes: login transport ->
direct-tcpip channel (or our relay on an exec channel) -> TCP to the node's sshd.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time

import pytest

from cybershuttle.errors import HostKeyError, SSHError


def _node(cluster, login=None, **overrides):
    return cluster.endpoint(**{"host": "localhost", "via": login or cluster.endpoint(), **overrides})


def _relays(ssh_pool, cluster) -> int:
    """Our relay programs running on the login host to the "node" (its program names itself; argv ends
    HOST PORT)."""
    mine = f"pgrep -u \"$(id -u)\" -f 'cybershuttle-relay.* localhost {cluster.port}$' | wc -l"
    return int(ssh_pool.connect(cluster.endpoint()).run(mine).stdout)


def _client_over(name: str, endpoint):
    """A kernel client for runtime `name` whose five ports are forwarded over `endpoint`."""
    from jupyter_client.blocking import BlockingKernelClient

    from cybershuttle import runtime, ssh
    from cybershuttle.runtime.forward import forwarder

    rt, secrets = runtime.get(name), runtime._read_secrets(name)
    info = {"transport": "tcp", "ip": "127.0.0.1", "signature_scheme": "hmac-sha256", **secrets}
    if rt.ipc_path:  # the kernel's Unix sockets, to Unix sockets in a 0700 directory here
        local = tempfile.mkdtemp(prefix="cs-test-", dir="/tmp") + "/k"
        forwards = [forwarder().add_unix(f"{local}-{rt.remote_ports[p]}", f"{rt.ipc_path}-{rt.remote_ports[p]}",
                                         lambda path: ssh.connect(endpoint).open_unix(path)) for p in runtime.PORTS]
        info = {k: v for k, v in info.items() if not k.startswith("curve_")}
        info.update({"transport": "ipc", "ip": local, **{p: rt.remote_ports[p] for p in runtime.PORTS}})
    else:
        forwards = [forwarder().add("127.0.0.1", rt.remote_ports[p],
                                    lambda h, q: ssh.connect(endpoint).open_tunnel(h, q)) for p in runtime.PORTS]
        info.update({p: f.local_port for p, f in zip(runtime.PORTS, forwards)})
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc, forwards


def test_a_node_is_reached_through_its_login_hosts_direct_tcpip_with_no_process_there(cluster, ssh_pool):
    before = _relays(ssh_pool, cluster)
    node = _node(cluster)
    conn = ssh_pool.connect(node)
    assert conn.run("id -un").stdout == f"{cluster.user}\n"
    assert conn.transport is not ssh_pool.connect(cluster.endpoint()).transport
    assert _relays(ssh_pool, cluster) == before


def test_where_the_login_sshd_will_not_forward_to_the_node_our_relay_carries_it(cluster, ssh_pool, caplog):
    """The cluster's second login port forwards TCP only to 127.0.0.1 (`PermitOpen`, as some sites limit it):
    the node hop goes through our relay there, quietly, and closing the node's connection ends the relay."""
    assert cluster.no_unix_port, "re-run `bash tests/cluster/cluster.sh start` (no CS_TEST_NO_UNIX_PORT)"
    before = _relays(ssh_pool, cluster)
    node = _node(cluster, login=cluster.endpoint(port=cluster.no_unix_port))
    assert ssh_pool.connect(node).run("echo relayed").stdout == "relayed\n"
    assert _relays(ssh_pool, cluster) == before + 1
    assert "Secsh" not in caplog.text and "prohibited" not in caplog.text  # nothing failed: nothing to say
    ssh_pool.drop(node)
    deadline = time.monotonic() + 5
    while _relays(ssh_pool, cluster) != before:
        assert time.monotonic() < deadline, "the relay outlived its node connection"
        time.sleep(0.1)


def test_a_kernel_behind_the_node_hop_answers_at_direct_speed(cluster, registered):
    """A trivial cell's round trip through the node hop stays at the direct path's, and so does it through
    our relay; a node connection that forwards before the node's sshd started a session (which is what turns
    its TCP_NODELAY on) is several times slower: Nagle meeting the delayed ACK, the stall the session avoids.
    Measured in alternating blocks: the machine is shared and its load moves."""
    from test_node_runtimes import _cells as timed

    from cybershuttle import runtime, ssh
    from cybershuttle.runtime.forward import forwarder

    runtime.request("relayed", "workstation")
    runtime.wait("relayed", timeout=120)
    clients, forwards = [], []
    # its own endpoint (another known_hosts path, same keys), so that the pool gives it its own connection
    stalled = _node(cluster, known_hosts=shutil.copy(cluster.known_hosts, tempfile.mkdtemp()))
    ssh.connect(stalled)._session_started = True  # as if a session had started: none will
    try:
        direct = runtime.client("relayed")
        hop, hop_forwards = _client_over("relayed", _node(cluster))
        relayed, relay_forwards = _client_over("relayed", _node(cluster, hop="relay"))
        nagle, nagle_forwards = _client_over("relayed", stalled)
        clients, forwards = [direct, hop, relayed, nagle], hop_forwards + relay_forwards + nagle_forwards
        for kc in clients:
            timed(kc, 5)
        times: dict[str, list[float]] = {"direct": [], "hop": [], "relay": [], "nagle": []}
        for _ in range(5):
            times["direct"] += timed(direct, 8)
            times["hop"] += timed(hop, 8)
            times["relay"] += timed(relayed, 8)
            times["nagle"] += timed(nagle, 2)
    finally:
        for kc in clients:
            kc.stop_channels()
        runtime.stop("relayed")
        for fwd in forwards:
            forwarder().remove(fwd)
        ssh.pool.drop(stalled)
    median = {hop: statistics.median(values) for hop, values in times.items()}
    assert median["hop"] <= median["direct"] * 1.3 + 0.001, median
    assert median["relay"] <= median["direct"] * 1.3 + 0.001, median
    assert median["nagle"] > 2 * median["hop"], median  # the stall the first session avoids


def test_a_node_that_does_not_resolve_is_named_at_once(cluster, ssh_pool):
    start = time.monotonic()
    with pytest.raises(SSHError) as info:
        ssh_pool.connect(_node(cluster, host="node-that-does-not-exist", port=22))
    assert time.monotonic() - start < 10
    assert str(info.value) == (f"cannot reach node-that-does-not-exist:22 from {cluster.host}: "
                               "node-that-does-not-exist does not resolve (Name or service not known)")


def test_a_node_port_without_sshd_is_refused_in_one_line(cluster, ssh_pool):
    with pytest.raises(SSHError, match=r"^cannot reach localhost:1 from .*: Connection refused$"):
        ssh_pool.connect(_node(cluster, port=1))


def test_an_unknown_node_host_key_is_refused_with_the_line_that_trusts_it(cluster, ssh_pool, tmp_path):
    known = tmp_path / "known_hosts"
    # the login host is pinned; the node is not
    login_lines = [ln for ln in open(cluster.known_hosts).read().splitlines() if ln.startswith(f"[{cluster.host}]")]
    known.write_text("\n".join(login_lines) + "\n")
    login = cluster.endpoint(known_hosts=str(known))
    node = cluster.endpoint(host="localhost", via=login, known_hosts=str(known))
    with pytest.raises(HostKeyError) as info:
        ssh_pool.connect(node)
    message = str(info.value)
    assert message.startswith(f"the host key of node [localhost]:{cluster.port} (seen through {cluster.host}: ")
    assert f"is not in {known}" in message
    trust = message.split("trust it with: ", 1)[1]
    subprocess.run(trust, shell=True, check=True)  # the line given trusts exactly that key
    assert ssh_pool.connect(node).run("echo trusted").stdout == "trusted\n"


# -- runtimes on the cluster's compute nodes ------------------------------------
def _node_partition() -> str:
    from test_node_runtimes import _cluster_env

    env = _cluster_env()
    if not env.get("CS_TEST_NODES"):
        pytest.fail("the test cluster has no compute nodes: re-run `bash tests/cluster/cluster.sh start`")
    return env.get("CS_TEST_NODE_PARTITION", "nodes")


def test_a_job_that_dies_on_its_node_before_the_kernel_starts_is_one_line_naming_node_and_job(registered, tmp_path):
    from cybershuttle import runtime

    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nadditional_dependencies:\n  pip: [/home/csuser/no-such-wheel-0.1-py3-none-any.whl]\n")
    rt, _ = runtime.request("dies", "testcluster", partition=_node_partition(), setup_file=str(setup))
    start = time.monotonic()
    with pytest.raises(runtime.RuntimeError_) as info:
        runtime.wait("dies", timeout=240)
    assert time.monotonic() - start < 200
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("runtime 'dies' did not start on node node"), message
    assert f"job {rt.job_id} ended FAILED" in message, message
    assert runtime.get("dies").state == "DEAD"


def _register_nodes(name: str, cluster, known_hosts: str) -> str:
    from cybershuttle import compute

    result = compute.validate_and_register(dict(
        name=name, kind="slurm", host=cluster.host, port=cluster.port, user=cluster.user, key=cluster.key,
        known_hosts=known_hosts, partition=_node_partition(), transport="node-ssh"))
    assert result.saved, result.to_dict()
    return name


def test_a_runtime_on_a_node_whose_host_key_is_unknown_is_refused_with_the_line_that_trusts_it(
        registered, cluster, tmp_path):
    from cybershuttle import runtime
    from cybershuttle.errors import HostKeyError

    known = tmp_path / "known_hosts"
    known.write_text("".join(ln for ln in open(cluster.known_hosts) if ln.startswith(f"[{cluster.host}]")))
    _register_nodes("strict", cluster, str(known))
    rt, _ = runtime.request("keyed", "strict")
    try:
        rt = runtime.wait("keyed", timeout=180)
        with pytest.raises(HostKeyError) as info:
            runtime.client("keyed")
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"runtime keyed (job {rt.job_id}) on node {rt.node}: the host key of node "
                                  f"{rt.node} (seen through {cluster.host}: ssh-ed25519 SHA256:"), message
        subprocess.run(message.split("trust it with: ", 1)[1], shell=True, check=True)
        kc = runtime.client("keyed")
        out: list[str] = []
        kc.execute_interactive("import socket; print(socket.gethostname())",
                               output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60)
        kc.stop_channels()
        assert "".join(out).strip() == rt.node
    finally:
        runtime.stop("keyed")


def test_a_runtime_whose_node_does_not_resolve_says_so_at_once(registered, cluster):
    from dataclasses import replace

    from cybershuttle import runtime
    from cybershuttle.errors import SSHError
    from cybershuttle.registry import catalog

    _register_nodes("vanishing", cluster, cluster.known_hosts)
    runtime.request("lost", "vanishing")
    try:
        rt = runtime.wait("lost", timeout=180)
        # as when Slurm names a node the login host cannot resolve (NodeName without NodeAddr or DNS)
        gone = replace(rt, node="node-not-in-dns")
        catalog().private.update(runtime.KIND, "lost", lambda _: runtime._to_data(gone))
        start = time.monotonic()
        with pytest.raises(SSHError) as info:
            runtime.connection_info("lost")
        assert time.monotonic() - start < 10
        assert str(info.value) == (f"runtime lost (job {rt.job_id}) on node node-not-in-dns: cannot reach "
                                   f"node-not-in-dns:22 from {cluster.host}: node-not-in-dns does not resolve "
                                   "(Name or service not known)")
    finally:
        runtime.stop("lost")


def test_a_node_refusing_a_user_without_a_job_there_says_why_it_may(cluster, ssh_pool):
    login = cluster.endpoint(user=cluster.other_user, key=cluster.other_key)
    busy = ssh_pool.connect(login).run("squeue -h -u $(id -un) -o %N", login_shell=True).stdout.split()
    node = next(n for n in ("node1", "node2") if n not in busy)  # the second user holds no job there
    with pytest.raises(SSHError) as info:
        ssh_pool.connect(cluster.endpoint(host=node, port=22, user=cluster.other_user, key=cluster.other_key,
                                          via=login))
    assert str(info.value).startswith(f"{cluster.other_user}@{node}:22 via {cluster.host}: authentication failed")
    assert str(info.value).endswith("(a compute node also refuses users who hold no job on it)")
