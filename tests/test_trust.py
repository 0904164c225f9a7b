"""Nobody runs another person's code without saying so (issue 16, point 1).

alice (csuser) publishes entries that carry code; bob (csother) uses them. Both are real OS users
running the site install through runuser against a fresh PostgreSQL site catalog (tests/siteusers.py).
What bob's code ran is seen in a shared log each command appends its runner's login name to.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pexpect
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rest_api import SERVER_CONFIG, call
from siteusers import Site, site, site_env  # noqa: F401  (fixture)
from test_site_catalog import _keys, _notebook, _resources

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


# -- helpers -------------------------------------------------------------------------------
def _shared(site: Site, name: str, text: str, mode: int = 0o644) -> Path:
    path = site.base / "shared" / name
    path.parent.mkdir(exist_ok=True, mode=0o755)
    path.write_text(text)
    path.chmod(mode)
    return path


def _log(site: Site) -> Path:
    """A file both users' commands append their login name to: who ran the code."""
    return _shared(site, "ran.log", "", mode=0o666)


def _ran(log: Path) -> list[str]:
    return log.read_text().split()


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _site_config(site: Site, owners: list[str]) -> Path:
    """A site configuration only root can write, listing `owners` as trusted."""
    etc = site.base / "etc"
    etc.mkdir(exist_ok=True, mode=0o755)
    path = etc / "site.toml"
    path.write_text("[trust]\nowners = [" + ", ".join(json.dumps(o) for o in owners) + "]\n")
    path.chmod(0o644)
    return path


def _dataset(site: Site, log: Path, name: str = "nums") -> str:
    data = _shared(site, "numbers.txt", "1\n2\n")
    command = f"id -un >> {log}; cat > numbers.txt"
    made = site.csuser.cli("dataset", "register", "--name", name, "--location", str(data),
                           "--after-download-command", command, "--public")
    assert made.code == 0, made.err
    return command


# -- datasets --------------------------------------------------------------------------------
def test_another_users_after_download_command_runs_only_once_trusted_and_asks_again_when_changed(site):
    alice, bob = site.csuser, site.csother
    log = _log(site)
    command = _dataset(site, log)
    own = alice.cli("dataset", "load", "nums")
    assert own.code == 0, own.err  # her own command: nothing to ask
    assert _ran(log) == ["csuser"]

    refused = bob.cli("dataset", "load", "nums")
    assert refused.code == 1 and _one_line(refused.err), refused.err
    assert "dataset 'nums' of csuser: you have not trusted its after-download command" in refused.err
    assert command in refused.err and "`cybershuttle trust add dataset nums`" in refused.err
    assert _ran(log) == ["csuser"]  # nothing of it ran as bob

    shown = bob.cli("trust", "show", "dataset", "nums")
    assert shown.code == 0, shown.err
    assert "dataset 'nums' of csuser runs this after-download command as you" in shown.out
    assert command in shown.out and "status: untrusted" in shown.out

    trusted = bob.cli("dataset", "load", "nums", "--trust")
    assert trusted.code == 0, trusted.err
    assert "trusting: dataset 'nums' of csuser" in trusted.err and command in trusted.err  # shown as it is trusted
    assert _ran(log) == ["csuser", "csother"]
    assert (Path(trusted.out.strip()) / "numbers.txt").read_text() == "1\n2\n"
    again = bob.cli("dataset", "load", "nums")
    assert again.code == 0, again.err  # pinned: no flag needed any more
    pins = json.loads(bob.cli("trust", "list", "--json").out)
    assert [(p["kind"], p["name"], p["owner"], p["code"]) for p in pins] == [("dataset", "nums", "csuser", command)]
    assert json.loads(bob.cli("trust", "show", "dataset", "nums", "--json").out)["status"] == "trusted"

    # alice changes her command: bob's pin no longer matches, he is asked again
    changed = f"id -un >> {log}; id -un >> {log}; cat > numbers.txt"
    update = alice.python("from cybershuttle import registry\n"
                          "registry.catalog().update('dataset', 'nums', "
                          f"lambda d: d.update(after_download_command={changed!r}))\n")
    assert update.code == 0, update.err
    refused = bob.cli("dataset", "load", "nums")
    assert refused.code == 1 and _one_line(refused.err), refused.err
    assert "dataset 'nums' of csuser: its after-download command changed since you trusted it" in refused.err
    assert changed in refused.err and "trust it again with `cybershuttle trust add dataset nums`" in refused.err
    assert _ran(log) == ["csuser", "csother"]
    added = bob.cli("trust", "add", "dataset", "nums")
    assert added.code == 0 and changed in added.out and "trusted dataset 'nums' of csuser" in added.out, added.err
    assert bob.cli("dataset", "load", "nums").code == 0
    assert _ran(log) == ["csuser", "csother", "csother", "csother"]

    removed = bob.cli("trust", "rm", "dataset", "nums")
    assert removed.code == 0 and "no longer trusting dataset 'nums' of csuser" in removed.out
    assert bob.cli("trust", "list", "--json").out.strip() == "[]"
    refused = bob.cli("dataset", "load", "nums")
    assert refused.code == 1 and "you have not trusted" in refused.err


