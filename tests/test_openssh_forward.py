"""A login runtime's kernel forwarded by an OpenSSH client process (`runtime/openssh_forward.py`), and the
in-process forwarder where that client cannot log in by itself (a key with a passphrase) or is turned off."""
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


def _carrier(name: str):
    from cybershuttle import runtime

    with runtime._local_lock:
        return runtime._local[name][3]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_login_runtime_is_forwarded_by_an_openssh_client_that_ends_with_it(registered):
    from cybershuttle import runtime

    runtime.request("ossh", "workstation")
    rt = runtime.wait("ossh", timeout=120)
    kc = runtime.client("ossh")
    try:
        run_ok(kc, "x = 41")
        carrier = _carrier("ossh")
        assert carrier is not None, "the OpenSSH client should carry a login runtime's forwards"
        argv = _cmdline(carrier.pid)
        assert argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
        assert sum(a.startswith("/") and a.endswith(f"{rt.ipc_path}-{rt.remote_ports['shell_port']}")
                   for a in argv) == 1
        secrets = runtime._read_secrets("ossh")
        assert not any(secrets["key"] in a for a in argv)  # the kernel's HMAC key is never on a command line
        info = runtime.connection_info("ossh")
        local = Path(f"{info['ip']}-{info['shell_port']}")
        assert stat.S_ISSOCK(local.stat().st_mode) and stat.S_IMODE(local.stat().st_mode) == 0o600
        assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700

        # The connection drops (the client dies): it is started again, and the kernel kept its state.
        # (A raw client loses IOPub messages published before its SUB socket reconnects, so it asks until a
        # cell's idle status arrives; the notebook's path replays them from the journal: test_magics.)
        first = carrier.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.time() + 60
        while True:
            try:
                run_ok(kc, "pass", timeout=3)
                break
            except TimeoutError:
                assert time.time() < deadline, "the forwards did not come back"
        out: list[str] = []
        run_ok(kc, "print(x + 1)", hook=lambda m: out.append(m["content"].get("text", "")))
        assert "".join(out) == "42\n" and carrier.pid != first
        assert_large_output_whole(kc)
    finally:
        kc.stop_channels()
        pid = _carrier("ossh").pid
        runtime.stop("ossh")
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), "the client outlived its runtime"
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
