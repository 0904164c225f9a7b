"""Durable runtimes on the loopback cluster: the walltime warning, checkpoints and resume, the output
journal replayed on re-attach, idle stop, and namespaces in session snapshots."""
from __future__ import annotations

import time

import pytest

from conftest import run_ok, start_local_kernel, stop_local_kernel


def texts(kc, code: str, **kwargs) -> str:
    """Run `code` through the notebook kernel `kc`; everything it showed, as one string."""
    out: list[str] = []

    def hook(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] in ("display_data", "execute_result"):
            out.append(str(content["data"].get("text/plain", "")) + "\n")
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    kwargs.setdefault("timeout", 240)
    reply = kc.execute_interactive(code, output_hook=hook, **kwargs)
    out.append(f"[{reply['content']['status']}]")
    return "".join(out)


@pytest.mark.waits
def test_walltime_warning_then_resume_restores_the_namespace_on_a_new_job(registered, local_kernel, cli):
    from cybershuttle import compute, runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime wall --resource testcluster --walltime 2 --warn-before 1\n%switch_runtime wall")
    first_job = runtime.get("wall").job_id
    run_ok(kc, "import socket\nbig = list(range(2_000_000))\nconfig = {'alpha': [1, 2.5], 'beta': 'x' * 1000}\n"
               "sock = socket.socket()")
    shown = texts(kc, "%checkpoint_runtime wall")
    assert "checkpointed runtime wall: 3 name(s)" in shown, shown
    assert "not saved: sock (TypeError: cannot pickle 'socket' object)" in shown
    # The warning arrives in the running cell (Slurm signals within a minute of `--warn-before 1`).
    shown = texts(kc, "import os, time\nstart = time.time()\n"
                      "while not os.path.exists(os.environ['CYBERSHUTTLE_JOB_DIR'] + '/durable/warning.json'):\n"
                      "    time.sleep(0.2)\ntime.sleep(1)\nprint('waited', round(time.time() - start))", timeout=150)
    assert "the walltime of runtime wall ends in about 1 min" in shown, shown
    assert "namespace checkpointed (" in shown and "not saved: sock" in shown
    assert "%request_runtime wall --resume" in shown
    stat = texts(kc, "%stat_runtime wall")
    assert "warning:   cybershuttle: the walltime of runtime wall ends in about 1 min" in stat, stat
    status = cli("runtime", "status", "wall")
    assert status.code == 0 and "warning:" in status.out and "ends in about 1 min" in status.out, status
    from cybershuttle_server.handlers.compute import runtime_warning_events  # the sidebar's event

    event = runtime_warning_events()[("runtime", "wall")]
    assert event["state"] == "READY" and "ends in about 1 min" in event["warning"]
    # The walltime ends the job; --resume asks a new one with the same request and restores first.
    assert compute.wait(first_job, timeout=200).state == "TIMEOUT"
    shown = texts(kc, "%request_runtime wall --resource testcluster --walltime 2 --warn-before 1 --resume\n"
                      "%switch_runtime wall")
    assert "[ok]" in shown, shown
    assert runtime.get("wall").job_id != first_job
    shown = texts(kc, "print(len(big), big == list(range(2_000_000)), config == {'alpha': [1, 2.5], 'beta': 'x' * 1000})")
    assert "runtime wall resumed from the checkpoint of" in shown, shown
    assert "restored big, config" in shown
    assert "2000000 True True" in shown
    run_ok(kc, "%stop_runtime wall")


@pytest.mark.waits
def test_a_warning_between_cells_shows_in_the_next_cell_and_no_checkpoint_is_taken_when_told(registered,
                                                                                            local_kernel):
    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime quiet --resource workstation --no-checkpoint\n%switch_runtime quiet")
    # What the scheduler's signal does, sent by the kernel to itself once this cell has ended.
    run_ok(kc, "import os, signal, threading\nthreading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1)).start()")
    time.sleep(3)
    shown = texts(kc, "print('next')")
    assert "the walltime of runtime quiet ends in about" in shown and "no checkpoint (--no-checkpoint)" in shown
    assert shown.index("the walltime of runtime quiet") < shown.index("next"), shown
    assert "the walltime" not in texts(kc, "print('once')")
    run_ok(kc, "%stop_runtime quiet")


