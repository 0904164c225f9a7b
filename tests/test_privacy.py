"""Runtime kernels stay private on shared hosts: Unix sockets in 0700 directories (or CurveZMQ on
loopback ports), no key material exposed."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from cybershuttle import compute, profile, runtime, ssh

from conftest import assert_large_output_whole, run_ok
from test_journal import dk  # noqa: F401 - a fixture: durable_kernel.py loaded as a job loads it

# argv: the kernel's five sockets (ZeroMQ endpoints, shell first, comma-separated), the secret, seconds.
# Subscribes to all, injects an execute_request on the first; for Unix sockets it also tries a plain
# connect and counts the ones the system refuses for permission (`denied`).
SNOOP = r'''
import errno, socket, sys, time, zmq
targets, secret = sys.argv[1].split(","), sys.argv[2].encode()
denied = 0
for target in targets:
    if target.startswith("ipc://"):
        try:
            socket.socket(socket.AF_UNIX).connect(target[len("ipc://"):])
        except PermissionError:
            denied += 1
        except OSError:
            pass
ctx = zmq.Context()
subs = []
for target in targets:
    s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b""); s.connect(target); subs.append(s)
shell = ctx.socket(zmq.DEALER); shell.connect(targets[0])
shell.send_multipart([b"<IDS|MSG>", b"", b'{"msg_type": "execute_request"}', b"{}", b"{}", b'{"code": "import os; os.system(\'touch /tmp/pwned\')"}'])
frames, leaked, deadline = 0, False, time.time() + float(sys.argv[3])
poller = zmq.Poller()
for s in subs + [shell]:
    poller.register(s, zmq.POLLIN)
while time.time() < deadline:
    for sock, _ in poller.poll(200):
        for part in sock.recv_multipart():
            frames += 1
            leaked = leaked or secret in part
print(f"frames={frames} leaked={leaked} denied={denied}")
'''
ORDER = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def snoop_targets(ports: dict, ipc_path: str | None = None, host: str = "127.0.0.1") -> str:
    """A kernel's five sockets as SNOOP takes them: Unix sockets `{ipc_path}-{port}`, or host:port."""
    if ipc_path:
        return ",".join(f"ipc://{ipc_path}-{int(ports[p])}" for p in ORDER)
    return ",".join(f"tcp://{host}:{int(ports[p])}" for p in ORDER)


@pytest.fixture
def zmq_for_other_user(tmp_path_factory):
    """pyzmq, readable by the second test user (copied from this venv: same CPython 3.11 ABI)."""
    import zmq as zmq_pkg

    site = Path(zmq_pkg.__file__).parent.parent
    target = Path("/tmp") / f"cs-snoop-{uuid.uuid4().hex[:8]}"
    target.mkdir(mode=0o755)
    for name in ("zmq", "pyzmq.libs"):
        if (site / name).exists():
            shutil.copytree(site / name, target / name)
    (target / "snoop.py").write_text(SNOOP)
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    yield target
    shutil.rmtree(target, ignore_errors=True)


def _snoop_as_the_other_user(cluster, zmq_dir: Path, targets: str, secret: str) -> str:
    """SNOOP's report, run by the second test user over their own SSH login to the cluster's login node."""
    other = ssh.Pool()
    try:
        conn = other.connect(cluster.endpoint(user=cluster.other_user, key=cluster.other_key))
        return conn.run(f"PYTHONPATH={zmq_dir} /usr/bin/python3 {zmq_dir}/snoop.py {targets} {secret} 3",
                        timeout=60).stdout
    finally:
        other.close_all()


def _print_secret_for(kc, secret: str, seconds: float) -> threading.Thread:
    code = f"import time\nfor _ in range({int(seconds * 10)}):\n    print({secret!r}, flush=True)\n    time.sleep(0.1)"
    thread = threading.Thread(target=lambda: kc.execute_interactive(code, timeout=60, output_hook=lambda m: None))
    thread.start()
    return thread


