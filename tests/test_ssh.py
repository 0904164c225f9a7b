"""The SSH pool against the real loopback sshd and Slurm."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cybershuttle.errors import HostKeyError, RemoteCommandError, SSHError


def test_command_runs_on_the_cluster_as_the_test_user(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    result = conn.run("id -un; echo $HOME")
    user, home = result.stdout.split()
    assert user == cluster.user and home == f"/home/{cluster.user}"


def test_one_transport_is_shared_and_reopened_after_it_drops(cluster, ssh_pool):
    first = ssh_pool.connect(cluster.endpoint())
    assert ssh_pool.connect(cluster.endpoint()) is first
    first.transport.close()
    second = ssh_pool.connect(cluster.endpoint())
    assert second is not first and second.alive
    assert second.run("echo again").stdout == "again\n"


def test_exit_code_stdout_and_stderr_are_reported(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    result = conn.run("echo out; echo err >&2; exit 3", check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(RemoteCommandError, match="exited with 3: err"):
        conn.run("echo out; echo err >&2; exit 3")


def test_large_output_on_both_streams_does_not_deadlock(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    result = conn.run("head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2", timeout=60)
    assert len(result.stdout) == 3_000_000 and set(result.stdout) == {"a"}
    assert len(result.stderr) == 3_000_000 and set(result.stderr) == {"b"}


def test_stdin_reaches_the_command(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    assert conn.run("wc -c", stdin=b"x" * 12345).stdout.strip() == "12345"


def test_a_command_past_its_timeout_is_reported(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    with pytest.raises(RemoteCommandError, match="did not finish within 0.5 s"):
        conn.run("sleep 5", timeout=0.5)


def test_unknown_host_key_is_refused_with_how_to_trust_it(cluster, ssh_pool, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as info:
        ssh_pool.connect(cluster.endpoint(known_hosts=str(empty)))
    message = str(info.value)
    assert "is not in" in message and "SHA256:" in message
    assert f"ssh-keyscan -p {cluster.port} {cluster.host} >> {empty}" in message


def test_changed_host_key_is_refused_as_possible_interception(cluster, ssh_pool, tmp_path):
    keyfile = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    pub = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{cluster.host}]:{cluster.port} {pub[0]} {pub[1]}\n")
    with pytest.raises(HostKeyError, match="does NOT match"):
        ssh_pool.connect(cluster.endpoint(known_hosts=str(known)))
    # the pinned file with the real key still works
    assert ssh_pool.connect(cluster.endpoint()).alive


def test_key_that_is_not_authorized_fails_with_a_clear_message(cluster, ssh_pool, tmp_path):
    keyfile = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    with pytest.raises(SSHError, match="authentication failed; keys tried: .*stranger"):
        ssh_pool.connect(cluster.endpoint(key=str(keyfile)))


def test_missing_key_file_is_named(cluster, ssh_pool, tmp_path):
    with pytest.raises(SSHError, match="does not exist"):
        ssh_pool.connect(cluster.endpoint(key=str(tmp_path / "nope")))


def test_unreachable_port_says_so(cluster, ssh_pool):
    with pytest.raises(SSHError, match="cannot reach 127.0.0.1:1"):
        ssh_pool.connect(cluster.endpoint(port=1))


def test_key_passphrase_is_asked_once_per_process(cluster, ssh_pool, tmp_path):
    keyfile = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(keyfile)], check=True)
    authorized = Path(f"/home/{cluster.user}/.ssh/authorized_keys")
    before = authorized.read_text()
    authorized.write_text(before + (tmp_path / "locked.pub").read_text())
    asked: list[str] = []

    def prompter(prompt: str, secret: bool) -> str:
        asked.append(prompt)
        assert secret
        return "s3cret"

    try:
        endpoint = cluster.endpoint(key=str(keyfile))
        ssh_pool.connect(endpoint, prompter).transport.close()
        assert ssh_pool.connect(endpoint, prompter).run("echo ok").stdout == "ok\n"
    finally:
        authorized.write_text(before)
    assert len(asked) == 1 and "Passphrase" in asked[0]


def test_sftp_and_commands_share_one_transport(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    sftp = conn.sftp()
    assert conn.sftp() is sftp
    with sftp.open("cs-sftp-probe.txt", "w") as fh:
        fh.write("through sftp")
    assert conn.run("cat cs-sftp-probe.txt && rm cs-sftp-probe.txt").stdout == "through sftp"
    assert sftp.get_channel().get_transport() is conn.transport


def test_tunnel_reaches_a_port_on_the_remote_side(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    chan = conn.open_tunnel("127.0.0.1", cluster.port)  # the sshd itself answers with its banner
    chan.settimeout(10)
    assert chan.recv(64).startswith(b"SSH-2.0-")
    chan.close()


def test_module_command_exists_in_a_login_shell(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    listing = conn.run("module -t avail 2>&1", login_shell=True).stdout
    assert "hello/1.0" in listing and "hello/2.0" in listing


def test_sbatch_job_submitted_through_the_pool_runs_as_the_user(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    out = f"cs-sbatch-{time.time_ns()}.out"
    job = conn.run(
        f"sbatch --parsable --wait -p {cluster.partition} -o {out} --wrap 'echo job $SLURM_JOB_ID as $(id -un)'",
        timeout=120,
    ).stdout.strip().split(";")[0]
    assert job.isdigit()
    assert conn.run(f"cat {out} && rm {out}").stdout == f"job {job} as {cluster.user}\n"
    state = ""
    for _ in range(50):  # slurmdbd records the end a moment after the job exits
        state = conn.run(f"sacct -j {job} -X -n -P -o State").stdout.strip()
        if state:
            break
        time.sleep(0.2)
    assert state == "COMPLETED"


def test_a_node_is_reached_through_its_login_host(cluster, ssh_pool):
    login = cluster.endpoint()
    node = cluster.endpoint(host="localhost", via=login)  # [localhost]:2222 is pinned in known_hosts too
    conn = ssh_pool.connect(node)
    assert conn.run("id -un").stdout == f"{cluster.user}\n"
    assert conn.transport is not ssh_pool.connect(login).transport
    assert "via 127.0.0.1" in node.label


def test_kernel_endpoint_hops_only_to_other_nodes(registered):
    from cybershuttle import compute
    from cybershuttle.runtime import Runtime, kernel_endpoint

    res = compute.get("testcluster")
    same = Runtime(name="a", resource=res.name, job_id="x", node="localhost")
    other = Runtime(name="b", resource=res.name, job_id="x", node="node042")
    assert kernel_endpoint(same, res) == res.endpoint
    hop = kernel_endpoint(other, res)
    assert (hop.host, hop.port, hop.via, hop.hop) == ("node042", 22, res.endpoint, "relay")