@pytest.mark.waits
def test_the_cli_checkpoints_and_resumes_a_runtime_on_a_plain_ssh_host(registered, cli):
    import json

    from cybershuttle import runtime

    assert cli("runtime", "request", "cl", "--resource", "workstation").code == 0
    try:
        kc = runtime.client("cl")
        run_ok(kc, "numbers = list(range(1000))\nsquare = lambda v: v * v")
        kc.stop_channels()
        saved = cli("runtime", "checkpoint", "cl", "--json")
        assert saved.code == 0 and sorted(json.loads(saved.out)["saved"]) == ["numbers", "square"], saved
        first_job = runtime.get("cl").job_id
        assert cli("runtime", "stop", "cl").code == 0
        resumed = cli("runtime", "request", "cl", "--resource", "workstation", "--resume")
        assert resumed.code == 0 and runtime.get("cl").job_id != first_job, resumed
        kc = runtime.client("cl")
        out: list[str] = []
        run_ok(kc, "print(sum(numbers), square(12))", hook=lambda m: out.append(m["content"].get("text", "")))
        kc.stop_channels()
        assert "499500 144" in "".join(out)
        assert "restored numbers, square" in cli("runtime", "status", "cl").out
    finally:
        if runtime.find("cl") is not None:
            runtime.stop("cl")


def test_extend_says_so_where_the_site_does_not_let_users_raise_a_time_limit(registered, local_kernel):
    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime ext --resource testcluster --walltime 5\n%wait_for_runtime ext")
    shown = texts(kc, "%extend_runtime ext --walltime +30")
    assert "testcluster does not let you raise a job's time limit" in shown, shown
    assert "[error]" in shown
    run_ok(kc, "%stop_runtime ext")


def test_extend_raises_the_time_limit_where_the_site_lets_the_user(registered, local_kernel, cluster):
    """A site that lets its users raise their jobs' limits: here the test makes the cluster's user a Slurm
    operator for as long as it runs (that is who Slurm lets raise a time limit)."""
    import subprocess

    from cybershuttle import compute, runtime

    def admin_level(level: str) -> None:
        subprocess.run(["sacctmgr", "-i", "modify", "user", "where", f"name={cluster.user}", "set",
                        f"adminlevel={level}"], check=True, capture_output=True, text=True, timeout=60)

    def time_limit(native: str) -> str:
        out = subprocess.run(["scontrol", "show", "job", native], capture_output=True, text=True, check=True).stdout
        return next(w for w in out.split() if w.startswith("TimeLimit=")).split("=", 1)[1]

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime extok --resource testcluster --walltime 5\n%wait_for_runtime extok")
    admin_level("Operator")
    try:
        native = compute.get_job(runtime.get("extok").job_id).native_id
        assert time_limit(native) == "00:05:00"
        shown = texts(kc, "%extend_runtime extok --walltime +30")
        assert "got 30 more minute(s)" in shown and "[ok]" in shown, shown
        assert time_limit(native) == "00:35:00"
    finally:
        admin_level("None")
        run_ok(kc, "%stop_runtime extok")


def test_resume_without_a_checkpoint_is_refused_before_anything_is_submitted(registered, local_kernel):
    from cybershuttle import runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    shown = texts(kc, "%request_runtime fresh --resource testcluster --resume")
    assert "runtime 'fresh' has no checkpoint on testcluster to resume from" in shown, shown
    assert runtime.find("fresh") is None


# -- the output journal ------------------------------------------------------------
PRINTING = "import time\nfor i in range(60):\n    print(f'line {i}', flush=True)\n    time.sleep(0.5)"


def notebook_kernel():
    """A real local ipykernel (the notebook's own kernel) and a client playing the frontend."""
    km, kc = start_local_kernel()
    run_ok(kc, "import cybershuttle_magic")
    return km, kc


def collect(kc, msg_id: str | None, seconds: float, until_idle: bool = False) -> str:
    """The stream text the frontend `kc` receives (for `msg_id`, or any) for `seconds` or until idle."""
    import queue

    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg_id is not None and msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if until_idle and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return "".join(out)


