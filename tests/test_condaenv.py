"""Conda environments from setup files (issue 17), on the loopback cluster, from its local channels.

The resource `condacluster` is the test cluster with the site setting
`conda: {channel_alias: CS_TEST_CONDA_CHANNELS}`: every channel name resolves to a directory
of `tests/cluster/conda_channel.py`'s channels (conda-forge, cstools), so nothing is fetched
from outside. The cluster has no conda: environments are built with py-rattler.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cybershuttle import compute, runtime
from cybershuttle.compute import condaenv
from cybershuttle.errors import CybershuttleError

#: what runtime.request adds to every runtime's environment (its hash includes them)
RUNTIME_PIP = runtime.kernel_requirements()

# The real setup files (shared/data's, copied unchanged into tests/data).
REAL_FILES = sorted((Path(__file__).parent / "data" / "cybershuttle_yml").glob("*.yml"))

TEST_FILE = (Path(__file__).parent / "data" / "conda_environment.yml").read_text()


@pytest.fixture
def conda_cluster(cluster, tmp_path):
    env = _cluster_env()
    path = tmp_path / "resources.yml"
    path.write_text("resources:\n" + cluster.resource_yaml(
        "condacluster", partition=cluster.partition,
        more=f"    conda:\n      channel_alias: {env['CS_TEST_CONDA_CHANNELS']}\n"))
    (result,) = compute.import_file(path)
    assert result.saved, result.to_dict()
    return env["CS_TEST_CONDA_CHANNELS"]


def _cluster_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(Path(__file__).parent / "cluster" / "cluster.sh"), "env"], capture_output=True,
                         text=True, check=True).stdout
    return dict(shlex.split(line)[1].split("=", 1) for line in out.splitlines() if line.startswith("export "))


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _hash_of(setup_file: str, extra_pip: tuple[str, ...] = ()) -> str:
    from cybershuttle import setupfile
    from cybershuttle.compute import environment

    res = compute.get("condacluster")
    setup = setupfile.load(setup_file)
    env = environment.check(res, res.shell(), environment.from_setup(res, setup, extra_pip), setup)
    return env.conda.env_hash


def _forget(env_hash: str) -> None:
    if any(e["hash"] == env_hash for e in condaenv.list_envs("condacluster")):
        condaenv.remove_env("condacluster", env_hash, force=True)


def _remote(command: str) -> str:
    return compute.get("condacluster").shell().run(command, timeout=60).stdout


@pytest.mark.timeout(900)  # jobs may queue behind others on the 2-CPU cluster
def test_a_runtime_starts_in_the_conda_environment_and_the_second_reuses_it(conda_cluster, tmp_path):
    setup = _write(tmp_path, "cybershuttle.yml", TEST_FILE)
    env_hash = _hash_of(setup, RUNTIME_PIP)
    _forget(env_hash)
    seen: list[str] = []
    runtime.request("condart1", "condacluster", cpus=1, setup_file=setup)
    try:
        runtime.wait("condart1", timeout=600, progress=seen.append)
        assert any("solving 5 conda package(s) with py-rattler" in s for s in seen), seen
        assert any(f"conda environment {env_hash} ready in" in s for s in seen), seen
        kc = runtime.client("condart1")
        out: list[str] = []
        kc.execute_interactive(
            "import csmath, csstats, iniconfig, subprocess, sys\n"
            "print(csmath.__version__, csstats.variance([1, 2, 3]), sys.prefix)\n"
            "print(subprocess.run(['cshello'], capture_output=True, text=True).stdout)",
            output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60)
        text = "".join(out)
        prefix = f"/home/csuser/.cybershuttle/envs/{env_hash}"
        assert f"0.1.0 0.6666666666666666 {prefix}" in text  # the pin held; csstats brought csmath
        assert f"cshello 1.0.0 from {prefix}" in text  # the tool ran, its prefix rewritten at install
        kc.stop_channels()

        seen2: list[str] = []
        runtime.request("condart2", "condacluster", cpus=1, setup_file=setup)
        runtime.wait("condart2", timeout=300, progress=seen2.append)
        assert not any("solving" in s for s in seen2), seen2
        assert compute.get_job(runtime.get("condart2").job_id).env_hash == env_hash
        listed = {e["hash"]: e for e in condaenv.list_envs("condacluster")}
        assert listed[env_hash]["kind"] == "conda" and listed[env_hash]["size_kb"] > 0
        assert listed[env_hash]["channels"] == ["conda-forge", "cstools"]
        with pytest.raises(CybershuttleError, match=f"environment {env_hash} is in use by job"):
            condaenv.remove_env("condacluster", env_hash)  # a running kernel's environment stays
    finally:
        for name in ("condart1", "condart2"):
            try:
                runtime.stop(name)
            except CybershuttleError:
                pass


@pytest.mark.timeout(900)  # jobs may queue behind others on the 2-CPU cluster
def test_two_jobs_asking_at_once_build_the_environment_once(conda_cluster, tmp_path):
    setup = _write(tmp_path, "cybershuttle.yml", TEST_FILE.replace("csmath=0.1.0", "csmath=0.2.0"))
    env_hash = _hash_of(setup)
    _forget(env_hash)
    jobs = [compute.execute("python -c 'import csmath; print(\"csmath\", csmath.__version__)'", "condacluster",
                            cpus=1, setup_file=setup) for _ in range(2)]
    logs = [compute.logs(compute.wait(j.id, timeout=600).id).decode() for j in jobs]
    for job in jobs:
        assert compute.status(job.id).state == "COMPLETED", logs
    assert all("csmath 0.2.0" in log for log in logs), logs
    builds = [log for log in logs if "solving" in log]
    assert len(builds) == 1, logs
    other = logs[1 - logs.index(builds[0])]
    assert re.search(r"waiting for another job|built by another job|is ready \(cached\)", other), other


@pytest.mark.parametrize("packages, message", [
    (["python=3.11", "nosuchpkg", "csmath"], "cannot build the conda environment: no channel has nosuchpkg "
                                             "(channels searched: conda-forge (file://"),
    (["csmath=0.1.0", "csmath>=0.2"], "the conda packages cannot be installed together (conda-forge (file://"),
])
def test_a_missing_or_unsatisfiable_package_fails_in_one_line_leaving_nothing(conda_cluster, tmp_path, packages,
                                                                             message):
    setup = _write(tmp_path, "cybershuttle.yml", "additional_dependencies:\n  conda:\n"
                   + "".join(f"    - '{p}'\n" for p in packages))
    env_hash = _hash_of(setup)
    job = compute.execute("echo should-not-run", "condacluster", setup_file=setup)
    job = compute.wait(job.id, timeout=300)
    log = compute.logs(job.id).decode()
    assert job.state == "FAILED" and job.exit_code == 98, log
    errors = [ln for ln in log.splitlines() if ln.startswith("cybershuttle: error: ")]
    assert len(errors) == 1 and message in errors[0], log
    assert "should-not-run" not in log
    left = _remote(f"ls -a ~/.cybershuttle/envs | grep -F {env_hash} || true")
    assert left.strip() == "", left  # no environment, no partial directory


def test_a_runtime_whose_environment_fails_says_why_in_one_line(conda_cluster, tmp_path):
    setup = _write(tmp_path, "cybershuttle.yml", "additional_dependencies:\n  conda: [python, nosuchpkg]\n")
    runtime.request("condabad", "condacluster", setup_file=setup)
    with pytest.raises(CybershuttleError) as info:
        runtime.wait("condabad", timeout=300)
    text = str(info.value)
    assert "no channel has nosuchpkg" in text and "conda-forge (file://" in text, text
    assert "\n" not in text


def test_a_channel_the_site_does_not_have_is_named(conda_cluster, tmp_path):
    setup = _write(tmp_path, "cybershuttle.yml", "additional_dependencies:\n  conda: [python, 'bioconda::hmmer']\n")
    with pytest.raises(condaenv.EnvironmentBuildError, match=r"bioconda \(file://\S+/bioconda\) cannot be reached"):
        condaenv.build("condacluster", setup)


def test_site_settings_override_the_files_channels():
    settings = condaenv.validate_settings({"channels": {"conda-forge": "file:///srv/mirror/cf/"},
                                           "channel_alias": "https://mirror.example/conda"}, "hpc")
    spec = condaenv.spec_for(["numpy=1.23.5", "pytorch::pytorch=2.1.2=cpu*", "kaeldai::bmtk", "modelcif==0.7"], [],
                             ("six",), "linux-64", settings)
    assert spec.channels == (("conda-forge", "file:///srv/mirror/cf"),
                             ("pytorch", "https://mirror.example/conda/pytorch"),
                             ("kaeldai", "https://mirror.example/conda/kaeldai"))
    assert spec.specs == ("numpy=1.23.5", "https://mirror.example/conda/pytorch::pytorch=2.1.2=cpu*",
                          "https://mirror.example/conda/kaeldai::bmtk", "modelcif==0.7", "python")
    # The hash follows what the environment holds: another channel URL is another environment.
    other = condaenv.spec_for(["numpy=1.23.5"], [], (), "linux-64", {})
    assert other.env_hash != condaenv.spec_for(["numpy=1.23.5"], [], (), "linux-64", settings).env_hash
    with pytest.raises(CybershuttleError, match="channels must map channel names to URLs"):
        condaenv.validate_settings({"channels": {"conda-forge": "not a url"}}, "hpc")


def test_cli_lists_and_removes_environments_with_sizes(conda_cluster, tmp_path, cli):
    setup = _write(tmp_path, "cybershuttle.yml", "additional_dependencies:\n  conda: [python, csstats]\n")
    built = condaenv.build("condacluster", setup)
    listed = cli("compute", "envs", "list", "--resource", "condacluster", "--json")
    assert listed.code == 0, listed.err
    entry = next(e for e in json.loads(listed.out) if e["hash"] == built["hash"])
    assert entry["kind"] == "conda" and entry["size_mb"] > 0 and "csstats" in entry["specs"]
    table = cli("compute", "envs", "list", "--resource", "condacluster")
    assert built["hash"] in table.out and "MB" in table.out
    removed = cli("compute", "envs", "rm", built["hash"], "--resource", "condacluster")
    assert removed.code == 0 and f"removed {built['hash']}" in removed.out, removed.err
    assert built["hash"] not in cli("compute", "envs", "list", "--resource", "condacluster").out
    again = cli("compute", "envs", "rm", built["hash"], "--resource", "condacluster")
    assert again.code == 1 and f"no environment {built['hash']} on condacluster" in again.err


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_every_real_setup_file_gets_an_environment_or_the_line_naming_what_the_channels_lack(conda_cluster, path):
    from cybershuttle import setupfile

    setup = setupfile.load(path)
    if not setup.conda:
        with pytest.raises(CybershuttleError, match="lists no conda packages: nothing to build"):
            condaenv.build("condacluster", str(path))
        return
    started = time.monotonic()
    try:
        built = condaenv.build("condacluster", str(path))
    except compute.environment.UnavailableError as exc:
        # The one file with a module: the loopback cluster has no such Lmod module, and modules load first.
        assert setup.modules and "not available on condacluster" in str(exc), exc
        return
    except condaenv.EnvironmentBuildError as exc:
        text = str(exc)
        assert "\n" not in text
        assert text.startswith("cannot build the conda environment: ") and "channels searched: conda-forge (file://" \
            in text, text
        named = [p for p in setup.conda if p.rpartition("::")[2].split("=")[0].split(">")[0].lower() in text]
        assert named, text
        return
    assert built["kind"] == "conda", built
    assert time.monotonic() - started < 600


@pytest.mark.timeout(900)  # jobs may queue behind others on the 2-CPU cluster
def test_modules_load_before_the_conda_environment_is_built_and_activated(conda_cluster, tmp_path):
    setup = _write(tmp_path, "cybershuttle.yml", "additional_dependencies:\n  modules: [hello/1.0]\n"
                   "  conda: [python, 'csmath>=0.2']\n")
    _forget(_hash_of(setup))
    job = compute.wait(compute.execute("hello; python -c 'import csmath, sys; print(csmath.__version__, sys.prefix)'",
                                       "condacluster", setup_file=setup).id, timeout=600)
    log = compute.logs(job.id).decode()
    assert job.state == "COMPLETED", log
    assert log.index("loading modules hello/1.0") < log.index("solving 2 conda package(s)")
    assert "hello 1.0" in log and re.search(r"0\.2\.0 /home/csuser/\.cybershuttle/envs/conda-[0-9a-f]{16}\n", log), log


def test_the_resources_own_conda_reports_missing_packages_in_one_line():
    from cybershuttle.compute import envbuilder

    # conda/mamba --json on a PackagesNotFoundError, as they print it
    out = json.dumps({"caused_by": "None", "channel_urls": ["file:///srv/conda/conda-forge/linux-64"],
                      "exception_name": "PackagesNotFoundError", "packages": ["nosuchpkg", "otherpkg"],
                      "message": "The following packages are not available from current channels: ..."})
    assert envbuilder._conda_error(out, "") == "no channel has nosuchpkg, otherpkg"
    assert envbuilder._conda_error("", "error    libmamba Could not solve for environment specs\n  nothing provides x\n") \
        == "nothing provides x"


@pytest.mark.timeout(900)
def test_the_sidebars_event_stream_carries_a_starting_runtimes_environment_progress(conda_cluster, tmp_path):
    from cybershuttle_server.handlers import events

    setup = _write(tmp_path, "cybershuttle.yml", TEST_FILE.replace("csmath=0.1.0", "csmath") + "    - pip: [tomli]\n")
    _forget(_hash_of(setup, RUNTIME_PIP))
    runtime.request("condaprog", "condacluster", cpus=1, setup_file=setup)
    seen = []
    try:
        deadline = time.monotonic() + 600  # the job may queue behind others on the 2-CPU cluster
        while time.monotonic() < deadline and not any("ready in" in line for line in seen):
            event = events.poll_states()[("runtime", "condaprog")]
            assert event["state"] == "REQUESTED", event
            if event.get("progress") and event["progress"] not in seen:
                seen.append(event["progress"])
            time.sleep(0.3)
        assert any(re.search(r"solving|linked|pip: |installing", line) for line in seen), seen
    finally:
        runtime.stop("condaprog")
