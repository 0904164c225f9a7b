"""The test cluster's compute nodes (issue 14): node1 and node2 behind the login node.

Each node is a network namespace with its own slurmd and sshd (tests/cluster/nodes.sh). These
tests check what a site's users rely on: jobs land on nodes (never where the test runs), a node
is reachable only from the login node, SSH to a node needs a job there, GPUs are real GRES,
nodes are big enough for the real setup files, and a request can span both nodes.
"""
from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLUSTER_SH, run_ok
from test_magics import ends_mid_cell, result_arrives_after, run_notebook, text_of
from test_privacy import _print_secret_for, snoop_targets, zmq_for_other_user  # noqa: F401 - a fixture, used by name

# The real setup files (shared/data's, copied unchanged into tests/data).
REAL_FILES = sorted((Path(__file__).parent / "data" / "cybershuttle_yml").glob("*.yml"))


@pytest.fixture(scope="module")
def nodes_env(cluster) -> dict[str, str]:
    proc = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True)
    env = dict(shlex.split(line)[1].split("=", 1) for line in proc.stdout.splitlines() if line.startswith("export "))
    assert env.get("CS_TEST_NODES") == "node1 node2", "the test cluster has no compute nodes: re-run cluster.sh start"
    return env


@pytest.fixture(scope="module")
def partition(nodes_env) -> str:
    """The partition that holds node1 and node2 (`nodes`, or `debug` once the login node runs no jobs)."""
    return nodes_env["CS_TEST_NODE_PARTITION"]