def numbered(text: str) -> list[int]:
    import re

    return [int(n) for n in re.findall(r"^line (\d+)$", text, re.MULTILINE)]


@pytest.mark.waits
def test_a_notebook_whose_kernel_was_killed_sees_every_line_once_after_reattaching(registered):
    from cybershuttle import runtime

    import os
    import signal

    km, kc = notebook_kernel()
    try:
        run_ok(kc, "%request_runtime jr --resource testcluster\n%switch_runtime jr")
        msg_id = kc.execute(PRINTING)
        before = collect(kc, msg_id, 5.0)
        # SIGKILL: the notebook's own kernel dies mid-cell; the runtime goes on printing
        os.kill(km.provisioner.process.pid, signal.SIGKILL)
        before += collect(kc, msg_id, 0.5)  # what was already on its way to the frontend
        stop_local_kernel(km, kc)  # (already dead: its client and connection file go)
        assert numbered(before) and numbered(before) == list(range(len(numbered(before))))
        km, kc = notebook_kernel()
        after = texts(kc, "%request_runtime jr --resource testcluster", timeout=120)
        assert "Re-attached to runtime jr" in after, after
        assert "── runtime jr: output produced while this notebook was away (" in after
        assert "── runtime jr: that cell is still running; its output follows ──" in after
        assert numbered(before) + numbered(after) == list(range(60)), (before, after)
        assert texts(kc, "%%run_on jr\nprint('next cell')").startswith("next cell")
    finally:
        if runtime.find("jr") is not None:
            runtime.stop("jr")
        stop_local_kernel(km, kc)


def cut_ssh_connections_of(pid: int, port: int) -> int:
    """Kill the sshd processes serving process `pid`'s SSH connections (only those: others' tests go on)."""
    import os
    import re
    import signal
    import subprocess

    table = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    mine = set(re.findall(rf"\S+:(\d+)\s+\S+:{port}\s+users:\(\(\"[^\"]+\",pid={pid},", table))
    killed = 0
    for line in table.splitlines():
        m = re.search(rf"\S+:{port}\s+\S+:(\d+)\s+users:(.*)", line)
        if m and m.group(1) in mine:
            for sshd in re.findall(r"pid=(\d+)", m.group(2)):
                try:
                    os.kill(int(sshd), signal.SIGKILL)
                except ProcessLookupError:
                    continue  # its other process went with the first
                killed += 1
    return killed


@pytest.mark.waits
def test_a_cell_whose_ssh_connection_was_cut_shows_every_line_once_in_order(registered, cluster):
    from cybershuttle import runtime

    km, kc = notebook_kernel()
    try:
        run_ok(kc, "%request_runtime jc --resource testcluster\n%switch_runtime jc")
        msg_id = kc.execute(PRINTING)
        shown = collect(kc, msg_id, 5.0)
        assert cut_ssh_connections_of(km.provisioner.process.pid, cluster.port) > 0
        shown += collect(kc, msg_id, 120.0, until_idle=True)
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok", reply["content"]
        assert numbered(shown) == list(range(60)), shown
    finally:
        if runtime.find("jc") is not None:
            runtime.stop("jc")
        stop_local_kernel(km, kc)


# -- idle runtimes give their allocation back ---------------------------------------
@pytest.mark.waits
def test_an_idle_runtime_checkpoints_gives_its_job_back_and_says_so_at_the_next_use(registered, local_kernel):
    from cybershuttle import compute, runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime lazy --resource testcluster --idle-timeout 20s\n%switch_runtime lazy")
    job = runtime.get("lazy").job_id
    run_ok(kc, "answer = 41")
    start = time.monotonic()
    ended = compute.wait(job, timeout=90)
    assert ended.final and time.monotonic() - start < 60, ended
    shown = texts(kc, "print(answer)", timeout=120)
    assert "runtime lazy is gone: runtime lazy ran no cell for 20 s and gave its allocation back" in shown, shown
    assert "checkpointed (1 names" in shown and "--resume" in shown
    run_ok(kc, "%request_runtime lazy --resource testcluster --resume\n%switch_runtime lazy")
    assert "42" in texts(kc, "print(answer + 1)")
    run_ok(kc, "%stop_runtime lazy")


