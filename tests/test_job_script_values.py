"""Values that reach job scripts cannot end an `#SBATCH` line; pip requirements cannot be pip options.

Against the loopback Slurm: each injection is refused before anything is submitted, which is
checked on the cluster itself (no job script there carries the test's marker) and in the catalog.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from cybershuttle import compute, ssh
from cybershuttle.compute import request, schedulers
from cybershuttle.errors import CybershuttleError, ScriptValueError

DATA = Path(__file__).parent / "data" / "cybershuttle_yml"
INJECTION = "x\n#SBATCH --uid=0"


def _scripts_with(marker: str) -> str:
    """Job scripts on the cluster (any job directory of the test user) that mention `marker`."""
    shell = ssh.connect(compute.get("testcluster").endpoint)
    return shell.run(f"grep -rl -- {marker} ~/.cybershuttle/jobs 2>/dev/null || true").stdout.strip()


def _assert_nothing_submitted(marker: str) -> None:
    assert compute.jobs(include_finished=True, refresh_states=False) == []
    assert _scripts_with(marker) == ""


@pytest.mark.parametrize("field, kwargs", [
    ("--account", {"account": INJECTION}),
    ("--qos", {"qos": "normal\r#SBATCH --uid=0"}),
    ("--partition", {"partition": "debug\n#SBATCH --uid=0"}),
    ("job name", {"name": INJECTION}),
    ("working directory", {"workdir": "/tmp\n#SBATCH --uid=0"}),
    ("working directory", {"workdir": "/tmp\x00x"}),
    ("--account", {"account": "acct\x7f"}),
])
def test_control_characters_in_header_values_are_refused_before_submission(registered, field, kwargs):
    marker = "cs-inject-" + secrets.token_hex(4)
    with pytest.raises(ScriptValueError) as info:
        compute.execute(f"echo {marker}", "testcluster", **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(field) and repr(next(iter(kwargs.values()))) in message
    assert "without control characters" in message
    _assert_nothing_submitted(marker)


def test_the_cli_refuses_an_injected_account_in_one_line(registered, cli):
    marker = "cs-inject-" + secrets.token_hex(4)
    res = cli("compute", "execute", f"echo {marker}", "--resource", "testcluster", "--account", INJECTION)
    assert res.code != 0
    assert res.err.strip().count("\n") == 0, res.err
    assert "--account 'x\\n#SBATCH --uid=0' contains the control character '\\n'" in res.err
    _assert_nothing_submitted(marker)


def test_the_slurm_scheduler_refuses_a_bad_header_value_it_is_handed(registered):
    """The last gate: a Submission built past the core's checks still cannot write a bad header."""
    marker = "cs-inject-" + secrets.token_hex(4)
    res = compute.get("testcluster")
    req = request.resolve(res)
    for sub in (schedulers.Submission("/tmp/cs-" + marker, "/tmp", "ok", f"echo {marker}", req, "", "0-1\n#x"),
                schedulers.Submission("/tmp/cs-" + marker, "/tmp\n#SBATCH --uid=0", "ok", f"echo {marker}", req, "")):
        with pytest.raises(ScriptValueError, match=r"^--(array|chdir) '.*' contains the control character"):
            schedulers.for_resource(res).submit(res.shell(), sub)
    _assert_nothing_submitted(marker)
    # A plain job still goes through the same path.
    job = compute.execute(f"echo {marker}", "testcluster", name="plain-ok", workdir="/tmp", walltime=2)
    assert compute.wait(job.id, timeout=120).state == "COMPLETED"
    assert compute.logs(job.id).decode() == f"{marker}\n"


@pytest.mark.parametrize("requirement", ["--index-url=http://127.0.0.1:9/simple", "-e .", "-r other.txt",
                                         " --extra-index-url http://127.0.0.1:9"])
def test_a_pip_option_in_a_setup_file_is_refused(tmp_path, cli, requirement):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nadditional_dependencies:\n  pip:\n    - numpy\n"
                     f"    - {json.dumps(requirement)}\n")
    res = cli("setup", "validate", str(setup))
    assert res.code != 0
    line = res.err.strip()
    assert "\n" not in line
    assert f"additional_dependencies.pip[1]: {requirement!r} is a pip option, not a requirement" in line
    assert str(setup) in line
    from cybershuttle import setupfile
    from cybershuttle.errors import SetupFileError

    with pytest.raises(SetupFileError, match="is a pip option"):
        setupfile.load(str(setup))


def test_a_pip_option_in_a_conda_style_environment_list_is_refused(tmp_path):
    from cybershuttle import setupfile
    from cybershuttle.errors import SetupFileError

    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nenvironment:\n  dependencies:\n    - python=3.11\n    - pip:\n"
                     "        - requests\n        - --trusted-host=evil\n")
    with pytest.raises(SetupFileError, match=r"environment\.dependencies\[1\]\.pip\[1\]: "
                                             r"'--trusted-host=evil' is a pip option"):
        setupfile.load(str(setup))


def test_legitimate_requirements_are_kept(tmp_path):
    from cybershuttle import setupfile

    reqs = ["pkg==1.0", "pkg[extra]>=2", "git+https://127.0.0.1/org/repo.git@main#subdirectory=python",
            "numpy; python_version >= '3.9'", "my-package~=1.2"]
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nadditional_dependencies:\n  pip: " + json.dumps(reqs) + "\n")
    assert setupfile.load(str(setup)).pip == reqs


@pytest.mark.parametrize("path", sorted(DATA.glob("*.yml")), ids=lambda p: p.name)
def test_every_real_setup_file_still_validates(cli, path):
    res = cli("setup", "validate", str(path))
    assert res.code == 0, res.err


def test_header_value_check_accepts_ordinary_values():
    from cybershuttle import names

    for value in ("debug", "my_account-1", "/home/csuser/work dir", "0-19%2", "gpu:2", "normal"):
        assert names.script_value(value, "--x") == value
    with pytest.raises(CybershuttleError):
        names.script_value("a\tb", "--x")