def test_trust_in_one_owners_entry_does_not_pass_to_another_owner_of_the_same_name(site, cli):
    log = _log(site)
    command = _dataset(site, log)
    bob = site.csother
    assert bob.cli("trust", "add", "dataset", "nums").code == 0
    assert site.csuser.cli("dataset", "rm", "nums").code == 0
    # root, a third user of the site catalog, publishes the very same command under the same name
    data = site.base / "shared" / "numbers.txt"
    made = cli("dataset", "register", "--name", "nums", "--location", str(data), "--after-download-command", command,
               "--public", env={"CYBERSHUTTLE_SITE_CATALOG": site.url})
    assert made.code == 0, made.err
    refused = bob.cli("dataset", "load", "nums")
    assert refused.code == 1 and _one_line(refused.err), refused.err
    assert ("dataset 'nums' of root: you trusted it when it was csuser's, not its after-download command now"
            in refused.err) and "`cybershuttle trust add dataset nums`" in refused.err
    assert _ran(log) == []


def test_the_python_api_without_a_grant_refuses_what_a_rest_call_or_kernel_would_run(site):
    log = _log(site)
    _dataset(site, log)
    api = site.csother.python(
        "from cybershuttle import dataset\n"
        "from cybershuttle.trust import UntrustedError\n"
        "try:\n    dataset.load('nums')\nexcept UntrustedError as e:\n    print(e.http_status, e)\n")
    assert api.code == 0, api.err
    assert api.out.startswith("403 dataset 'nums' of csuser: you have not trusted its after-download command")
    assert "cybershuttle trust add dataset nums" in api.out and _ran(log) == []


def test_a_person_at_a_terminal_is_shown_the_code_and_asked(site):
    log = _log(site)
    command = _dataset(site, log)
    bob = site.csother

    def load(answer: str) -> tuple[int, str]:
        child = pexpect.spawn("runuser", ["-u", "csother", "--", *bob.env(), bob.cli_path, "dataset", "load", "nums"],
                              cwd=str(bob.cs_home), encoding="utf-8", timeout=120)
        child.expect(r"Trust it and run it\? \[y/N\] ")
        seen = child.before
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus, seen + child.before

    code, text = load("n")
    assert code == 1 and "dataset 'nums' of csuser runs this after-download command as you" in text
    assert command in text and "you did not trust the after-download command of dataset 'nums' of csuser" in text
    assert _ran(log) == []
    code, text = load("y")
    assert code == 0, text
    assert _ran(log) == ["csother"]
    assert [p["name"] for p in json.loads(bob.cli("trust", "list", "--json").out)] == ["nums"]


# -- the site's trusted owners ------------------------------------------------------------------
def test_owners_a_root_only_site_configuration_lists_need_no_trust(site):
    log = _log(site)
    _dataset(site, log)
    config = _site_config(site, ["csuser"])
    ok = site.csother.cli("dataset", "load", "nums", env={"CYBERSHUTTLE_SITE_CONFIG": str(config)})
    assert ok.code == 0, ok.err
    assert _ran(log) == ["csother"] and site.csother.cli("trust", "list", "--json").out.strip() == "[]"

    # A configuration bob wrote himself, or one others than root can change, counts for nothing.
    forged = site.base / "csother" / "site.toml"
    assert site.csother.run(["sh", "-c", f"printf '[trust]\\nowners = [\"csuser\"]\\n' > {forged}"]).code == 0
    for path, why in ((forged, f"it belongs to uid {_uid('csother')}, not root"),
                      (_group_writable(config), "it can be written by others than root (mode 0664)")):
        r = site.csother.cli("dataset", "load", "nums", env={"CYBERSHUTTLE_SITE_CONFIG": str(path)})
        assert r.code == 1 and _one_line(r.err), r.err
        assert f"the site configuration {path} is not read: {why}" in r.err
    assert _ran(log) == ["csother"]


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _group_writable(path: Path) -> Path:
    path.chmod(0o664)
    return path