def _login(cluster, command: str, user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`command` in a login shell on the login node, as a user would run it over SSH."""
    user = user or cluster.user
    key = cluster.key if user == cluster.user else cluster.other_key
    return subprocess.run(_ssh(cluster, user, key) + ["-p", str(cluster.port), f"{user}@{cluster.host}",
                                                       f"bash -lc {shlex.quote(command)}"],
                          capture_output=True, text=True, timeout=timeout)


def _ssh(cluster, user: str, key: str) -> list[str]:
    return ["ssh", "-i", key, "-o", f"UserKnownHostsFile={cluster.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "GlobalKnownHostsFile=/dev/null"]


def _to_node(cluster, node: str, user: str, command: str = "hostname; echo job=${SLURM_JOB_ID:-none}"):
    """SSH from the login node's network straight to `node`'s sshd (port 22), host key checked."""
    key = cluster.key if user == cluster.user else cluster.other_key
    return subprocess.run(_ssh(cluster, user, key) + [f"{user}@{node}", command], capture_output=True, text=True,
                          timeout=60)


def _exec(node: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SH), "exec", node, *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture
def held_job(cluster, partition):
    """Submit `sleep` as a user on a node; yields the job id once it runs; cancels it afterwards."""
    jobs: list[str] = []

    def hold(node: str, user: str | None = None) -> str:
        user = user or cluster.user
        out = _login(cluster, f"sbatch --parsable -p {partition} -w {node} -t 5 -o /dev/null --wrap 'sleep 300'",
                     user=user)
        assert out.returncode == 0, out.stderr
        job = out.stdout.strip().split(";")[0]
        jobs.append(job)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
            if state.strip() == "RUNNING":
                return job
            time.sleep(0.3)
        pytest.fail(f"job {job} on {node} did not start: {state!r}")

    yield hold
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True)


# ----------------------------------------------------------------------------- the cluster


def test_cluster_env_names_the_nodes_and_their_partition(nodes_env):
    assert nodes_env["CS_TEST_NODES"] == "node1 node2"
    assert nodes_env["CS_TEST_NODE_ADDRS"].split() == [nodes_env["CS_TEST_NODE_LOGIN_ADDR"].rsplit(".", 1)[0] + s
                                                      for s in (".11", ".12")]
    assert nodes_env["CS_TEST_NODE_PARTITION"] in ("nodes", "debug")
    sinfo = subprocess.run(["sinfo", "-h", "-p", nodes_env["CS_TEST_NODE_PARTITION"], "-o", "%N"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert sinfo == ["node[1-2]"]


def test_jobs_run_on_the_node_slurm_chose(cluster, partition):
    out = _login(cluster, f"srun -p {partition} -N2 --ntasks-per-node=1 -l "
                          "sh -c 'echo $SLURMD_NODENAME $(hostname) $(ip -4 -o addr show eth0 | wc -l)'")
    assert out.returncode == 0, out.stderr
    lines = sorted(line.split(": ", 1)[1] for line in out.stdout.splitlines())
    # Each task sees its node's name as Slurm's node name and as the hostname, and has the node's address.
    assert lines == ["node1 node1 1", "node2 node2 1"]


def test_cluster_exec_runs_inside_a_node_and_refuses_unknown_ones():
    ran = _exec("node2", "sh", "-c", "hostname; ip -4 -o addr show eth0")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == "node2" and " 10." in ran.stdout
    unknown = _exec("node9", "true")
    assert unknown.returncode == 1 and "no node 'node9' (nodes: node1 node2)" in unknown.stderr
    usage = _exec("node1")
    assert usage.returncode == 1 and "usage: cluster.sh exec NODE CMD..." in usage.stderr


def test_a_node_reaches_the_login_node_and_the_other_node_only(cluster, nodes_env):
    login = nodes_env["CS_TEST_NODE_LOGIN_ADDR"]
    probe = ("import socket, sys\n"
             "for host, port in [(h, int(p)) for h, p in (a.split(':') for a in sys.argv[1:])]:\n"
             "    try:\n"
             "        socket.create_connection((host, port), timeout=3).close(); print(host, port, 'open')\n"
             "    except OSError as e:\n"
             "        print(host, port, type(e).__name__)\n")
    # 127.0.0.1 is the node's own loopback: the login sshd is not there. 203.0.113.1 (TEST-NET-3) has
    # no route from a node, so the attempt fails inside the namespace and sends nothing anywhere.
    ran = _exec("node1", "/usr/bin/python3", "-c", probe, f"{login}:6817", "node2:22", f"127.0.0.1:{cluster.port}",
                "203.0.113.1:9")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [f"{login} 6817 open", "node2 22 open",
                                       f"127.0.0.1 {cluster.port} ConnectionRefusedError",
                                       "203.0.113.1 9 OSError"], ran.stdout
    routes = _exec("node1", "ip", "-4", "route").stdout
    assert "default" not in routes


# csother, not csuser, is the one who logs in: every other test's runtimes run as csuser, so csuser
# may well hold jobs on any node (and with several there, a session joins none of them).
def test_ssh_to_a_node_without_a_job_there_is_refused(cluster, held_job):
    who = cluster.other_user
    refused = _to_node(cluster, "node1", who)
    assert refused.returncode == 255
    assert "Access denied by pam_slurm_adopt: you have no active jobs on this node" in refused.stderr
    # Another user's job on node1 does not open it to csother, nor csother's own job on node2.
    held_job("node1", user=cluster.user)
    held_job("node2", user=who)
    still = _to_node(cluster, "node1", who)
    assert still.returncode == 255 and "no active jobs on this node" in still.stderr


def test_ssh_to_a_node_works_while_the_user_has_a_job_there_and_joins_it(cluster, held_job):
    who = cluster.other_user
    job = held_job("node1", user=who)
    inside = _to_node(cluster, "node1", who)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["node1", f"job={job}"]  # adopted into the job
    subprocess.run(["scancel", job], check=True)
    deadline = time.monotonic() + 60
    while _to_node(cluster, "node1", who).returncode == 0:
        assert time.monotonic() < deadline, "SSH to node1 still allowed a minute after the job ended"
        time.sleep(1)


def test_node_host_keys_are_pinned_in_the_tests_known_hosts(cluster, tmp_path):
    lines = Path(cluster.known_hosts).read_text().splitlines()
    for node in ("node1", "node2"):
        entry = [line for line in lines if line.split(" ", 1)[0].split(",")[0] == node]
        assert len(entry) == 1, lines
        host_pub = (Path(cluster.state_dir) / "nodes" / node / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert entry[0].split()[1:3] == host_pub
    # Another key under the node's name is refused, not trusted on first use.
    wrong = tmp_path / "known_hosts"
    wrong.write_text("\n".join(line for line in lines if not line.startswith("node1"))
                     + "\n" + "node1 " + " ".join(lines[0].split()[1:3]) + "\n")
    proc = subprocess.run(["ssh", "-i", cluster.key, "-o", f"UserKnownHostsFile={wrong}", "-o",
                           "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                           f"{cluster.user}@node1", "true"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr


def test_gpus_on_node2_are_gres_the_job_sees(cluster, partition):
    out = _login(cluster, f"srun -p {partition} --gres=gpu:a100:2 sh -c 'echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["node2", "0,1"]
    one = _login(cluster, f"srun -p {partition} --gres=gpu:1 sh -c 'echo $CUDA_VISIBLE_DEVICES'")
    assert one.returncode == 0 and one.stdout.strip() == "0", one.stderr
    none = _login(cluster, f"srun -p {partition} -w node1 --gres=gpu:1 true")
    assert none.returncode != 0 and "Requested node configuration is not available" in none.stderr


def test_nodes_are_big_enough_for_the_real_setup_files(cluster, partition, registered, tmp_path):
    """Every collected setup file's minimums fit a node (16 CPUs, 128 GiB, A100s), and such a job runs."""
    from cybershuttle import compute, setupfile
    from cybershuttle.compute import request

    res = compute.get("testcluster")
    info = res.partition_info(partition)
    assert info is not None and info["nodes"] == 2, res.partitions
    assert (info["cpus_per_node"], info["memory_mb_per_node"], info["gpus_per_node"]) == (16, 131072, 2)
    assert REAL_FILES
    biggest = (0, 0)
    for path in REAL_FILES:
        setup = setupfile.load(str(path))
        req = request.resolve(res, partition=partition, setup=setup)
        assert req.cpus <= 16 and (req.memory_mb or 0) <= 131072, path
        biggest = max(biggest, (req.cpus, req.memory_mb or 0))
    assert biggest[0] == 16, biggest  # the largest CPU minimum among them
    # The largest memory minimum among all the files collected (shared/data's notes): 102400 MB.
    ran = _login(cluster, f"srun -p {partition} -c 16 --mem=102400 sh -c 'echo $SLURM_CPUS_ON_NODE'")
    assert ran.returncode == 0 and ran.stdout.strip() == "16", ran.stderr


# ----------------------------------------------------------------------------- multi-node requests


def _register_nodes_resource(cluster, partition, tmp_path, transport: str | None = None) -> str:
    """A Slurm resource whose default partition holds node1 and node2 (reached by `transport`)."""
    from cybershuttle import compute

    path = tmp_path / "nodes.yml"
    path.write_text("resources:\n" + cluster.resource_yaml(
        "nodescluster", partition=partition, more=f"    transport: {transport}\n" if transport else ""))
    results = compute.import_file(path)
    assert [r.saved for r in results] == [True], [r.to_dict() for r in results]
    return "nodescluster"


@pytest.fixture
def nodes_resource(cluster, partition, tmp_path):
    return _register_nodes_resource(cluster, partition, tmp_path)


@pytest.fixture(params=["node-ssh", "allocation"])
def node_runtimes(request, cluster, partition, tmp_path, nodes_env):
    """The nodes' resource with each way a kernel on a node is reached (SSH to the node; a relay in the job)."""
    if request.param == "node-ssh" and nodes_env.get("CS_TEST_NODE_SSH") == "off":
        pytest.fail("the test cluster runs without SSH to its nodes: turn it on with "
                    "`bash tests/cluster/cluster.sh node-ssh on` (make test starts it on)", pytrace=False)
    return _register_nodes_resource(cluster, partition, tmp_path, request.param)


def test_a_job_over_two_nodes_runs_its_tasks_on_both(nodes_resource):
    from cybershuttle import compute

    job = compute.execute("echo first=$(hostname); srun hostname | sort", nodes_resource, nodes=2, tasks_per_node=2,
                          walltime=5)
    assert job.request["nodes"] == 2 and job.request["tasks_per_node"] == 2
    done = compute.wait(job.id, timeout=180)
    assert done.state == "COMPLETED", done
    out = compute.logs(job.id).decode()
    assert out.split() == ["first=node1", "node1", "node1", "node2", "node2"], out


def test_multi_node_requests_are_checked_before_anything_is_submitted(nodes_resource, registered):
    from cybershuttle import compute
    from cybershuttle.compute import request

    res = compute.get(nodes_resource)
    req = request.resolve(res, nodes=2, tasks_per_node=4, cpus=2)
    assert (req.nodes, req.tasks_per_node) == (2, 4)
    assert "2 Node(s), 4 task(s) per node, 2 CPU(s)" in req.summary(res)
    assert request.resolve(res, nodes=2).tasks_per_node == 1  # one task per node unless asked
    with pytest.raises(request.RequestError, match=r"3 nodes requested but partition \w+ on nodescluster has 2"):
        request.resolve(res, nodes=3)
    with pytest.raises(request.RequestError, match="32 CPUs requested but partition"):
        request.resolve(res, nodes=2, tasks_per_node=4, cpus=8)
    with pytest.raises(request.RequestError, match="--nodes must be a whole number >= 1, got 0"):
        request.resolve(res, nodes=0)
    with pytest.raises(request.RequestError, match="workstation is a ssh resource, one machine: --nodes"):
        request.resolve(compute.get("workstation"), nodes=2)


def test_cli_and_magic_take_nodes_and_tasks_per_node(cli, nodes_resource):
    dry = cli("runtime", "request", "wide", "--resource", nodes_resource, "--nodes", "2", "--tasks-per-node", "3",
              "--dry-run")
    assert dry.code == 0, dry.err
    assert "2 Node(s), 3 task(s) per node" in dry.out and "nothing submitted" in dry.out
    assert "--tasks-per-node" in cli("runtime", "request", "--help").out
    from IPython.testing.globalipapp import get_ipython
    from IPython.utils.capture import capture_output

    ip = get_ipython()
    ip.run_line_magic("load_ext", "cybershuttle_magic")
    with capture_output() as cap:
        ip.run_line_magic("request_runtime", f"wide --resource {nodes_resource} --nodes 2 --tasks-per-node 3 --dry-run")
    assert "2 Node(s), 3 task(s) per node" in cap.stdout
    ran = cli("compute", "execute", "srun hostname | sort", "--resource", nodes_resource, "--nodes", "2",
              "--tasks-per-node", "1", "--walltime", "5", "--follow")
    assert ran.code == 0, ran.err
    assert ran.out.split() == ["node1", "node2"], ran.out



def test_a_runtime_over_two_nodes_has_its_kernel_on_the_first(node_runtimes):
    """`runtime.request(..., nodes=2, tasks_per_node=N)`: the kernel runs on the allocation's first
    node and `srun hostname` in a cell prints both nodes."""
    from cybershuttle import runtime

    rt, _ = runtime.request("twonodes", node_runtimes, nodes=2, tasks_per_node=2, walltime=10)
    try:
        runtime.wait("twonodes", timeout=300)
        kc = runtime.client("twonodes")
        out: list[str] = []
        code = ("import os, socket, subprocess\n"
                "print('kernel', socket.gethostname(), os.environ['SLURMD_NODENAME'])\n"
                "print(subprocess.run(['srun', 'hostname'], capture_output=True, text=True).stdout)")
        reply = kc.execute_interactive(code, timeout=120,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        kc.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]
        text = "".join(out).split()
        assert text[:3] == ["kernel", "node1", "node1"], text
        assert sorted(text[3:]) == ["node1", "node1", "node2", "node2"], text
    finally:
        runtime.stop("twonodes")


# ----------------------------------------------------------------------------- runtimes on nodes


def _stop_quietly(runtime, name: str) -> None:
    """Give the runtime's job back whatever the test found (a leaked kernel holds a node's CPUs)."""
    try:
        runtime.stop(name)
    except Exception:  # noqa: BLE001 - never there, or already stopped
        pass


def node_runtimes_transport(resource: str, name: str) -> str:
    from cybershuttle import compute, runtime
    from cybershuttle.runtime import transports

    return transports.name_for(runtime.get(name), compute.get(resource))


def _cell_text(kc, code: str) -> str:
    out: list[str] = []
    run_ok(kc, code, hook=lambda m: out.append(m["content"].get("text", "")))
    return "".join(out)


def test_a_notebook_reattaches_to_its_runtime_on_a_node(node_runtimes, tmp_path):
    from cybershuttle import runtime

    request = f"%request_runtime keepn --resource {node_runtimes} --walltime 10\n%switch_runtime keepn"
    try:
        where = "import os, socket\nmarker = 41\nprint(os.environ['SLURMD_NODENAME'], socket.gethostname())"
        first = run_notebook(tmp_path, "import cybershuttle_magic", request, where)
        node, hostname = text_of(first.cells[2]).split()
        assert node in ("node1", "node2") and hostname == node  # on a compute node, never the login node
        second = run_notebook(tmp_path, "import cybershuttle_magic", request, "print(marker + 1)")
        assert "Re-attached to runtime keepn" in text_of(second.cells[1])
        assert text_of(second.cells[2]).strip() == "42"  # the same kernel on the same node
    finally:
        _stop_quietly(runtime, "keepn")


@pytest.mark.parametrize("how", ["scancel", pytest.param("walltime", marks=pytest.mark.waits)])
def test_a_runtime_on_a_node_that_ends_mid_cell_fails_the_cell(node_runtimes, local_kernel, how):
    from cybershuttle import runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    walltime = " --walltime 1" if how == "walltime" else " --walltime 10"
    run_ok(kc, f"%request_runtime doomedn --resource {node_runtimes}{walltime}\n%switch_runtime doomedn")
    try:
        assert _cell_text(kc, "import os; print(os.environ['SLURMD_NODENAME'])").strip() in ("node1", "node2")
        ends_mid_cell(kc, "doomedn", how)
    finally:
        _stop_quietly(runtime, "doomedn")


@pytest.mark.cluster_alone
def test_dropped_connections_to_the_login_node_and_the_node_are_reestablished(node_runtimes, local_kernel):
    from cybershuttle import runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, f"%request_runtime dropn --resource {node_runtimes} --walltime 10\n%switch_runtime dropn")
    try:
        _survives_a_drop(kc, node_runtimes)
    finally:
        _stop_quietly(runtime, "dropn")


