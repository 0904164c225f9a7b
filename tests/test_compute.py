"""Compute resources and jobs against the loopback sshd and Slurm."""
from __future__ import annotations

import json
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cybershuttle import compute, ssh
from cybershuttle.errors import CybershuttleError, NotFoundError


def _spec(cluster, **overrides):
    spec = dict(name="tc", kind="slurm", host=cluster.host, port=cluster.port, user=cluster.user, key=cluster.key,
                known_hosts=cluster.known_hosts)
    spec.update(overrides)
    return spec


# -- registration -----------------------------------------------------------
def test_registration_detects_slurm_partitions_lmod_python_and_disk(registered):
    checks = {c.name: c for c in registered["testcluster"].checks}
    assert checks["connect"].ok and "matches known_hosts" in checks["connect"].detail
    assert checks["slurm"].ok and "Slurm 22." in checks["slurm"].detail
    assert checks["partition"].ok
    assert checks["lmod"].ok and checks["python"].ok and checks["disk"].ok
    res = compute.get("testcluster")
    names = {p["name"]: p for p in res.partitions}
    assert names["debug"]["default"] and names["short"]["max_time_min"] == 30
    # debug is the compute nodes node1+node2 (tests/cluster/nodes.sh): 16 CPUs each, two a100 GPUs on node2
    assert (names["debug"]["nodes"], names["debug"]["cpus_per_node"], names["debug"]["gpus_per_node"]) == (2, 16, 2)
    assert res.facts["python"] == "/usr/bin/python3" and res.facts["home"] == "/home/csuser"
    assert compute.get("workstation").kind == "ssh"


def test_unknown_partition_fails_its_check_and_nothing_is_saved(cluster):
    result = compute.validate_and_register(_spec(cluster, partition="nosuch"))
    failed = [c for c in result.checks if not c.ok and c.required]
    assert [c.name for c in failed] == ["partition"] and "partitions: debug, short" in failed[0].detail
    assert not result.saved
    with pytest.raises(NotFoundError):
        compute.get("tc")