def test_other_users_and_plain_zmq_clients_read_nothing_and_cannot_execute(registered, cluster, zmq_for_other_user):
    runtime.request("private", "workstation")
    rt = runtime.wait("private")
    kc = runtime.client("private")
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    Path("/tmp/pwned").unlink(missing_ok=True)
    try:
        assert rt.ipc_path and rt.ipc_path.startswith(compute.get_job(rt.job_id).jobdir + "/")  # Unix sockets
        assert runtime.status("private")["transport"].startswith("private Unix sockets, forwarded over SSH")
        printer = _print_secret_for(kc, secret, 4)
        snooped = _snoop_as_the_other_user(cluster, zmq_for_other_user, snoop_targets(rt.remote_ports, rt.ipc_path),
                                           secret)
        # This machine's end: Unix sockets in a 0700 directory, tried by the second user here (runuser)
        info = runtime.connection_info("private")
        assert info["transport"] == "ipc" and "curve_secretkey" not in info
        local_dir = os.path.dirname(info["ip"])
        assert stat.S_IMODE(os.stat(local_dir).st_mode) == 0o700
        assert all(stat.S_IMODE(os.stat(f"{info['ip']}-{info[p]}").st_mode) == 0o600 for p in ORDER)
        local = subprocess.run(["runuser", "-u", cluster.other_user, "--", "env", f"PYTHONPATH={zmq_for_other_user}",
                                "/usr/bin/python3", f"{zmq_for_other_user}/snoop.py",
                                snoop_targets(info, info["ip"]), secret, "3"],
                               capture_output=True, text=True, timeout=60).stdout
        printer.join(60)
        # the real client, with the keys, did receive it
        out: list[str] = []
        kc.execute_interactive(f"print({secret!r})", timeout=30,
                               output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert secret in "".join(out)
        assert_large_output_whole(kc)  # the login host's Unix sockets, through the pooled connection
        assert "leaked=False denied=5" in snooped, snooped  # the system refused all five sockets
        assert "leaked=False denied=5" in local, local
        assert not Path("/tmp/pwned").exists()  # the injected execute_request never ran
    finally:
        kc.stop_channels()
        runtime.stop("private")


def test_kernel_listens_on_loopback_and_files_are_private(registered, cluster):
    runtime.request("files", "testcluster")
    rt = runtime.wait("files")
    job = compute.get_job(rt.job_id)
    conn = ssh.connect(compute.get("testcluster").endpoint)
    # The kernel runs on a compute node: look there, from inside its job (beside the kernel's own step).
    on_node = compute.scheduler(job).step_command(
        job, "ss -ltnpH 2>/dev/null || netstat -ltnp; echo ===; ps -eo args; echo ===; pgrep -u \"$USER\" -f durable_kernel")
    try:
        listening, node_ps, kernel_pids = conn.run(on_node, login_shell=True, check=False).stdout.split("===\n", 2)
        kernel_pids = kernel_pids.split()
        # the kernel's five sockets are Unix sockets in its job directory; it listens on no TCP port
        assert rt.ipc_path == f"{job.jobdir}/kernel", rt.ipc_path
        sockets = conn.run(f"ls {job.jobdir}").stdout.split()
        assert sorted(f"kernel-{port}" for port in rt.remote_ports.values()) == sorted(
            name for name in sockets if name.startswith("kernel-")), sockets
        assert kernel_pids
        # ipykernel's own pipe for the output of forked subprocesses is its one TCP listener: loopback, and
        # it only takes messages that start with a random 16-byte key of the kernel's (ipykernel/iostream.py)
        tcp = [ln for ln in listening.splitlines() if any(f"pid={pid}," in ln for pid in kernel_pids)]
        assert len(tcp) <= 1 and all(" 127.0.0.1:" in ln for ln in tcp), listening
        modes = conn.run(f"stat -c '%a %n' {job.jobdir} {job.jobdir}/connection.json {job.jobdir}/job.sh").stdout
        # jupyter_client sets the sticky bit on the directory it writes into: only permission bits matter
        assert [m[-3:] for m in modes.split()[0::2]] == ["700", "600", "600"], modes
        secrets = json.loads((profile.active().root / "runtimes" / "files.json").read_text())
        assert stat.S_IMODE(os.stat(profile.active().root / "runtimes" / "files.json").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(profile.active().root / "runtimes").st_mode) == 0o700
        key_material = [secrets["key"], secrets["curve_secretkey"]]
        visible = [
            conn.run(f"scontrol show job {job.native_id}", login_shell=True).stdout,
            conn.run("ps -eo args", check=False).stdout,
            node_ps,
            conn.run(f"cat {job.jobdir}/output.log {job.jobdir}/job.sh", check=False).stdout,
            (profile.active().catalog).read_bytes().decode(errors="replace"),
            profile.active().site_catalog.read_bytes().decode(errors="replace")
            if profile.active().site_catalog.exists() else "",
        ]
        for text in visible:
            for material in key_material:
                assert material not in text
    finally:
        runtime.stop("files")
    assert not conn.run(f"test -e {job.jobdir}/connection.json", check=False).ok
    assert not (profile.active().root / "runtimes" / "files.json").exists()


def test_connection_file_of_a_cancelled_runtime_is_removed_on_next_contact(registered):
    runtime.request("gone", "testcluster")
    rt = runtime.wait("gone")
    job = compute.get_job(rt.job_id)
    compute.cancel(job.id)  # scancel behind the runtime's back (as a walltime end would)
    deadline = time.time() + 30
    while runtime.status("gone")["state"] != "DEAD" and time.time() < deadline:
        time.sleep(0.5)
    conn = ssh.connect(compute.get("testcluster").endpoint)
    assert not conn.run(f"test -e {job.jobdir}/connection.json", check=False).ok


def sys_python() -> str:
    import sys

    return sys.executable



def test_the_snooper_reads_an_unencrypted_kernel(local_kernel):
    """Control: the same snooper does read a plain local kernel, so the tests above can fail."""
    kc = local_kernel
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    printer = _print_secret_for(kc, secret, 4)
    out = subprocess.run([sys_python(), "-c", SNOOP, snoop_targets(kc.get_connection_info()), secret, "3"],
                         capture_output=True, text=True, timeout=60).stdout
    printer.join(60)
    assert "leaked=True" in out, out


def test_the_snooper_reads_a_unix_socket_kernel_it_may_enter(tmp_path):
    """Control for the Unix sockets: a kernel whose socket directory the snooper may enter is read
    (so `leaked=False denied=5` above comes from the directory's mode, not from a snooper that fails)."""
    from jupyter_client.manager import KernelManager

    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(open_dir / "kernel"))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        secret = f"TOPSECRET-{uuid.uuid4().hex}"
        printer = _print_secret_for(kc, secret, 4)
        info = kc.get_connection_info()
        out = subprocess.run([sys_python(), "-c", SNOOP, snoop_targets(info, info["ip"]), secret, "3"],
                             capture_output=True, text=True, timeout=60).stdout
        printer.join(60)
        assert "leaked=True denied=0" in out, out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_compute_show_says_the_runtime_is_private(registered, cli):
    runtime.request("shown", "workstation")
    try:
        out = cli("compute", "show", "workstation").out
        assert "runtime:   shown (requested" in out and "private Unix sockets, forwarded over SSH" in out
        assert "kernels:   Unix sockets in the job's 0700 directory" in out
    finally:
        runtime.stop("shown")