def _survives_a_drop(kc, node_runtimes: str) -> None:
    assert _cell_text(kc, "import os; print(os.environ['SLURMD_NODENAME'])").strip() in ("node1", "node2")

    def cut() -> bool:
        # Every SSH session of the test user is cut, to the nodes (the node sshd's sessions are named after
        # its program) and to the login node; the node's first: cutting the login's ends the relay's.
        node, login = (subprocess.run(["pkill", "-f", f"^{prog}: csuser"], capture_output=True).returncode
                       for prog in ("sshd-csnode", "sshd"))
        return login == 0 and (node == 0 or node_runtimes_transport(node_runtimes, "dropn") != "node-ssh")

    result_arrives_after(kc, cut)


def test_another_user_on_the_same_node_reads_nothing_and_cannot_execute(nodes_resource, cluster, partition,
                                                                         zmq_for_other_user, held_job):
    """Issue 9's privacy test on a node: csother holds a job on the kernel's node, logs in there
    (allowed: pam_slurm_adopt) and subscribes to / injects into the kernel's ports."""
    import uuid

    from cybershuttle import runtime

    runtime.request("privn", nodes_resource, walltime=10)
    rt = runtime.wait("privn", timeout=300)
    kc = runtime.client("privn")
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    Path("/tmp/pwned").unlink(missing_ok=True)
    try:
        assert rt.node in ("node1", "node2")
        held_job(rt.node, user=cluster.other_user)
        assert rt.ipc_path
        printer = _print_secret_for(kc, secret, 4)
        snooped = _to_node(cluster, rt.node, cluster.other_user,
                           f"hostname; PYTHONPATH={zmq_for_other_user} /usr/bin/python3 {zmq_for_other_user}/snoop.py "
                           f"{snoop_targets(rt.remote_ports, rt.ipc_path)} {secret} 3")
        printer.join(60)
        assert snooped.returncode == 0, snooped.stderr
        host, result = snooped.stdout.split("\n", 1)
        assert host == rt.node  # csother really was on the kernel's node
        assert "leaked=False denied=5" in result, result
        out: list[str] = []
        kc.execute_interactive(f"print({secret!r})", timeout=30,
                               output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert secret in "".join(out)  # the owner's client, with the keys, does receive it
        assert not Path("/tmp/pwned").exists()  # the injected execute_request never ran
    finally:
        kc.stop_channels()
        runtime.stop("privn")


def test_jobs_on_nodes_get_packages_through_the_login_nodes_proxy_only(cluster, partition, nodes_env):
    """Nodes have no route out; a job's pip reaches the package index through the login node's
    proxy (https_proxy, set by the TaskProlog), which tunnels to web ports only."""
    out = _login(cluster, f"cd /tmp && srun -p {partition} sh -c 'echo $https_proxy; d=$(mktemp -d); "
                          "/usr/bin/python3 -m pip download -q --no-deps -d $d iniconfig && ls $d; rm -rf $d'",
                 timeout=300)
    assert out.returncode == 0, out.stderr
    proxy, wheel = out.stdout.split()
    assert proxy == f"http://{nodes_env['CS_TEST_NODE_LOGIN_ADDR']}:3128" and wheel.startswith("iniconfig-")
    probe = ("import socket\n"
             f"s = socket.create_connection(('{nodes_env['CS_TEST_NODE_LOGIN_ADDR']}', 3128))\n"
             f"s.sendall(b'CONNECT {nodes_env['CS_TEST_NODE_LOGIN_ADDR']}:{cluster.port} HTTP/1.1\\r\\n\\r\\n')\n"
             "print(s.recv(100).split(b'\\r\\n')[0].decode())")
    refused = _exec("node2", "/usr/bin/python3", "-c", probe)
    assert refused.stdout.strip() == "HTTP/1.1 403 Forbidden", refused  # no tunnel to the login sshd, say
