"""A runtime's kernel forwarded by an OpenSSH client process (`runtime/openssh_forward.py`) on the login node
and on a compute node behind it, and the in-process forwarder where that client cannot log in by itself (a key with a passphrase) or is turned off."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import assert_large_output_whole, run_ok
from test_nodes import _cell_text, _register_nodes_resource, nodes_env, partition  # noqa: F401 - fixtures, used by name


def _carrier(name: str):
    from cybershuttle import runtime

    with runtime._local_lock:
        return runtime._local[name][3]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def test_a_login_runtime_is_forwarded_by_an_openssh_client_that_ends_with_it(registered):
    _carried_through_a_drop("ossh", "workstation", clients=1)


def test_a_node_runtime_is_forwarded_through_an_openssh_master_on_the_login_node(cluster, partition, tmp_path):
    """node-ssh: a master connection to the login node (with a session, so its sshd sends without Nagle) and
    the node's client through it (-W); killing the master drops both, and both are started again."""
    resource = _register_nodes_resource(cluster, partition, tmp_path, "node-ssh")
    _carried_through_a_drop("onode", resource, clients=2)


def _carried_through_a_drop(name: str, resource: str, clients: int) -> None:
    """Runtime `name` on `resource` is carried by `clients` OpenSSH processes (the last one forwards), keeps
    its state when the first is killed, and takes them with it when it stops."""
    from cybershuttle import runtime

    runtime.request(name, resource)
    rt = runtime.wait(name, timeout=120)
    kc = runtime.client(name)
    try:
        run_ok(kc, "x = 41")
        carrier = _carrier(name)
        assert carrier is not None, "the OpenSSH client should carry the runtime's forwards"
        assert len(carrier.pids) == clients
        argvs = [_cmdline(pid) for pid in carrier.pids]
        for argv in argvs:
            assert argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
        argv = argvs[-1]
        assert sum(a.startswith("/") and a.endswith(f"{rt.ipc_path}-{rt.remote_ports['shell_port']}")
                   for a in argv) == 1
        if clients == 2:  # the node's client goes through the master, never a connection of its own
            assert any(a.startswith("ProxyCommand=") and "ControlMaster=no" in a and "-W" in a for a in argv)
            node = _cell_text(kc, "import os; print(os.environ['SLURMD_NODENAME'], end='')")
            assert node in ("node1", "node2") and argv[-2].endswith(f"@{node}")
        secrets = runtime._read_secrets(name)
        assert not any(secrets["key"] in a for argv in argvs for a in argv)  # the HMAC key on no command line
        info = runtime.connection_info(name)
        local = Path(f"{info['ip']}-{info['shell_port']}")
        assert stat.S_ISSOCK(local.stat().st_mode) and stat.S_IMODE(local.stat().st_mode) == 0o600
        assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700

        # The connection drops (the first client dies): they are started again, and the kernel kept its state.
        # (A raw client loses IOPub messages published before its SUB socket reconnects, so it asks until a
        # cell's idle status arrives; the notebook's path replays them from the journal: test_magics.)
        first = carrier.pids
        os.kill(first[0], signal.SIGKILL)
        deadline = time.time() + 60
        while True:
            try:
                run_ok(kc, "pass", timeout=3)
                break
            except TimeoutError:
                assert time.time() < deadline, "the forwards did not come back"
        assert _cell_text(kc, "print(x + 1)") == "42\n"
        assert not set(carrier.pids) & set(first) and len(carrier.pids) == clients
        assert_large_output_whole(kc)
    finally:
        kc.stop_channels()
        pids = _carrier(name).pids
        runtime.stop(name)
    for pid in pids:
        deadline = time.time() + 10
        while time.time() < deadline and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), "a client outlived its runtime"
    assert not local.parent.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_key_with_a_passphrase_keeps_the_forwards_in_process(cluster, tmp_path):
    """The OpenSSH client cannot ask for the passphrase (BatchMode): the pooled, unlocked connection forwards."""
    from cybershuttle import compute, runtime, ssh

    locked = tmp_path / "locked"
    shutil.copy(cluster.key, locked)
    locked.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "a passphrase", "-f", str(locked)], check=True)
    with ssh.prompting(lambda prompt, secret: "a passphrase"):
        result = compute.validate_and_register(dict(
            name="locked", kind="ssh", host=cluster.host, port=cluster.port, user=cluster.user, key=str(locked),
            known_hosts=cluster.known_hosts))
        assert result.saved, result.to_dict()
        _forwarded_in_process("lockedrt", "locked")


def test_the_forwarder_setting_keeps_them_in_process(registered, monkeypatch):
    from cybershuttle import runtime

    monkeypatch.setenv(runtime.FORWARDER_ENV, "python")
    _forwarded_in_process("inproc", "workstation")


def _forwarded_in_process(name: str, resource: str) -> None:
    """A runtime `name` on `resource` whose cells run through the in-process forwarder's listening sockets."""
    from cybershuttle import runtime

    runtime.request(name, resource)
    runtime.wait(name, timeout=120)
    kc = runtime.client(name)
    try:
        assert _carrier(name) is None
        with runtime._local_lock:
            assert all(fwd.listener is not None for fwd in runtime._local[name][0])
        run_ok(kc, "print('in process')")
    finally:
        kc.stop_channels()
        runtime.stop(name)


@pytest.mark.parametrize("why", ["no client", "a colon"])
def test_what_the_client_cannot_carry_is_said_before_anything_starts(cluster, why, monkeypatch):
    from cybershuttle.runtime.openssh_forward import OpenSSHForwards, Unavailable

    pairs = [("/tmp/a:b", "/remote/x")] if why == "a colon" else [("/tmp/cs-never-made", "/remote/x")]
    if why == "no client":
        monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Unavailable, match="no OpenSSH client" if why == "no client" else "cannot name"):
        OpenSSHForwards(cluster.endpoint(), pairs, "t").start()
    assert not Path("/tmp/cs-never-made").exists()