def test_a_site_that_forbids_unix_socket_forwarding_gets_curvezmq_on_loopback_ports(cluster, cli,
                                                                                     zmq_for_other_user):
    """An sshd with `AllowStreamLocalForwarding no` (the cluster's second port): registration finds it out,
    and its runtimes' kernels listen on 127.0.0.1 ports with CurveZMQ, private all the same."""
    from cybershuttle.errors import SSHError

    assert cluster.no_unix_port, "re-run `bash tests/cluster/cluster.sh start` (no CS_TEST_NO_UNIX_PORT)"
    pool = ssh.Pool()
    try:  # the same sshd forwards to munge's socket (open to every user) on one port, and not on the other
        munge = "/var/run/munge/munge.socket.2"
        pool.connect(cluster.endpoint()).open_unix(munge).close()
        with pytest.raises(SSHError, match="cannot forward to the Unix socket"):
            pool.connect(cluster.endpoint(port=cluster.no_unix_port)).open_unix(munge)
    finally:
        pool.close_all()
    result = compute.validate_and_register(dict(name="nounix", kind="ssh", host=cluster.host,
                                                port=cluster.no_unix_port, user=cluster.user, key=cluster.key,
                                                known_hosts=cluster.known_hosts))
    assert result.saved, result.to_dict()
    assert compute.get("nounix").facts["unix_sockets"] is False
    assert "kernels:   127.0.0.1 ports, CurveZMQ-encrypted" in cli("compute", "show", "nounix").out
    runtime.request("ontcp", "nounix")
    rt = runtime.wait("ontcp")
    kc = runtime.client("ontcp")
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    try:
        assert rt.ipc_path is None and set(rt.remote_ports.values()) != {1, 2, 3, 4, 5}
        assert runtime.status("ontcp")["transport"].startswith("CurveZMQ-encrypted, forwarded over SSH")
        info = runtime.connection_info("ontcp")
        # The OpenSSH client forwards the kernel's ports to Unix sockets here (a 0700 directory), CurveZMQ kept.
        assert info["transport"] == "ipc" and info["curve_secretkey"]
        assert stat.S_IMODE(os.stat(os.path.dirname(info["ip"])).st_mode) == 0o700
        printer = _print_secret_for(kc, secret, 4)
        snooped = _snoop_as_the_other_user(cluster, zmq_for_other_user, snoop_targets(rt.remote_ports), secret)
        printer.join(60)
        assert "leaked=False" in snooped, snooped  # it connects (a TCP port), and reads nothing
        out: list[str] = []
        run_ok(kc, f"print({secret!r})", hook=lambda m: out.append(m["content"].get("text", "")))
        assert secret in "".join(out)
    finally:
        kc.stop_channels()
        runtime.stop("ontcp")