# -- models ----------------------------------------------------------------------------------
def test_another_users_command_and_entry_point_models_run_only_once_trusted(site):
    alice, bob = site.csuser, site.csother
    log = _log(site)
    module = _shared(site, "labmodels.py",
                     "import getpass\n"
                     "def make():\n"
                     f"    open({str(log)!r}, 'a').write(getpass.getuser() + '\\n')\n"
                     "    return lambda batch: [len(str(x)) for x in batch]\n")
    env = {"PYTHONPATH": str(module.parent)}
    command = f"id -un >> {log}; cat"
    for name, kind, location in (("echo", "computational", command), ("lengths", "ai", "labmodels:make")):
        made = alice.cli("model", "register", "--name", name, "--kind", kind, "--location", location, "--public")
        assert made.code == 0, made.err
    inputs = _shared(site, "inputs.txt", "abc\nde\n")

    for name, what, code in (("echo", "command", command), ("lengths", "entry point", "labmodels:make")):
        refused = bob.cli("model", "run", name, "--input", str(inputs), "--json", env=env)
        assert refused.code == 1 and _one_line(refused.err), refused.err
        assert f"model '{name}' of csuser: you have not trusted its {what} ({code})" in refused.err
        assert f"`cybershuttle trust add model {name}`" in refused.err
    api = bob.python("from cybershuttle import model\n"
                     "try:\n    model.load('lengths')\nexcept Exception as e:\n    print(type(e).__name__, e)\n",
                     env=env)
    assert api.out.startswith("UntrustedError model 'lengths' of csuser"), api.out + api.err
    assert _ran(log) == []

    trusted = bob.cli("model", "run", "echo", "--input", str(inputs), "--json", "--trust", env=env)
    assert trusted.code == 0, trusted.err
    assert _ran(log) == ["csother"]
    added = bob.cli("trust", "add", "model", "lengths")
    assert added.code == 0 and "runs this entry point as you" in added.out and "labmodels:make" in added.out
    ran = bob.cli("model", "run", "lengths", "--input", str(inputs), "--json", env=env)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["outputs"] == [3, 2]  # len("abc"), len("de"): the factory's function ran
    assert _ran(log) == ["csother", "csother"]


def test_another_users_pickled_model_stays_refused_even_when_trusted(site, tmp_path):
    import torch  # a test dependency (pyproject [test]): the pickled model is a real one
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(8, 3)), str(pickled))
    pickled = site.shared_copy(pickled)
    made = site.csuser.cli("model", "register", "--name", "lab-pickle", "--kind", "ai", "--location", str(pickled),
                           "--public")
    assert made.code == 0, made.err
    env = {"PYTHONPATH": site_env()["CS_CLUSTER_DIR"] + "/apps/pytorch/2.13/lib",
           "CYBERSHUTTLE_SITE_CONFIG": str(_site_config(site, ["csuser"]))}
    bob = site.csother.python(
        "from cybershuttle import model, trust\n"
        "with trust.granting(trust=True):\n"
        "    try:\n        model.load('lab-pickle')\n"
        "    except Exception as e:\n        print(type(e).__name__, e)\n", env=env)
    assert bob.code == 0, bob.err
    assert "model 'lab-pickle' is a pickled PyTorch module registered by 'csuser'" in bob.out
    refused = site.csother.cli("trust", "add", "model", "lab-pickle")
    assert refused.code == 2 and "carries no code of its own" in refused.err


# -- templates -------------------------------------------------------------------------------
def _template(site: Site, log: Path) -> Path:
    nb = new_notebook(cells=[new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell(f"import getpass\nopen({str(log)!r}, 'a').write(getpass.getuser() + '\\n')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = site.base / "shared" / "tune.ipynb"
    nbformat.write(nb, path)
    path.chmod(0o644)
    made = site.csuser.cli("template", "add", "--name", "tune", "--notebook", str(path), "--public")
    assert made.code == 0, made.err
    return path


def test_another_users_template_notebook_runs_only_once_trusted_and_sweeps_are_refused_before_submitting(site):
    log = _log(site)
    _template(site, log)
    bob = site.csother
    refused = bob.cli("template", "run", "--name", "tune")
    assert refused.code == 1 and _one_line(refused.err), refused.err
    assert "template 'tune' of csuser: you have not trusted its notebook;" in refused.err
    assert "`cybershuttle trust add template tune`" in refused.err
    sweep = _shared(site, "sweep.yml", "grid:\n  alpha: [1, 2]\n")
    refused = bob.cli("template", "run", "--name", "tune", "--sweep", str(sweep), "--resource", "anywhere")
    assert refused.code == 1 and "template 'tune' of csuser: you have not trusted its notebook" in refused.err
    assert bob.cli("template", "runs", "tune", "--json").out.strip() == "[]"  # nothing recorded, nothing submitted

    shown = bob.cli("trust", "show", "template", "tune")
    assert "    # cell 2\n    import getpass" in shown.out and "runs this notebook as you" in shown.out
    ran = bob.cli("template", "run", "--name", "tune", "--trust")
    assert ran.code == 0, ran.err
    assert _ran(log) == ["csother"]

    # alice replaces the notebook: asked again
    nb = site.base / "shared" / "tune2.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("alpha = 2", metadata={"tags": ["parameters"]}),
                                       new_code_cell("print('new')")]), nb)
    nb.chmod(0o644)
    assert site.csuser.cli("template", "add", "--name", "tune", "--notebook", str(nb), "--public",
                           "--replace").code == 0
    refused = bob.cli("template", "run", "--name", "tune")
    assert refused.code == 1 and "its notebook changed since you trusted it" in refused.err