def test_unknown_host_key_fails_the_connect_check_with_how_to_trust_it(cluster, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = compute.validate_and_register(_spec(cluster, known_hosts=str(empty)))
    assert not result.saved and result.checks[0].name == "connect" and not result.checks[0].ok
    assert "ssh-keyscan" in result.checks[0].detail


def test_ssh_kind_on_a_slurm_host_needs_no_slurm_but_a_slurm_kind_needs_it(cluster):
    result = compute.validate_and_register(_spec(cluster, name="ws2", kind="ssh"))
    assert result.saved and "slurm" not in [c.name for c in result.checks]


@pytest.mark.parametrize("overrides, message", [
    ({"kind": "cloud"}, "kind must be one of local, ssh, slurm"),
    ({"port": "twenty"}, "port must be a number"),
    ({"port": 70000}, "port must be a number"),
    ({"node_port": "22"}, "node_port must be a number"),
    ({"name": "bad name"}, "not a valid compute resource name"),
    ({"key": "/nonexistent/key"}, "does not exist"),
    ({"host": "-oProxyCommand=id"}, "host must be a host name"),
    ({"partition": "a;b"}, "not a valid partition"),
    ({"colour": "red"}, "unknown key(s) colour"),
])
def test_bad_resource_specs_are_refused_before_connecting(cluster, overrides, message):
    with pytest.raises(CybershuttleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compute.validate_and_register(_spec(cluster, **overrides))
    assert [r.name for r in compute.list()] == []


def test_local_is_registered_once_when_several_requests_want_it_at_once():
    # A new user's server answers several sidebar lists at once, each registering `local` on first use.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: compute.register_local(), range(8)))
    assert {r.name for r, _ in results} == {"local"} and sum(created for _, created in results) == 1
    assert [r.name for r in compute.list_all()] == ["local"]


def test_import_of_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "r.yml"
    bad.write_text("resources:\n  - name: x\n    kind: [slurm\n")
    with pytest.raises(CybershuttleError, match=r"r.yml \(line \d+\): not valid YAML"):
        compute.import_file(bad)


def test_import_checks_every_entry_before_registering_any(cluster, resources_yml):
    text = resources_yml.read_text() + "  - name: broken\n    kind: slurm\n    port: nope\n"
    resources_yml.write_text(text)
    with pytest.raises(CybershuttleError, match=r"resources\[2\]: .*port must be a number"):
        compute.import_file(resources_yml)
    assert compute.list() == []


def test_configure_sets_personal_settings_and_refuses_unknown_partitions(registered):
    res = compute.configure("testcluster", account="csaccount", partition="short")
    assert (res.account, res.default_partition) == ("csaccount", "short")
    with pytest.raises(CybershuttleError, match="no partition 'gpu'"):
        compute.configure("testcluster", partition="gpu")


def test_list_shows_live_status(registered):
    live = compute.statuses(compute.list())
    assert live["testcluster"]["reachable"] and live["testcluster"]["idle_nodes"] >= 0
    assert live["testcluster"]["nodes"] >= 1
    assert live["local"]["reachable"] and live["workstation"]["reachable"]


# -- bad requests are refused before anything is submitted -----------------
@pytest.mark.parametrize("kwargs, message", [
    # short is node1 alone, without GPUs; debug has node2's two (tests/cluster/nodes.sh)
    ({"gpus": 1, "partition": "short"}, "testcluster has no GPUs (partition short)"),
    ({"resources_kind": "GPU", "partition": "short"}, "testcluster has no GPUs (partition short)"),
    ({"gpus": 3}, "3 GPUs requested but partition debug on testcluster has at most 2 per node"),
    ({"partition": "gpu"}, "no partition 'gpu' (partitions: debug, short)"),
    ({"cpus": 4096}, "4096 CPUs requested but partition debug on testcluster has at most"),
    ({"memory": "64T"}, "MB memory requested but partition debug"),
    ({"memory": "lots"}, "--memory must look like 4G"),
    ({"walltime": 60, "partition": "short"}, "longer than partition short's limit of 30 minutes"),
    ({"walltime": "soon"}, "--walltime must be minutes or a Slurm time"),
])
def test_requests_the_cluster_cannot_satisfy_are_refused(registered, kwargs, message):
    with pytest.raises(CybershuttleError, match=_escape(message)):
        compute.execute("true", "testcluster", **kwargs)
    assert compute.jobs(include_finished=True, refresh_states=False) == []


def test_missing_module_is_refused_before_submission(registered, tmp_path):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nadditional_dependencies:\n  modules: [nosuchtool/9]\n")
    with pytest.raises(CybershuttleError, match=r"module\(s\) nosuchtool/9 not available on testcluster"):
        compute.execute("true", "testcluster", setup_file=str(setup))


def test_unknown_resource_and_empty_command(registered):
    with pytest.raises(NotFoundError, match="no compute named 'nowhere'"):
        compute.execute("true", "nowhere")
    with pytest.raises(CybershuttleError, match="command to execute is empty"):
        compute.execute("  ", "testcluster")


# -- Slurm jobs ----------------------------------------------------------------
def test_slurm_job_runs_with_the_requested_resources_and_its_output_is_kept(registered):
    job = compute.execute("echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_NODE user=$(id -un)", "testcluster",
                          cpus=2, memory="256M", walltime=5)
    assert job.id == f"testcluster.{job.native_id}"
    done = compute.wait(job.id, timeout=120)
    assert (done.state, done.exit_code) == ("COMPLETED", 0)
    assert compute.logs(job.id).decode() == "cpus=2 mem=256 user=csuser\n"
    script = ssh.connect(compute.get("testcluster").endpoint).run(f"cat {job.jobdir}/job.sh").stdout
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=256M" in script and "#SBATCH --time=5" in script


def test_failing_slurm_job_reports_its_exit_code(registered, cli):
    res = cli("compute", "execute", "echo about to fail; exit 3", "--resource", "testcluster", "--wait")
    assert res.code == 3, res.err
    assert "FAILED, exit code 3" in res.err
    job = json.loads(cli("compute", "jobs", "--all", "--json").out)[0]
    assert (job["state"], job["exit_code"]) == ("FAILED", 3)


def test_cancelled_slurm_job_is_marked_cancelled(registered):
    job = compute.execute("sleep 120", "testcluster")
    done = compute.cancel(job.id)
    assert done.state == "CANCELLED"
    with pytest.raises(CybershuttleError, match="already ended"):
        compute.cancel(job.id)


def test_setup_file_modules_come_from_the_clusters_lmod(registered, tmp_path):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nworkspace:\n  resources: {min_cpu: 2, min_mem: 128}\n"
                     "additional_dependencies:\n  modules: [hello/1.0]\n  conda: []\n  pip: []\n")
    job = compute.execute("hello; echo cpus=$SLURM_CPUS_PER_TASK", "testcluster", setup_file=str(setup))
    done = compute.wait(job.id, timeout=120)
    assert done.state == "COMPLETED", compute.logs(job.id)
    out = compute.logs(job.id).decode()
    assert "1.0" in out and "cpus=2" in out


def test_twenty_concurrent_submissions_all_run(registered):
    with ThreadPoolExecutor(max_workers=20) as pool:
        submitted = list(pool.map(lambda i: compute.execute(f"echo job {i}", "testcluster", name=f"c{i}"), range(20)))
    assert len({j.id for j in submitted}) == 20
    finals = [compute.wait(j.id, timeout=240) for j in submitted]
    assert [f.state for f in finals] == ["COMPLETED"] * 20
    assert [compute.logs(j.id).decode() for j in submitted] == [f"job {i}\n" for i in range(20)]
    assert len(compute.jobs(include_finished=True)) == 20


def test_follow_survives_a_dropped_ssh_connection(registered):
    job = compute.execute("for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done", "testcluster")
    endpoint = compute.get("testcluster").endpoint
    received: list[bytes] = []
    dropped = threading.Event()

    def sink(data: bytes) -> None:
        received.append(data)
        if not dropped.is_set() and b"line 2" in b"".join(received):
            dropped.set()
            ssh.connect(endpoint).transport.close()  # the network goes away mid-stream

    done = compute.follow(job.id, sink)
    assert dropped.is_set()
    assert b"".join(received).decode() == "".join(f"line {i}\n" for i in range(1, 7))
    assert done.state == "COMPLETED"


def test_usage_reports_cpu_hours_from_sacct(registered):
    job = compute.execute("sleep 1", "testcluster", cpus=2)
    compute.wait(job.id, timeout=120)
    deadline = time.time() + 30
    while True:  # slurmdbd records the job a moment after it ends
        report = compute.usage("testcluster")
        rows = [r for r in report["jobs"] if r["job"] == job.native_id]
        if rows or time.time() > deadline:
            break
        time.sleep(0.5)
    assert rows, report
    row = rows[0]
    assert row["cpus"] == 2 and row["elapsed_s"] >= 1
    assert row["cpu_hours"] == pytest.approx(2 * row["elapsed_s"] / 3600, rel=0.01)
    assert report["totals"]["cpu_hours"] >= row["cpu_hours"]


# -- process jobs on local and ssh resources ---------------------------------
@pytest.mark.parametrize("resource", ["local", "workstation"])
def test_process_job_records_exit_code_and_output(registered, resource):
    ok = compute.execute("echo hello from $(id -un)", resource)
    bad = compute.execute("echo failing >&2; exit 4", resource)
    assert compute.wait(ok.id, timeout=60).state == "COMPLETED"
    assert compute.logs(ok.id).decode().startswith("hello from ")
    failed = compute.wait(bad.id, timeout=60)
    assert (failed.state, failed.exit_code) == ("FAILED", 4)
    assert compute.logs(bad.id) == b"failing\n"


@pytest.mark.parametrize("resource", ["local", "workstation"])
def test_process_job_cancel_and_walltime(registered, resource):
    long = compute.execute("sleep 60", resource)
    timed = compute.execute("sleep 60", resource, walltime="0:02")
    assert compute.cancel(long.id).state == "CANCELLED"
    done = compute.wait(timed.id, timeout=60)
    assert done.state == "TIMEOUT" and done.ended - done.started < 20


def test_process_job_usage_comes_from_the_runner(registered):
    job = compute.execute("python3 -c 'x = bytearray(50_000_000); sum(range(3_000_000))'", "workstation")
    compute.wait(job.id, timeout=60)
    row = next(r for r in compute.usage("workstation")["jobs"] if r["job"] == job.id)
    assert row["max_rss_mb"] >= 45 and row["cpu_s"] > 0 and row["elapsed_s"] > 0


@pytest.mark.cluster_alone
def test_pip_dependencies_go_into_a_cached_environment(registered, tmp_path):
    wheel = _tiny_wheel(tmp_path)
    conn = ssh.connect(compute.get("testcluster").endpoint)
    conn.sftp().put(str(wheel), f"/home/csuser/{wheel.name}")
    conn.run("rm -rf ~/.cybershuttle/envs")  # start cold: earlier runs may have built it
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text(f"project: {{name: x}}\nadditional_dependencies:\n  pip: [/home/csuser/{wheel.name}]\n")
    first = compute.execute("python -c 'import cstiny; print(cstiny.VALUE)'", "testcluster", setup_file=str(setup))
    assert compute.wait(first.id, timeout=240).state == "COMPLETED", compute.logs(first.id)
    assert "preparing the Python environment" in compute.logs(first.id).decode()
    assert compute.logs(first.id).decode().endswith("42\n")
    second = compute.execute("python -c 'import cstiny; print(cstiny.VALUE)'", "testcluster", setup_file=str(setup))
    assert compute.wait(second.id, timeout=120).state == "COMPLETED"
    assert compute.logs(second.id).decode() == "42\n"  # the cached environment: nothing prepared again
    assert first.env_hash == second.env_hash


def test_jobs_persist_for_a_new_shell(registered, cli):
    job = compute.execute("true", "local")
    compute.wait(job.id, timeout=60)
    listed = json.loads(cli("compute", "jobs", "--all", "--json").out)
    assert [j["id"] for j in listed] == [job.id]
    assert cli("compute", "status", job.id).out.startswith(f"{job.id} (true) on local: COMPLETED")


def test_cli_import_prints_each_check(resources_yml, cli):
    res = cli("compute", "import", str(resources_yml))
    assert res.code == 0, res.err
    assert "testcluster: registered" in res.out and "slurm" in res.out and "partition" in res.out
    listing = cli("compute", "list")
    assert "testcluster" in listing.out and "nodes idle" in listing.out


# -- helpers -------------------------------------------------------------------
def _escape(text: str) -> str:
    import re

    return re.escape(text)


def _tiny_wheel(tmp_path: Path) -> Path:
    """A real, installable wheel made by hand (no index needed to install it)."""
    wheel = tmp_path / "cstiny-1.0-py3-none-any.whl"
    files = {
        "cstiny/__init__.py": "VALUE = 42\n",
        "cstiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: cstiny\nVersion: 1.0\n",
        "cstiny-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "cstiny-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("cstiny-1.0.dist-info/RECORD", record)
    return wheel


@pytest.mark.waits
def test_slurm_walltime_kill_is_reported_as_timeout(registered):
    # Slurm counts time limits in whole minutes and checks them about every 30 s.
    job = compute.execute("echo started; sleep 300", "testcluster", walltime=1, partition="short")
    done = compute.wait(job.id, timeout=180)
    assert done.state == "TIMEOUT", done
    assert compute.logs(job.id).decode().startswith("started\n")


def test_cli_follow_streams_output_and_exits_with_the_jobs_code(registered, cli):
    res = cli("compute", "execute", "echo one; sleep 1; echo two; exit 5", "--resource", "testcluster", "--follow")
    assert res.code == 5, res.err
    assert res.out == "one\ntwo\n"
    assert "FAILED, exit code 5" in res.err


def test_cli_usage_prints_totals(registered, cli):
    job = compute.execute("true", "local")
    compute.wait(job.id, timeout=60)
    res = cli("compute", "usage", "--resource", "local")
    assert res.code == 0 and job.id in res.out and "total: 1 job(s)" in res.out
    assert json.loads(cli("compute", "usage", "--resource", "local", "--json").out)["totals"]["jobs"] == 1