@pytest.mark.parametrize("room, mode, expected", [
    (True, 0o700, "ipc"),   # the job directory as made: Unix sockets, the CurveZMQ keys dropped
    (False, 0o700, "tcp"),  # no room for a socket's path (~107 bytes): 127.0.0.1 ports, keys kept
    (True, 0o755, "tcp"),   # a directory others may enter would not keep a socket private
])
def test_the_kernel_places_its_sockets_where_they_stay_private(dk, tmp_path, room, mode, expected):
    jobdir = Path("/tmp") / f"cs-{uuid.uuid4().hex[:8]}" if room else tmp_path / ("d" * 90)
    jobdir.mkdir(mode=mode)
    os.chmod(jobdir, mode)
    try:
        connection = jobdir / "connection.json"
        connection.write_text(json.dumps({"transport": "ipc", "ip": "127.0.0.1", "key": "k",
                                          "curve_publickey": "P", "curve_secretkey": "S", "shell_port": 0}))
        dk._place_sockets(str(connection), str(jobdir))
        info = json.loads(connection.read_text())
        assert stat.S_IMODE(connection.stat().st_mode) == 0o600
        assert info["transport"] == expected
        if expected == "ipc":
            assert info["ip"] == f"{jobdir}/kernel" and "curve_secretkey" not in info
        else:
            assert info["ip"] == "127.0.0.1" and info["curve_secretkey"] == "S"
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)
