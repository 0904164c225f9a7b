"""Durable runtimes on the loopback cluster: the walltime warning, checkpoints and resume, the output
journal replayed on re-attach, idle stop, and namespaces in session snapshots."""
from __future__ import annotations

import time

import pytest

from conftest import run_ok


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


def test_extend_says_so_where_the_site_does_not_let_users_raise_a_time_limit(registered, local_kernel):
    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime ext --resource testcluster --walltime 5\n%wait_for_runtime ext")
    shown = texts(kc, "%extend_runtime ext --walltime +30")
    assert "testcluster does not let you raise a job's time limit" in shown, shown
    assert "[error]" in shown
    run_ok(kc, "%stop_runtime ext")


def test_resume_without_a_checkpoint_is_refused_before_anything_is_submitted(registered, local_kernel):
    from cybershuttle import runtime

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    shown = texts(kc, "%request_runtime fresh --resource testcluster --resume")
    assert "runtime 'fresh' has no checkpoint on testcluster to resume from" in shown, shown
    assert runtime.find("fresh") is None
