"""`cybershuttle runtime ...`: the real CLI against the loopback cluster's ssh and Slurm resources."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pexpect
import pytest

from conftest import CLI


def _slow(*args: str) -> subprocess.CompletedProcess:
    """The CLI for a verb that waits for Slurm: the 2-CPU test partition may be busy with other jobs."""
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=900, env=os.environ.copy())


def _runtimes(cli) -> dict[str, dict]:
    res = cli("runtime", "list", "--json")
    assert res.code == 0, res.err
    return {r["name"]: r for r in json.loads(res.out)}


def test_request_list_status_restart_stop_on_slurm(cli, registered):
    req = _slow("runtime", "request", "clirt", "--resource", "testcluster", "--walltime", "10")
    assert req.returncode == 0, req.stderr
    assert "Requested runtime clirt [testcluster:" in req.stdout and "runtime clirt is ready on testcluster" in req.stdout
    first_job = _runtimes(cli)["clirt"]["job_id"]
    try:
        assert _runtimes(cli)["clirt"]["state"] == "READY"
        table = cli("runtime", "list").out
        assert "clirt" in table and "READY" in table and first_job in table
        status = cli("runtime", "status", "clirt")
        assert status.code == 0 and "runtime clirt on testcluster: READY" in status.out
        assert "private Unix sockets" in status.out and "walltime 10" in status.out
        assert json.loads(cli("runtime", "status", "clirt", "--json").out)["job"]["state"] == "RUNNING"
        again = cli("runtime", "request", "clirt", "--resource", "testcluster")
        assert f"Re-attached to runtime clirt on testcluster (job {first_job}" in again.out

        restarted = _slow("runtime", "restart", "clirt")
        assert restarted.returncode == 0, restarted.stderr
        second_job = _runtimes(cli)["clirt"]["job_id"]
        assert second_job != first_job and f"restarted with a fresh kernel as job {second_job}" in restarted.stdout
        assert _runtimes(cli)["clirt"]["request"]["walltime"] == "10"  # the same request
        from cybershuttle import compute

        assert compute.status(first_job).final  # the old kernel's job is gone
    finally:
        stop = cli("runtime", "stop", "clirt")
    assert stop.code == 0 and "runtime clirt stopped" in stop.out
    assert _runtimes(cli)["clirt"]["state"] == "STOPPED"


def test_errors_word_the_next_step_as_cli_commands(cli, registered):
    missing = cli("runtime", "status", "ghost")
    assert missing.code == 1
    assert "no runtime named 'ghost': request it first" in missing.err
    assert "cybershuttle runtime request ghost --resource R" in missing.err and "%" not in missing.err
    nowhere = cli("runtime", "request", "lost")
    assert nowhere.code == 2 and "say where it runs" in nowhere.err
    dry = cli("runtime", "request", "dry", "--use", "testcluster:debug", "--cpus", "1", "--dry-run")
    assert dry.code == 0 and "[testcluster:debug," in dry.out and "nothing submitted" in dry.out
    assert _runtimes(cli) == {}


def test_connect_writes_a_connection_file_a_jupyter_client_uses(cli, registered, tmp_path):
    assert cli("runtime", "request", "conn", "--resource", "workstation").code == 0
    conn = tmp_path / "conn.json"
    proc = subprocess.Popen([str(CLI), "runtime", "connect", "conn", "--file", str(conn)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line, said = "", ""
        while "forwarding" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            said += line
        assert f"use it with: jupyter console --existing {conn}" in said, said  # Unix sockets: no keys to lose
        sockets_dir = Path(json.loads(conn.read_text())["ip"]).parent
        assert sockets_dir.is_dir() and stat.S_IMODE(sockets_dir.stat().st_mode) == 0o700
        assert conn.stat().st_mode & 0o077 == 0  # it holds the kernel's key
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        out: list[str] = []
        reply = kc.execute_interactive("import getpass; print(getpass.getuser())", timeout=60,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        kc.stop_channels()
        assert reply["content"]["status"] == "ok" and "".join(out).strip() == "csuser"
    finally:
        proc.terminate()
        proc.wait(20)
        cli("runtime", "stop", "conn")
    assert proc.returncode == 0 and not conn.exists()  # its ports died with the process: no stale file
    assert not sockets_dir.exists()  # nor its local sockets' directory


def test_connect_console_runs_jupyter_console_on_the_runtime(cli, registered):
    assert _slow("runtime", "request", "cons", "--resource", "testcluster").returncode == 0
    try:
        child = pexpect.spawn(str(CLI), ["runtime", "connect", "cons", "--console"], env=os.environ.copy(),
                              encoding="utf-8", timeout=90, dimensions=(40, 200))
        child.expect(r"In \[")  # the prompt (colours split it: `In [`, then `1`)
        child.sendline("import os, getpass; print('on', getpass.getuser(), os.environ.get('SLURM_JOB_ID', 'none'))")
        child.expect(r"on csuser (\d+)")
        job = child.match.group(1)
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        from cybershuttle import runtime

        assert runtime.get("cons").job_id.endswith(job)  # the kernel runs inside the runtime's Slurm job
    finally:
        cli("runtime", "stop", "cons")


@pytest.mark.parametrize("verb", ["request", "list", "status", "restart", "stop", "connect"])
def test_every_runtime_verb_has_help_with_an_example(cli, verb):
    res = cli("runtime", verb, "--help")
    assert res.code == 0 and f"example:\n  cybershuttle runtime {verb}" in res.out