def test_the_sites_idle_timeout_applies_unless_the_request_says_otherwise(registered, tmp_path, monkeypatch):
    import json

    from cybershuttle import compute
    from cybershuttle.runtime import durable

    site = tmp_path / "site.toml"
    site.write_text('[runtimes]\nidle_timeout = "45m"\n')  # root's own file, as a site's is
    monkeypatch.setenv("CYBERSHUTTLE_SITE_CONFIG", str(site))
    res = compute.get("testcluster")
    files, _ = durable.job_files("r", res, durable.Options(), None, None)
    assert json.loads(files["durable.json"])["idle_timeout_s"] == 45 * 60
    files, _ = durable.job_files("r", res, durable.Options(idle_timeout_min=0), None, None)
    assert json.loads(files["durable.json"])["idle_timeout_s"] is None


# -- notebook state in sessions ------------------------------------------------------
def test_a_session_snapshot_keeps_the_namespace_and_load_restore_state_brings_it_back(registered, tmp_path, cli):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cybershuttle import runtime, session

    runtime.request("st", "testcluster")
    runtime.wait("st")
    try:
        kc = runtime.client("st")
        run_ok(kc, "data = {'k': [1, 2, 3]}\nimport math")
        kc.stop_channels()
        nb = tmp_path / "work.ipynb"
        nbformat.write(new_notebook(cells=[new_code_cell("data")]), nb)
        session.attach("s1", nb, state=True)
        snap = session.snapshots("s1")[-1]
        assert [s["runtime"] for s in snap.state] == ["st"] and sorted(snap.state[0]["saved"]) == ["data", "math"]
        first_job = runtime.get("st").job_id
        runtime.stop("st")
        loaded = cli("session", "load", "s1", "--restore-state", "--directory", str(tmp_path / "back"))
        assert loaded.code == 0, loaded
        assert f"runtime st on testcluster, its namespace from snapshot {snap.id}" in loaded.err
        assert runtime.get("st").job_id != first_job
        runtime.wait("st")
        kc = runtime.client("st")
        out: list[str] = []
        run_ok(kc, "print(data, math.pi > 3)", hook=lambda m: out.append(m["content"].get("text", "")))
        kc.stop_channels()
        assert "{'k': [1, 2, 3]} True" in "".join(out)
        # The checkpoint stays in the runtime's private directory: nothing of it is in an export.
        exported = cli("session", "export", "s1", "--format", "ipynb")
        assert exported.code == 0 and "checkpoint" not in exported.out and snap.state[0]["label"] not in exported.out
    finally:
        if runtime.find("st") is not None:
            runtime.stop("st")


def test_a_notebook_session_started_with_state_checkpoints_its_runtimes_at_each_save(registered, tmp_path):
    """`session.start(NAME, state=True)` (what a notebook runs; no metadata written into the open notebook):
    the server's post-save hook then checkpoints the runtimes in use with each snapshot."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cybershuttle import runtime, session
    from cybershuttle.session import notebook as notebooks

    runtime.request("st2", "testcluster")
    runtime.wait("st2")
    nb = tmp_path / "live.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("rows")]), nb)
    try:
        kc = runtime.client("st2")
        run_ok(kc, "rows = [1, 2, 3]")
        kc.stop_channels()
        session.start("s2", notebook=str(nb), state=True)
        session.stop()
        snap = notebooks.post_save_hook({"type": "notebook"}, str(nb))
        assert snap is not None and [s["runtime"] for s in snap.state] == ["st2"], snap
        assert "rows" in snap.state[0]["saved"]
        nbformat.write(new_notebook(cells=[new_code_cell("rows")]), tmp_path / "plain.ipynb")
        session.start("s3", notebook=str(tmp_path / "plain.ipynb"))  # without state: snapshots only
        session.stop()
        plain = notebooks.post_save_hook({"type": "notebook"}, str(tmp_path / "plain.ipynb"))
        assert plain is not None and plain.state == []
    finally:
        if runtime.find("st2") is not None:
            runtime.stop("st2")