async def test_a_template_run_through_rest_is_refused_in_one_line_saying_what_to_run(site, jp_fetch, monkeypatch):
    # The server runs as root, a third real user of the site catalog: alice's notebook is not its own.
    log = _log(site)
    _template(site, log)
    monkeypatch.setenv("CYBERSHUTTLE_SITE_CATALOG", site.url)
    code, body = await call(jp_fetch, "templates/tune/runs", "POST", json_body={"wait": True})
    assert code == 403, body
    assert body["error"].startswith("template 'tune' of csuser: you have not trusted its notebook;")
    assert "`cybershuttle trust add template tune`" in body["error"] and "\n" not in body["error"]
    code, body = await call(jp_fetch, "templates/tune/runs")
    assert code == 200 and body["items"] == []  # refused before anything was recorded or run
    assert _ran(log) == []


# -- public resources ------------------------------------------------------------------------
def _resources_file(site: Site, key: Path, python: str | None = None, kind: str = "ssh") -> Path:
    """csuser's resources file, with a known_hosts file csother can read too (a public resource's)."""
    known = site.base / "shared" / "known_hosts"
    known.parent.mkdir(exist_ok=True, mode=0o755)
    shutil.copy(site_env()["CS_TEST_KNOWN_HOSTS"], known)
    known.chmod(0o644)
    return _resources(site, "csuser", key, known_hosts=known, python=python, kind=kind)


def _fingerprint(known: str, host: str, port: str) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-F", f"[{host}]:{port}", "-f", known], capture_output=True,
                         text=True, check=True).stdout
    return next(line.split()[2] for line in out.splitlines() if line and not line.startswith("#"))


def test_another_users_resource_is_reached_only_once_its_interpreter_host_and_host_key_are_trusted(site):
    keys = _keys(site)
    alice, bob = site.csuser, site.csother
    made = alice.cli("compute", "import", str(_resources_file(site, keys["csuser"])), "--public")
    assert made.code == 0, made.err + made.out
    assert bob.cli("compute", "configure", "shared-hpc", "--user", "csother", "--key", str(keys["csother"])).code == 0

    refused = bob.cli("module", "avail", "--resource", "shared-hpc", "--json")
    assert refused.code == 1 and _one_line(refused.err), refused.err
    assert ("compute 'shared-hpc' of csuser: you have not trusted its interpreter, host and host key;"
            in refused.err) and "`cybershuttle trust add compute shared-hpc`" in refused.err
    env = site_env()
    shown = bob.cli("trust", "show", "compute", "shared-hpc", "--json")
    code = json.loads(shown.out)["code"]
    assert f"host: {env['CS_TEST_HOST']} port {env['CS_TEST_PORT']}" in code
    assert _fingerprint(env["CS_TEST_KNOWN_HOSTS"], env["CS_TEST_HOST"], env["CS_TEST_PORT"]) in code
    assert "python: /" in code

    ran = bob.cli("module", "avail", "--resource", "shared-hpc", "--json", "--trust")
    assert ran.code == 0, ran.err
    assert "trusting: compute 'shared-hpc' of csuser" in ran.err and json.loads(ran.out)
    assert bob.cli("module", "avail", "--resource", "shared-hpc", "--json").code == 0  # pinned

    # alice points the resource at another interpreter: bob is asked again before anything starts there
    again = alice.cli("compute", "import", str(_resources_file(site, keys["csuser"], python="/opt/lab/bin/python3")),
                      "--public")
    assert again.code == 0, again.err + again.out
    refused = bob.cli("module", "avail", "--resource", "shared-hpc", "--json")
    assert refused.code == 1 and "its interpreter, host and host key changed since you trusted it" in refused.err
    assert alice.cli("module", "avail", "--resource", "shared-hpc", "--json").code == 0  # her own


