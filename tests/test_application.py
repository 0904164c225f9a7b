"""Applications and modules against the test cluster's real Lmod (hello/1.0, hello/2.0,
gcc/12 and intel/2024 in one family), locally and over the loopback SSH."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from cybershuttle import application, runtime, setupfile
from cybershuttle.application import catalog, conda, conflicts, envmodules, lmod, modules, setup_edit
from cybershuttle.errors import AlreadyExistsError, CybershuttleError, NotFoundError, SetupFileError
from siteusers import site  # noqa: F401  (fixture)

DATA = Path(__file__).parent / "data" / "cybershuttle_yml"


def _by_name(apps):
    return {(a.source, a.name): a for a in apps}


# -- the catalog from Lmod ----------------------------------------------------------------
def _check_lmod_catalog(apps):
    found = _by_name(apps)
    hello = found[("lmod", "hello")]
    assert [v.full for v in hello.versions] == ["hello/1.0", "hello/2.0"]
    assert hello.default_version.version == "2.0"  # the .modulerc marks 2.0 as default
    assert "greeting" in hello.description
    assert found[("lmod", "gcc")].versions[0].family == "compiler"
    assert found[("lmod", "intel")].versions[0].family == "compiler"
    assert found[("lmod", "intel")].versions[0].path.endswith("/intel/2024.lua")


def test_lmod_catalog_on_this_machine_is_cached_until_refresh():
    apps = application.list_all()
    _check_lmod_catalog(apps)
    assert any(a.source == "pip" and a.name.lower() == "pyyaml" for a in apps)  # this Python's packages
    first = application.gathered_at()
    assert application.list_all() == apps and application.gathered_at() == first  # from the cache
    time.sleep(0.01)
    application.list_all(refresh=True)
    assert application.gathered_at() > first


def test_lmod_catalog_of_the_slurm_cluster_over_ssh(registered, cli):
    apps = application.list_all("testcluster")
    _check_lmod_catalog(apps)
    # the packages of /usr/bin/python3 there (read through importlib.metadata: no uv on that host)
    assert any(a.source == "pip" for a in apps)
    res = cli("application", "list", "--resource", "testcluster", "--kind", "module", "--json")
    assert res.code == 0, res.err
    rows = {r["name"]: r for r in json.loads(res.out)}
    assert rows["hello"]["default"] == "2.0" and rows["hello"]["kind"] == "module"
    shown = cli("application", "show", "intel", "--resource", "testcluster")
    assert shown.code == 0 and "intel/2024 (default): family compiler" in shown.out
    found = cli("application", "search", "compiler", "--resource", "testcluster", "--json")
    assert sorted(r["name"] for r in json.loads(found.out) if r["kind"] == "module") == ["gcc", "intel"]


def test_a_conflict_is_found_in_the_real_catalog():
    apps = application.list_all()
    family = conflicts.module_conflicts("intel/2024", ["gcc/12", "hello/2.0"], apps)
    assert len(family) == 1 and family[0].second == "gcc/12" and "family 'compiler'" in family[0].reason
    versions = conflicts.module_conflicts("hello/1.0", ["hello/2.0"], apps)
    assert len(versions) == 1 and "two versions of module hello" in versions[0].reason
    assert conflicts.module_conflicts("hello/2.0", ["gcc/12"], apps) == []
    assert conflicts.module_conflicts("hello/2.0", ["hello"], apps) == []  # "hello" is its default, 2.0
    assert conflicts.module_conflicts("hello/1.0", ["hello"], apps)[0].second == "hello"


def test_a_modulefiles_conflict_and_depends_on_lines_reach_the_catalog(tmp_path, monkeypatch):
    tree = tmp_path / "modulefiles"
    (tree / "tool").mkdir(parents=True)
    (tree / "tool" / "1.0.lua").write_text('whatis("Description: a tool")\nconflict("hello")\ndepends_on("gcc/12")\n')
    login_path = subprocess.run(["bash", "-lc", "echo $MODULEPATH"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setenv("MODULEPATH", f"{tree}:{login_path}")  # login shells keep a MODULEPATH they inherit
    tool = application.get("tool")
    assert tool.versions[0].conflicts == ["hello"] and tool.versions[0].depends == ["gcc/12"]
    setup = tmp_path / "cybershuttle.yml"
    application.load("hello", setup_file=str(setup))
    with pytest.raises(conflicts.ConflictError, match="tool/1.0 conflicts with hello/2.0: a modulefile declares"):
        application.load("tool/1.0", setup_file=str(setup))


def test_terse_fallback_when_the_spider_json_is_broken_and_never_an_empty_list(registered):
    shell = catalog.resource_of("workstation").shell()
    terse = lambda: shell.run(lmod.TERSE, login_shell=True, check=False).stdout  # noqa: E731
    apps = lmod.from_sections({"lmod-json": "Lmod Warning: something new {not json"}, "workstation", terse)
    assert {v.full for a in apps for v in a.versions} >= {"hello/1.0", "hello/2.0", "gcc/12", "intel/2024"}
    with pytest.raises(lmod.LmodOutputError, match="refusing to show an empty catalog.*something new"):
        lmod.from_sections({"lmod-json": "something new {not json"}, "workstation",
                           lambda: "a listing in a format nobody knows yet\n")
    assert lmod.from_sections({}, "x") is None  # no Lmod at all is not an error
    empty_spider = lmod.from_sections({"lmod-json": "[]"}, "workstation", terse)  # checked against the listing
    assert {v.full for a in empty_spider for v in a.versions} >= {"hello/1.0", "intel/2024"}


def test_modulefile_conflict_lines_are_read():
    found = lmod.parse_directives('/m/a/1.lua:conflict("b", "c")\n/m/a/1.lua:depends_on("d/2")\n'
                                  "/m/tcl/1:conflict e\n/m/tcl/1:module load f/3\n")
    assert found["/m/a/1.lua"] == {"conflicts": ["b", "c"], "depends": ["d/2"]}
    assert found["/m/tcl/1"] == {"conflicts": ["e"], "depends": ["f/3"]}


def test_environment_modules_output_is_read():
    # Environment Modules cannot be installed beside the cluster's Lmod (it would take over every
    # login shell here), so these are outputs recorded from its 5.2.0 modulecmd.tcl over a Tcl tree
    # holding hello/1.0, hello/2.0 (default via .version) and gcc/12 (with `conflict intel`).
    recorded = Path(__file__).parent / "data" / "envmodules"
    directives = "/tmp/tclmf/gcc/12:conflict intel\n"
    apps = envmodules.from_sections({"envmodules-json": (recorded / "avail-5.2.0.json").read_text(),
                                     "envmodules-directives": directives}, "site")
    found = {a.name: a for a in apps}
    assert found["hello"].source == "envmodules" and found["hello"].default_version.full == "hello/2.0"
    assert found["gcc"].versions[0].conflicts == ["intel"]
    terse = (recorded / "terse-avail-5.2.0.txt").read_text()
    apps = envmodules.from_sections({"envmodules-json": "avail: unsupported option '--json'"}, "site", lambda: terse)
    assert {v.full for a in apps for v in a.versions} == {"gcc/12", "hello/1.0", "hello/2.0"}
    assert {a.name: a for a in apps}["hello"].default_version.full == "hello/2.0"


def test_conda_environment_list_is_read():
    # No conda can be installed here: this is the `conda env list --json` shape conda, mamba and
    # micromamba document; the conda source is untested against a real conda.
    text = json.dumps({"envs": ["/opt/conda", "/opt/conda/envs/md", "/home/u/.conda/envs/ml"]})
    apps = conda.from_sections({"conda-json": text}, "site")
    assert [(a.name, a.kind, a.versions[0].path) for a in apps] == [
        ("base", "conda", "/opt/conda"), ("md", "conda", "/opt/conda/envs/md"), ("ml", "conda", "/home/u/.conda/envs/ml")]


def test_pip_requirements_that_cannot_both_hold():
    assert conflicts.pip_conflicts("numpy<2", ["numpy>=2.1", "scipy"])[0].second == "numpy>=2.1"
    assert conflicts.pip_conflicts("NumPy==1.26.4", ["numpy~=1.26"]) == []
    assert conflicts.pip_conflicts("torch>=2.0,<2.1", ["torch>2.0.0"]) == []
    assert conflicts.pip_conflicts("x==1.*", ["x>=2"]) and conflicts.pip_conflicts("x!=1.0", ["x==1.0"])
    assert conflicts.pip_conflicts("git+https://example.org/x", ["x==1"]) == []


# -- registered executables -----------------------------------------------------------------
def test_registered_executables_private_and_public(cli, monkeypatch, site):
    # root (this process) and csother: two real OS users sharing the PostgreSQL site catalog
    monkeypatch.setenv("CYBERSHUTTLE_SITE_CATALOG", site.url)
    res = cli("application", "register", "--name", "mytool", "--command", "~/bin/mytool --fast",
              "--description", "my own tool")
    assert res.code == 0 and "registered mytool (private)" in res.out
    assert cli("application", "register", "--name", "shared", "--command", "shared-tool", "--public").code == 0
    listed = {a.name: a for a in application.list_all() if a.kind == "executable"}
    assert listed["mytool"].command == "~/bin/mytool --fast" and listed["mytool"].scope == "private"
    assert application.get("mytool").description == "my own tool"
    with pytest.raises(AlreadyExistsError):
        application.register("mytool", "other")
    with pytest.raises(CybershuttleError, match="nothing needs loading"):
        application.load("mytool", setup_file="cybershuttle.yml")
    # another user sees the public one only
    bob = site.csother.python(
        "from cybershuttle import application\n"
        "from cybershuttle.errors import CybershuttleError\n"
        "print(sorted(a.name for a in application.registered()))\n"
        "try:\n    application.unregister('shared')\nexcept CybershuttleError as e:\n    print('refused:', e)\n")
    assert bob.code == 0, bob.err
    assert bob.out.splitlines()[0] == "['shared']"
    assert "only its owner" in bob.out.splitlines()[1]


# -- application load and the setup file ------------------------------------------------------
def test_load_adds_to_a_real_setup_file_and_keeps_everything_else(tmp_path, cli):
    original = (DATA / "16_benjamin0303__DEM_Elastic_2D_PINN.yml").read_text()
    path = tmp_path / "cybershuttle.yml"
    path.write_text(original)
    result = application.load("hello", setup_file=str(path))
    assert result.item == "hello/2.0" and result.setup_section == "additional_dependencies.modules"
    assert result.comments_kept
    res = cli("application", "load", "numpy<3", "--setup_file", str(path))
    assert res.code == 0 and "added numpy<3 to additional_dependencies.pip" in res.out
    new = path.read_text()
    # the source comment, spacing, trailing blanks and every other line are kept as they were
    old_lines, new_lines = original.splitlines(), new.splitlines()
    assert [line for line in new_lines if line not in old_lines] == ["    - hello/2.0", '  pip: [numpy<3]  ']
    assert [line for line in old_lines if line not in new_lines] == ["  pip: []  "]
    setup = setupfile.load(path)
    assert setup.modules == ["anaconda3_gpu/22.10.0", "hello/2.0"] and setup.pip == ["numpy<3"]
    assert yaml.safe_load(new)["additional_dependencies"]["conda"] == yaml.safe_load(original)[
        "additional_dependencies"]["conda"]
    assert application.load("hello/2.0", setup_file=str(path)).setup_changed is False


def test_conflicts_stop_load_before_the_file_changes(tmp_path, cli):
    path = tmp_path / "cybershuttle.yml"
    shutil.copy(DATA / "14_cyber-shuttle__cybershuttle-reference.yml", path)
    application.load("gcc/12", setup_file=str(path))
    application.load("numpy>=2.1", setup_file=str(path))
    before = path.read_bytes()
    res = cli("application", "load", "intel/2024", "--setup_file", str(path))
    assert res.code == 1 and "intel/2024 conflicts with gcc/12" in res.err and "family 'compiler'" in res.err
    with pytest.raises(conflicts.ConflictError, match="hello/1.0 conflicts with hello/2.0: two versions"):
        application.load("hello/2.0", setup_file=str(path))
        application.load("hello/1.0", setup_file=str(path))
    with pytest.raises(conflicts.ConflictError, match="numpy<2 conflicts with numpy>=2.1"):
        application.load("numpy<2", setup_file=str(path))
    assert setupfile.load(path).modules == ["gcc/12", "hello/2.0"]
    assert b"intel" not in path.read_bytes() and b"numpy<2" not in path.read_bytes()
    assert len(before) < len(path.read_bytes())  # only hello/2.0 was added since


def test_load_into_legacy_and_new_files(tmp_path):
    legacy = tmp_path / "legacy.yml"
    shutil.copy(DATA / "04_cyber-shuttle__allen-v1.yml", legacy)
    application.load("requests==2.32.3", setup_file=str(legacy))
    assert setupfile.load(legacy).pip[-1] == "requests==2.32.3"  # into environment.dependencies' pip list
    with pytest.raises(SetupFileError, match="older `environment:` layout"):
        application.load("hello", setup_file=str(legacy))
    fresh = tmp_path / "new.yml"
    application.load("hello/1.0", setup_file=str(fresh))
    assert setupfile.load(fresh).modules == ["hello/1.0"]
    with pytest.raises(NotFoundError, match="no version '9'"):
        application.load("hello/9", setup_file=str(fresh))


@pytest.mark.parametrize("source", sorted(p.name for p in DATA.glob("*.yml")))
def test_setup_edit_round_trips_every_real_file(tmp_path, source):
    path = tmp_path / source
    shutil.copy(DATA / source, path)
    before = setupfile.load(path)
    edit = setup_edit.add(path, "pip", "cybershuttle-test-pkg==1.0")
    after = setupfile.load(path)
    assert after.pip == before.pip + ["cybershuttle-test-pkg==1.0"] and edit.kept_comments
    assert after.unknown == before.unknown and after.project == before.project and after.mounts == before.mounts
    assert path.read_text().startswith("# source: ")


# -- the module wrapper ---------------------------------------------------------------------
def test_module_wrapper_locally_and_on_the_cluster(registered, cli):
    for resource in ("local", "testcluster"):
        avail = modules.run("avail", resource=resource)
        assert avail.system == "lmod" and {"hello/1.0", "hello/2.0", "gcc/12", "intel/2024"} <= set(avail.modules)
    loaded = modules.run("load", ["gcc/12", "hello/1.0"], resource="workstation")
    assert set(loaded.modules) >= {"gcc/12", "hello/1.0"}
    res = cli("module", "spider", "hello", "--resource", "testcluster", "--json")
    assert res.code == 0 and json.loads(res.out)["modules"] == ["hello/1.0", "hello/2.0"]
    bad = cli("module", "load", "nosuch/1", "--resource", "testcluster")
    assert bad.code == 1 and "module load nosuch/1 failed on testcluster" in bad.err and "unknown" in bad.err


# -- inside a runtime ---------------------------------------------------------------------------
def test_load_into_a_running_runtime_checks_conflicts_first(registered, tmp_path, cli):
    runtime.request("apps", "workstation")
    try:
        runtime.wait("apps")
        setup = tmp_path / "cybershuttle.yml"
        # the notebook way: the magic loads into the active runtime and the next cell (run there) sees it
        nb = new_notebook(cells=[new_code_cell(c) for c in (
            "%load_ext cybershuttle_magic", "%switch_runtime apps",
            f"%load_application hello/1.0 --file {setup}", "import os; print(os.environ['HELLO_VERSION'])")])
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        assert "loaded hello/1.0 in apps" in nb.cells[2].outputs[-1]["text"]
        assert nb.cells[3].outputs[0]["text"].strip() == "1.0"
        assert setupfile.load(setup).modules == ["hello/1.0"]
        res = cli("module", "load", "gcc/12", "--runtime", "apps", "--json")
        assert res.code == 0, res.err
        assert json.loads(res.out)["modules"] == ["hello/1.0", "gcc/12"]
        with pytest.raises(conflicts.ConflictError, match="intel/2024 conflicts with gcc/12.*runtime apps"):
            application.load("intel/2024", runtime="apps")
        with pytest.raises(conflicts.ConflictError, match="hello/2.0 conflicts with hello/1.0"):
            application.load("hello/2.0", runtime="apps")
        kc = runtime.client("apps")
        out: list[str] = []
        try:
            kc.execute_interactive("import os, subprocess\nprint(os.environ['CS_COMPILER'], "
                                   "subprocess.run(['hello'], capture_output=True, text=True).stdout)",
                                   output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60)
        finally:
            kc.stop_channels()
        assert "".join(out).split() == ["gcc/12", "hello", "1.0"]  # the kernel itself has the modules
        assert application.loaded_in_runtime("apps") == ["hello/1.0", "gcc/12"]  # intel was never loaded
    finally:
        runtime.stop("apps")


def test_load_into_a_runtime_inside_a_slurm_job(registered):
    runtime.request("slurmapps", "testcluster", cpus=1, walltime=5)
    try:
        runtime.wait("slurmapps")
        assert application.load("gcc/12", runtime="slurmapps").loaded == ["gcc/12"]
        with pytest.raises(conflicts.ConflictError, match="intel/2024 conflicts with gcc/12"):
            application.load("intel/2024", runtime="slurmapps")
        kc = runtime.client("slurmapps")
        out: list[str] = []
        try:
            kc.execute_interactive("import os; print(os.environ['CS_COMPILER'], os.environ['SLURM_JOB_ID'])",
                                   output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60)
        finally:
            kc.stop_channels()
        compiler, job = "".join(out).split()
        assert compiler == "gcc/12" and job == runtime.get("slurmapps").job_id.rpartition(".")[2]
    finally:
        runtime.stop("slurmapps")
