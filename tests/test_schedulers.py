"""The scheduler seam: schedulers are found through entry points, a scheduler from
another distribution is used by installing it, only the Slurm scheduler names
Slurm commands, and every state has one meaning everywhere."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from cybershuttle import slurm
from cybershuttle.compute import Job, schedulers, states
from cybershuttle.template.run import Run

REPO = Path(__file__).resolve().parent.parent

# A scheduler as a third party would ship it: each job is a `setsid` process group
# whose wrapper writes the job's exit status; its state is read from those files.
PLUGIN = r'''
import shlex
from dataclasses import replace

from cybershuttle.compute.schedulers import Scheduler


class SetsidScheduler(Scheduler):
    name = "setsid"

    def submit(self, shell, job):
        d = shlex.quote(job.jobdir)
        lines = job.script_lines()
        lines.insert(1, f"cd {shlex.quote(job.workdir)} || exit 96")
        wrapper = 'bash "$D/job.sh" > "$D/output.log" 2>&1; echo $? > "$D/exit.tmp"; mv "$D/exit.tmp" "$D/exit"'
        out = shell.run(f"umask 077 && mkdir -p {d} && cat > {d}/job.sh && {{ D={d} setsid bash -c "
                        f"{shlex.quote(wrapper)} < /dev/null > /dev/null 2>&1 & echo $!; }}",
                        stdin="\n".join(lines).encode(), timeout=60).stdout.strip()
        return out

    def state_command(self, job):
        d = shlex.quote(job.jobdir)
        return (f"if [ -e {d}/cancelled ]; then echo CANCELLED; elif [ -e {d}/exit ]; then "
                f"[ \"$(cat {d}/exit)\" = 0 ] && echo COMPLETED || echo FAILED; "
                f"elif kill -0 {int(job.native_id)} 2>/dev/null; then echo RUNNING; else echo FAILED; fi")

    def states(self, shell, jobs):
        script = "; ".join(f"echo {shlex.quote(j.id)} $({self.state_command(j)}) "
                           f"$(cat {shlex.quote(j.jobdir)}/exit 2>/dev/null)" for j in jobs)
        found = {}
        for line in shell.run(script, timeout=60).stdout.splitlines():
            parts = line.split()
            found[parts[0]] = parts[1:]
        out = []
        for j in jobs:
            state, *code = found[j.id]
            out.append(replace(j, state=state, exit_code=int(code[0]) if code else None))
        return out

    def cancel(self, shell, job):
        d = shlex.quote(job.jobdir)
        shell.run(f"touch {d}/cancelled; kill -TERM -- -{int(job.native_id)} 2>/dev/null; true", timeout=30)

    def enter_command(self, job):
        return f"cd {shlex.quote(job.workdir)} && exec bash -l"
'''


@pytest.fixture
def setsid_package(tmp_path):
    """A test-only distribution on PYTHONPATH declaring `setsid` in entry-point group cybershuttle.schedulers."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cs_setsid_scheduler.py").write_text(PLUGIN)
    dist = site / "cs_setsid_scheduler-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-setsid-scheduler\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[cybershuttle.schedulers]\nsetsid = cs_setsid_scheduler:SetsidScheduler\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))}


def test_cybershuttle_declares_its_schedulers_as_entry_points():
    found = schedulers.installed()
    assert found["process"].__module__ == "cybershuttle.compute.schedulers.process"
    assert found["slurm"].__module__ == "cybershuttle.compute.schedulers.slurm"
    assert list(schedulers.kinds()) == ["local", "ssh", "slurm"]
    for cls in found.values():
        assert issubclass(cls, schedulers.Scheduler)


def test_an_installed_scheduler_runs_jobs_through_the_cli(cli, setsid_package, tmp_path):
    env = setsid_package
    reg = cli("compute", "register", "--name", "box", "--kind", "setsid", "--json", env=env)
    assert reg.code == 0, reg.err
    listed = json.loads(cli("compute", "list", "--json", "--offline", env=env).out)
    assert {r["name"]: r["kind"] for r in listed}["box"] == "setsid"

    ran = cli("compute", "execute", "echo hello from $CYBERSHUTTLE_JOB_DIR; exit 3", "--resource", "box",
              "--workdir", str(tmp_path), "--follow", env=env)
    assert ran.code == 3, ran.err
    assert "hello from " in ran.out and "FAILED, exit code 3" in ran.err
    jobs = json.loads(cli("compute", "jobs", "--all", "--json", env=env).out)
    assert [(j["kind"], j["state"], j["exit_code"]) for j in jobs] == [("setsid", "FAILED", 3)]

    slow = json.loads(cli("compute", "execute", "sleep 600", "--resource", "box", "--json", env=env).out)
    assert slow["kind"] == "setsid"
    started = time.monotonic()
    cancelled = cli("compute", "cancel", slow["id"], env=env)
    assert cancelled.code == 0, cancelled.err
    assert "CANCELLED" in cli("compute", "status", slow["id"], env=env).out
    assert time.monotonic() - started < 60

    # Without the distribution the kind is unknown, and the error says what to do.
    without = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    gone = cli("compute", "register", "--name", "box2", "--kind", "setsid", env=without)
    assert gone.code != 0 and "kind must be one of local, ssh, slurm" in gone.err and "Traceback" not in gone.err
    lost = cli("compute", "show", "box", env=without)
    assert lost.code == 1 and "no installed scheduler serves resources of kind 'setsid'" in lost.err
    assert "install the distribution that provides it" in lost.err and "Traceback" not in lost.err


SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "srun", "scontrol", "sinfo", "salloc", "sstat", "sprio")
# The Slurm scheduler: its command layer and its Scheduler class.
SLURM_SCHEDULER = {"cybershuttle/slurm.py", "cybershuttle/compute/schedulers/slurm.py"}
# The product's code: the core, the magics, the server extension and the sidebar. Tests and
# benchmarks drive Slurm on purpose (the benchmarks time raw `sbatch` as their baseline).
PRODUCT = ("cybershuttle", "cybershuttle_magic", "server_extension", "src")


def test_only_the_slurm_scheduler_names_slurm_commands():
    word = re.compile(r"\b(" + "|".join(SLURM_COMMANDS) + r")\b")
    offenders = []
    for top in PRODUCT:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".ts", ".tsx", ".sh", ".js") or "node_modules" in path.parts:
                continue
            rel = path.relative_to(REPO).as_posix()
            if rel in SLURM_SCHEDULER:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if word.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == [], "Slurm commands named outside the Slurm scheduler:\n" + "\n".join(offenders)


def test_every_state_has_one_meaning_everywhere():
    words = [s.value for s in states.JobState]
    assert list(slurm.STATES) == words
    assert all(slurm.normalize_state(raw) in words for raw in ("CONFIGURING", "REQUEUED", "OOM", "CD", "PD", "x"))
    for word in words:
        job = Job("r.1", "r", "slurm", "1", "n", "true", "/j", "/w", 0.0, state=word)
        run = Run("t-1", "t", word, {}, "r", "/o", 0.0)
        record = slurm.JobState("1", word)
        assert job.final == record.final == run.final == states.JobState(word).final == (word in slurm.FINAL_STATES)
        assert states.JobState(word).active == (word in states.ACTIVE) and not (job.final and states.active(word))
    assert not states.final("UNKNOWN") and not states.active("UNKNOWN")
    from cybershuttle import runtime

    assert runtime.LIVE_STATES == ("REQUESTED", "READY")
    assert [s.value for s in states.RuntimeState if s.final] == ["STOPPED", "DEAD"]
    served = states.vocabulary()
    assert set(served["final"]) == {s["name"] for s in served["states"] if s["final"]}
    runs_own = {s.value for s in states.RunState}  # a sweep point's NOT_RUN
    assert {s["name"] for s in served["states"]} == set(words) | {"REQUESTED", "READY", "STOPPED", "DEAD"} | runs_own
    assert all(states.final(word) for word in runs_own)


@pytest.mark.cluster_alone
def test_a_pending_slurm_job_has_a_queue_place_and_a_way_in(registered, cli):
    from cybershuttle import compute

    # Two jobs that each fill every node of the partition (all its CPUs on all its nodes, as
    # tests/cluster/nodes.sh declares them): at most one runs, the other waits.
    res = compute.get("testcluster")
    part = res.partition_info(res.default_partition)
    jobs = [compute.execute("sleep 120", "testcluster", cpus=part["cpus_per_node"], nodes=part["nodes"], walltime=5)
            for _ in range(2)]
    try:
        # The second waits at least while the first runs (others' jobs may hold the node before that).
        deadline = time.monotonic() + 90
        while True:
            first, second = compute.refresh(jobs)
            if first.state == "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert second.state == "PENDING", "the second of two jobs filling the partition should wait"
        place = compute.queue_place(second)
        assert place.position is not None and place.position >= 1
        shown = cli("compute", "status", second.id)
        assert shown.code == 0 and "PENDING" in shown.out and "queue: position " in shown.out, shown.out
        assert compute.enter_command(second) == slurm.enter_command(second.native_id)
    finally:
        for job in jobs:
            try:
                compute.cancel(job.id)
            except Exception:
                pass