def test_the_provisioner_starts_no_kernel_on_another_users_untrusted_resource(site):
    keys = _keys(site)
    made = site.csuser.cli("compute", "import", str(_resources_file(site, keys["csuser"])), "--public")
    assert made.code == 0, made.err + made.out
    bob = site.csother
    assert bob.cli("compute", "configure", "shared-hpc", "--user", "csother", "--key", str(keys["csother"])).code == 0
    kernels = bob.cs_home / "jupyter"
    started = bob.python(
        "from jupyter_client.manager import KernelManager\n"
        "from cybershuttle.runtime import provisioner\n"
        "provisioner.install_kernelspec('shared-hpc', name='cs-shared', cpus=1)\n"
        "km = KernelManager(kernel_name='cs-shared')\n"
        "try:\n    km.start_kernel()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
        "else:\n    print('STARTED')\n    km.shutdown_kernel(now=True)\n", env={"JUPYTER_DATA_DIR": str(kernels)})
    assert started.code == 0, started.err
    assert started.out.startswith("UntrustedError compute 'shared-hpc' of csuser: you have not trusted its "
                                  "interpreter, host and host key;"), started.out + started.err
    assert "`cybershuttle trust add compute shared-hpc`" in started.out
    assert json.loads(bob.cli("runtime", "list", "--json").out) == []  # nothing half-made


def test_another_users_public_slurm_resource_puts_ones_jobs_and_template_runs_under_ones_own_home(site):
    # alice registers (and so probes) the resource: its recorded home is hers, 0700, not bob's to write in.
    keys = _keys(site)
    alice, bob = site.csuser, site.csother
    made = alice.cli("compute", "import", str(_resources_file(site, keys["csuser"], kind="slurm")), "--public")
    assert made.code == 0, made.err + made.out
    # partition short: a 30-minute limit on anything a failed run leaves behind
    assert bob.cli("compute", "configure", "shared-hpc", "--user", "csother", "--key", str(keys["csother"]),
                   "--partition", "short").code == 0
    nb = _notebook(site, "mine.ipynb", 3)
    assert bob.cli("template", "add", "--name", "mine", "--notebook", str(nb)).code == 0
    try:
        ran = bob.cli("compute", "execute", "pwd; id -un", "--resource", "shared-hpc", "--walltime", "2", "--wait",
                      "--json", "--trust")
        assert ran.code == 0, ran.err
        job = json.loads(ran.out)
        assert job["workdir"] == "/home/csother" and job["jobdir"].startswith("/home/csother/.cybershuttle/jobs/")
        assert bob.cli("compute", "logs", job["id"]).out.split() == ["/home/csother", "csother"]
        run = bob.cli("template", "run", "--name", "mine", "--resource", "shared-hpc", "--json",
                      env={"JUPYTER_DATA_DIR": str(bob.cs_home / "jupyter")})
        [record] = json.loads(run.out)
        assert run.code == 0 and record["status"] == "COMPLETED", (record, run.err)
        assert record["remote_dir"].startswith("/home/csother/.cybershuttle/template-runs/")
    finally:
        for left in json.loads(bob.cli("compute", "jobs", "--json").out or "[]"):
            bob.cli("compute", "cancel", left["id"])
    shown = {u.name: json.loads(u.cli("compute", "show", "shared-hpc", "--json").out)["facts"] for u in (alice, bob)}
    assert {name: facts["home"] for name, facts in shown.items()} == {"csuser": "/home/csuser",
                                                                      "csother": "/home/csother"}
    assert shown["csother"]["free_disk_mb"] > 0  # measured in his own home, not taken from hers


# -- bad input -------------------------------------------------------------------------------
def test_trusting_an_unknown_kind_or_entry_is_one_line(cli, cs_home):
    r = cli("trust", "add", "storage", "x")
    assert r.code == 2 and _one_line(r.err) and "the kinds are dataset, model, template, compute" in r.err
    r = cli("trust", "add", "dataset", "missing")
    assert r.code == 1 and _one_line(r.err) and "no dataset named 'missing'" in r.err
    r = cli("trust", "rm", "dataset", "missing")
    assert r.code == 1 and "you have not trusted dataset 'missing'" in r.err
    assert cli("trust", "list").out.strip() == "(you trust nobody's code yet)"
