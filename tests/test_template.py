"""Templates: specs, notebooks, runs here and on the loopback Slurm, sweeps as one job array."""
from __future__ import annotations

import collections
import json
import shlex
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import CLI

from cybershuttle.errors import CybershuttleError

SPEC_TOML = """\
[parameters.rate]
type = "float"
default = 0.5
min = 0.0
max = 1.0
help = "growth per step"

[parameters.steps]
type = "int"
default = 3
min = 1
max = 50

[parameters.mode]
type = "str"
default = "sum"
choices = ["sum", "max"]

[parameters.label]
type = "str"
required = true
help = "a name for the run"

[cells]
parameters = 2     # the recorded cell that set rate and steps
drop = [1]         # the cell that started the recording
editable = [5]      # the cell that reports where it ran
"""

SESSION_CELLS = [
    "from cybershuttle import session\nsession.start('analysis1')",
    "rate = 0.5\nsteps = 3\nmode = 'sum'\nlabel = 'first'",
    "import getpass, json, os\nvals = [rate * i for i in range(steps)]\njson.dump({'label': label, 'vals': vals}, "
    "open('vals.json', 'w'))",
    "total = sum(vals) if mode == 'sum' else max(vals)\ntotal",
    "where = {'user': getpass.getuser(), 'slurm_job': os.environ.get('SLURM_JOB_ID'), 'cwd': os.getcwd()}\nwhere",
]


def record_session(kc, workdir: Path, name: str = "analysis1") -> None:
    """A real Python session recorded cell by cell in a real IPython kernel (working in `workdir`)."""
    from conftest import run_ok

    run_ok(kc, f"import os; os.chdir({str(workdir)!r})")
    for code in SESSION_CELLS:
        run_ok(kc, code.replace("analysis1", name), timeout=120)
    run_ok(kc, "session.stop()")


def tag_output(template_name: str) -> None:
    """Tag the recorded cells whose values are the run's outputs (as a user would in JupyterLab)."""
    from cybershuttle import template
    from cybershuttle.registry import catalog

    tmpl = template.get(template_name)
    nb = tmpl.nb()
    for cell in nb.cells:
        if cell.source.startswith(("total =", "where =")):
            cell.metadata.setdefault("tags", []).append("output")
    catalog().update("template", template_name, lambda d: {**d, "notebook": nbformat.writes(nb)})


@pytest.fixture
def session_template(local_kernel, tmp_path, cli):
    record_session(local_kernel, tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TOML)
    res = cli("template", "add", "--name", "growth", "--session", "analysis1", "--input_file_format", str(spec))
    assert res.code == 0, res.err
    tag_output("growth")
    return "growth"


@pytest.fixture
def growth_template(tmp_path):
    """The same template from a notebook holding the session's cells (no kernel needed to make it)."""
    from cybershuttle import template

    nb = make_notebook(tmp_path / "growth.ipynb", [new_markdown_cell("# Session"),
                                                   *[new_code_cell(code) for code in SESSION_CELLS]])
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TOML)
    template.add("growth", notebook=str(nb), spec=str(spec))
    tag_output("growth")
    return "growth"


def make_notebook(path: Path, cells: list, **meta) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata.update(meta)
    nbformat.write(nb, path)
    return path


def runs_json(cli, name: str) -> list[dict]:
    res = cli("template", "runs", name, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


# -- specs and notebooks ------------------------------------------------------
def test_spec_inferred_from_the_parameters_cell_with_non_ascii_names_and_reassignment_warned(tmp_path, cli):
    nb = make_notebook(tmp_path / "decay.ipynb", [
        new_markdown_cell("# Decay"),
        new_code_cell("λ = 0.5  # decay rate\nn: int = 3  # steps\nname = 'run'\nflags = [1, 2]",
                      metadata={"tags": ["parameters"]}),
        new_code_cell("values = [λ ** i for i in range(n)]"),
        new_code_cell("def f(n):\n    λ = 2\n    return n\nfor i in range(2):\n    n = i  # the trap\n%time x = 1"),
    ])
    res = cli("template", "add", "--name", "decay", "--notebook", str(nb))
    assert res.code == 0, res.err
    assert "4 parameter(s): λ, n, name, flags" in res.out
    warnings = [line for line in res.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, res.err  # the function's local λ and n are not re-assignments
    assert "cell 3" in warnings[0] and "'n'" in warnings[0] and "line 5" in warnings[0]
    shown = json.loads(cli("template", "show", "decay", "--json").out)
    spec = {p["name"]: p for p in shown["spec"]}
    assert spec["λ"]["type"] == "float" and spec["λ"]["default"] == 0.5 and spec["λ"]["help"] == "decay rate"
    assert spec["n"]["type"] == "int" and spec["n"]["help"] == "steps"
    assert spec["name"]["type"] == "str" and spec["flags"]["type"] == "list"
    assert shown["warnings"] == [w.removeprefix("warning: ") for w in warnings]
    listed = json.loads(cli("template", "list", "--json").out)
    assert [t["name"] for t in listed] == ["decay"]
    assert cli("template", "rm", "decay").code == 0
    assert json.loads(cli("template", "list", "--json").out) == []


def test_notebook_without_parameters_cell_or_with_a_bad_spec_is_refused(tmp_path):
    from cybershuttle import template

    nb = make_notebook(tmp_path / "plain.ipynb", [new_code_cell("x = 1")])
    with pytest.raises(CybershuttleError, match="no cell tagged 'parameters'"):
        template.add("plain", notebook=str(nb))
    bad = tmp_path / "bad.yml"
    for text, expected in (("parameters:\n  x: {type: int, default: 1, maximum: 3}\n", "unknown key\\(s\\) maximum"),
                           ("parameters:\n  x: {type: int, default: 9, max: 3}\n", "its default does not fit"),
                           ("parameters:\n  x y: {type: int}\n", "must be a Python identifier"),
                           ("parameters:\n  x: {type: complex}\n", "type must be one of"),
                           ("parameters:\n  x: {type: int}\ncells:\n  pre_run: [9]\n", "names cell\\(s\\) \\[9\\]"),
                           ("parameters: [1, 2\n", "not valid YAML")):
        bad.write_text(text)
        with pytest.raises(CybershuttleError, match=expected):
            template.add("plain", notebook=str(nb), spec=str(bad))
    assert template.list_all() == []


def test_read_only_and_pre_run_cells_keep_their_markings_and_stored_outputs(tmp_path, cli):
    stored = new_code_cell("print('expensive')", execution_count=1,
                           outputs=[new_output("stream", name="stdout", text="computed last week\n")])
    nb = make_notebook(tmp_path / "pre.ipynb", [
        stored,
        new_code_cell("x = 2", metadata={"tags": ["parameters"]}),
        new_code_cell("y = x * 10\ny", metadata={"tags": ["output"]}, execution_count=3,
                      outputs=[new_output("execute_result", data={"text/plain": "20"}, execution_count=3)]),
    ])
    spec = tmp_path / "spec.yml"
    spec.write_text("parameters:\n  x: {type: int, default: 2, help: the factor}\ncells:\n  pre_run: [0]\n"
                    "  read_only: [0, 2]\n")
    from cybershuttle import template

    template.add("pre", notebook=str(nb), spec=str(spec))

    cells = template.get("pre").nb().cells
    assert cells[0].metadata["editable"] is False and cells[0].metadata["deletable"] is False
    assert "skip-execution" in cells[0].metadata["tags"] and cells[0].outputs[0]["text"] == "computed last week\n"
    assert cells[1].metadata["editable"] is True  # the parameters cell stays editable
    assert cells[2].outputs == [] and cells[2].metadata["editable"] is False  # it runs again: old output cleared

    inputs = tmp_path / "in.yml"
    inputs.write_text("x: 7\n")
    assert template.run("pre", str(inputs), output=str(tmp_path / "out")).status == "COMPLETED"
    executed = nbformat.read(tmp_path / "out" / "executed.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "computed last week\n"  # not run again, output kept
    [run] = runs_json(cli, "pre")
    assert run["status"] == "COMPLETED" and run["outputs"] == {"y": 70} and run["parameters"] == {"x": 7}


def test_every_bad_input_gives_a_clear_error_and_runs_nothing(growth_template, tmp_path, cli, cs_home):
    cases = {
        "unknown": ("label: a\nrat: 0.1\n", "unknown parameter(s) 'rat'"),
        "type": ("label: a\nsteps: '4'\n", "'steps' must be int, got str"),
        "bool": ("label: a\nsteps: true\n", "'steps' must be int, got bool"),
        "range": ("label: a\nrate: 1.5\n", "'rate' = 1.5 is above its maximum 1.0"),
        "low": ("label: a\nsteps: 0\n", "'steps' = 0 is below its minimum 1"),
        "choice": ("label: a\nmode: avg\n", "'mode' = 'avg' is not one of 'sum', 'max'"),
        "missing": ("rate: 0.1\n", "'label' is required"),
        "notamap": ("- 1\n- 2\n", "expected a mapping"),
    }
    from cybershuttle import template

    for case, (text, expected) in cases.items():
        path = tmp_path / f"{case}.yml"
        path.write_text(text)
        with pytest.raises(template.InputError) as err:
            template.run(growth_template, str(path))
        assert expected in str(err.value) and "nothing was run" in str(err.value), (case, err.value)
    for case in ("unknown", "missing"):  # the CLI says the same on one line, exit 1
        res = cli("template", "run", "--name", growth_template, "--input_file", str(tmp_path / f"{case}.yml"))
        assert res.code == 1 and cases[case][1] in res.err and "Traceback" not in res.err, res.err
    with pytest.raises(template.InputError) as err:  # every problem at once
        template.run(growth_template, {"rat": 1, "steps": 99})
    assert all(s in str(err.value) for s in ("'rat'", "'steps' = 99", "'label' is required")), err.value
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "config.txt").write_text("rate={{ rate }} seed={{ seed }}\n")
    ok = tmp_path / "ok.yml"
    ok.write_text("label: a\n")
    with pytest.raises(template.InputError, match="placeholder {{ seed }} names no parameter"):
        template.run(growth_template, str(ok), input_dir=str(inputs))
    with pytest.raises(CybershuttleError, match="no template named 'nosuch'"):
        template.run("nosuch", str(ok))
    assert runs_json(cli, growth_template) == []
    assert not list(cs_home.glob("users/*/template-runs/*/*"))  # no run directory either


def test_session_template_with_toml_spec_runs_locally_with_outputs_and_collect(session_template, tmp_path, cli):
    from cybershuttle import template

    nb = template.get(session_template).nb()
    sources = [c.source for c in nb.cells]
    assert not any("session.start" in s for s in sources)  # dropped by the spec
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "rate = 0.5  # growth per step" in params[0].source
    assert "label = None  # required; a name for the run" in params[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.metadata.get("editable") is False for c in code if c is not params[0] and "where =" not in c.source)
    assert template.get(session_template).warnings == []  # the cell that set them became the parameters cell

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "config.txt").write_text("label={{ label }} rate={{rate}}\n")
    path = tmp_path / "a.yml"
    path.write_text("label: a\nrate: 0.25\nsteps: 4\n")
    res = cli("template", "run", "--name", session_template, "--input_file", str(path), "--input_dir", str(inputs))
    assert res.code == 0, res.err
    runs = runs_json(cli, session_template)
    assert [r["status"] for r in runs] == ["COMPLETED"]
    assert runs[0]["parameters"] == {"label": "a", "rate": 0.25, "steps": 4, "mode": "sum"}
    assert runs[0]["outputs"]["total"] == 1.5
    assert runs[0]["outputs"]["where"]["slurm_job"] is None and runs[0]["resource"] == "local"
    assert sorted(runs[0]["files"]) == ["config.txt", "vals.json"]
    assert (Path(runs[0]["output"]) / "config.txt").read_text() == "label=a rate=0.25\n"
    assert Path(runs[0]["outputs"]["where"]["cwd"]).resolve() == Path(runs[0]["output"]).resolve()

    res = cli("template", "collect", session_template, "--output", "vals.json", "--to", str(tmp_path / "got"), "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert [json.loads(Path(r["file"]).read_text()) for r in rows] == [{"label": "a", "vals": [0.0, 0.25, 0.5, 0.75]}]
    res = cli("template", "collect", session_template, "--output", "total", "--to", str(tmp_path / "totals"), "--json")
    assert [r["value"] for r in json.loads(res.out)] == [1.5]
    assert json.loads((tmp_path / "totals" / "collected.json").read_text())[0]["parameters"]["label"] == "a"
    res = cli("template", "collect", session_template, "--output", "loss", "--to", str(tmp_path / "none"))
    assert res.code == 1 and "no run of template 'growth' has an output named 'loss'" in res.err


def test_a_failing_cell_is_recorded_with_its_error(tmp_path, cli):
    nb = make_notebook(tmp_path / "fail.ipynb", [new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                                 new_code_cell("raise ValueError(f'bad x {x}')")])
    from cybershuttle import template

    template.add("fail", notebook=str(nb))
    template.run("fail")
    [run] = runs_json(cli, "fail")
    assert run["status"] == "FAILED" and run["error"] == "cell 1: ValueError: bad x 1"  # the template's own numbering
    assert (Path(run["output"]) / "executed.ipynb").is_file()


# -- on the loopback Slurm ------------------------------------------------------
@pytest.fixture
def slurm(registered, tmp_path, monkeypatch):
    """The registered cluster; every job a test leaves active is cancelled afterwards."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    from cybershuttle import compute

    yield registered
    for job in compute.jobs():
        try:
            compute.cancel(job.id)
        except Exception:
            pass


def test_session_template_runs_on_loopback_slurm_through_the_provisioner(session_template, slurm, tmp_path, cli):
    path = tmp_path / "in.yml"
    path.write_text("label: cluster\nsteps: 5\nmode: max\n")
    res = cli("template", "run", "--name", session_template, "--input_file", str(path), "--resource", "testcluster",
              env={"JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")})
    assert res.code == 0, res.err
    [run] = runs_json(cli, session_template)
    assert run["status"] == "COMPLETED" and run["resource"] == "testcluster", run
    assert run["outputs"]["total"] == 2.0
    where = run["outputs"]["where"]
    assert where["user"] == "csuser" and where["slurm_job"], where  # the kernel ran inside a Slurm job there
    assert where["cwd"] == run["remote_dir"]
    assert json.loads((Path(run["output"]) / "vals.json").read_text())["label"] == "cluster"  # copied back
    from cybershuttle import runtime

    assert [r.state for r in runtime.list_all()] == ["STOPPED"]  # the kernel's job was released


def test_a_20_point_sweep_is_packed_into_the_tasks_of_one_slurm_job_array(growth_template, slurm, tmp_path, cli):
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  rate: [0.1, 0.2, 0.3, 0.4, 0.5]\n  steps: [1, 2, 3, 4]\n  label: swept\n")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "config.txt").write_text("rate={{ rate }} steps={{ steps }}\n")
    res = cli("template", "run", "--name", growth_template, "--sweep", str(sweep), "--resource", "testcluster",
              "--input_dir", str(inputs), "--output", str(tmp_path / "sweep"), "--tasks", "3", "--wait", "--json")
    assert res.code == 0, res.err
    runs = json.loads(res.out)
    assert len(runs) == 20 and len({r["job_id"] for r in runs}) == 1
    assert [r["status"] for r in runs] == ["COMPLETED"] * 20, [(r["status"], r["error"]) for r in runs]
    for r in runs:
        rate, steps = r["parameters"]["rate"], r["parameters"]["steps"]
        assert r["outputs"]["total"] == pytest.approx(sum(rate * i for i in range(steps)))
        assert r["outputs"]["where"]["slurm_job"]
        assert (Path(r["output"]) / "config.txt").read_text() == f"rate={rate} steps={steps}\n"
        assert Path(r["outputs"]["where"]["cwd"]).name == str(r["point"])  # each point in its own directory
    # 20 points in 3 tasks of 7, 7 and 6 consecutive points; each task is one Slurm array task.
    by_task: dict = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r["point"])
    assert sorted(map(sorted, by_task.values())) == [list(range(0, 7)), list(range(7, 14)), list(range(14, 20))]
    assert {r["task"]: r["outputs"]["where"]["slurm_job"] for r in runs} == \
        {t: runs[[r["task"] for r in runs].index(t)]["outputs"]["where"]["slurm_job"] for t in by_task}
    from cybershuttle import compute

    job = compute.get_job(runs[0]["job_id"])
    shell = compute.get("testcluster").shell()
    want = sorted(f"{job.native_id}_{i}" for i in range(3))
    deadline = time.monotonic() + 30
    while True:  # slurmdbd records a finished task a moment after Slurm reports it: wait for the last ones
        out = shell.run(f"sacct -n -X -P -j {shlex.quote(job.native_id)} -o JobID,State", login_shell=True).stdout
        tasks = sorted(line.split("|")[0] for line in out.split())
        if tasks == want or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert tasks == want, out

    res = cli("template", "collect", growth_template, "--output", "total", "--to", str(tmp_path / "totals"), "--json")
    assert res.code == 0, res.err
    assert len(json.loads(res.out)) == 20


def test_a_sweep_with_one_bad_point_or_on_a_non_slurm_resource_submits_nothing(growth_template, slurm, tmp_path,
                                                                               cli):
    from cybershuttle import compute

    sweep = tmp_path / "sweep.yml"
    sweep.write_text("points:\n  - {label: a, rate: 0.1}\n  - {label: b, rate: 7}\n  - {rate: 0.2}\n")
    res = cli("template", "run", "--name", growth_template, "--sweep", str(sweep), "--resource", "testcluster")
    assert res.code == 1
    assert "point 1: 'rate' = 7 is above its maximum 1.0" in res.err and "point 2: 'label' is required" in res.err
    assert "nothing was submitted" in res.err
    res = cli("template", "run", "--name", growth_template, "--sweep", str(sweep), "--resource", "workstation")
    assert res.code == 1 and "a sweep runs as Slurm job arrays" in res.err
    assert compute.jobs(include_finished=True) == [] and runs_json(cli, growth_template) == []


def test_a_setup_files_modules_reach_a_single_run_and_every_sweep_task(slurm, tmp_path, cli):
    from cybershuttle import template

    nb = make_notebook(tmp_path / "greet.ipynb", [
        new_code_cell("times = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("import subprocess\ngreeting = subprocess.run(['hello'], capture_output=True, text=True)"
                      ".stdout.strip() * times\ngreeting", metadata={"tags": ["output"]}),
    ])
    template.add("greet", notebook=str(nb))
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("additional_dependencies:\n  modules:\n    - hello/1.0\n")

    res = cli("template", "run", "--name", "greet", "--resource", "testcluster", "--setup_file", str(setup),
              "--output", str(tmp_path / "once"), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)[0]["outputs"]["greeting"] == "hello 1.0"

    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  times: [1, 2]\n")
    res = cli("template", "run", "--name", "greet", "--sweep", str(sweep), "--resource", "testcluster",
              "--setup_file", str(setup), "--output", str(tmp_path / "sweep"), "--wait", "--json")
    assert res.code == 0, res.err
    assert sorted(r["outputs"]["greeting"] for r in json.loads(res.out)) == ["hello 1.0", "hello 1.0hello 1.0"]

    # Without the setup file the module is not loaded, so the program is missing: the run says so.
    res = cli("template", "run", "--name", "greet", "--resource", "testcluster", "--json")
    assert res.code == 1 and "FileNotFoundError" in json.loads(res.out)[0]["error"]
    res = cli("template", "run", "--name", "greet", "--resource", "testcluster", "--setup_file", str(tmp_path / "nope.yml"))
    assert res.code == 1 and "nope.yml" in res.err and runs_json(cli, "greet")[-1]["status"] != "RUNNING"


# -- sweeps at scale: packing, failures re-run alone, walltime kills, results as a table ------------------
def test_packing_follows_idle_cpus_limits_and_overrides_and_splits_above_max_array_size():
    from cybershuttle.errors import UsageError
    from cybershuttle.template.packing import plan

    pts = list(range(200))
    p = plan(pts, idle_cpus=2, total_cpus=2, max_array_size=100)
    assert p.tasks == 4 and [len(t) for t in p.arrays[0]] == [50, 50, 50, 50] and p.array_spec(0) == "0-3"
    assert "idle CPUs" in p.why
    assert plan(pts, idle_cpus=0, total_cpus=2).tasks == 4  # none idle now: sized for the partition
    assert plan(pts, idle_cpus=64, total_cpus=64, max_running=3).tasks == 6  # 2 per task that may run at once
    assert plan(pts, idle_cpus=64, total_cpus=64, user_max_jobs=5).tasks == 10
    assert plan(pts, idle_cpus=64, total_cpus=64, user_max_submit=7).tasks == 7
    assert plan(pts[:3], idle_cpus=64, total_cpus=64).tasks == 3  # never more tasks than points
    assert [len(t) for t in plan(pts[:10], idle_cpus=1, total_cpus=1, tasks=3).arrays[0]] == [4, 3, 3]
    assert plan(pts, idle_cpus=2, total_cpus=2, points_per_task=7).tasks == 29
    split = plan(pts, idle_cpus=2, total_cpus=2, max_array_size=100, points_per_task=1, max_running=5)
    assert [len(a) for a in split.arrays] == [100, 100] and split.throttles == [3, 2]
    assert [split.array_spec(0), split.array_spec(1)] == ["0-99%3", "0-99%2"]
    assert sorted(p for a in split.arrays for t in a for p in t) == pts  # every point exactly once
    with pytest.raises(UsageError, match="--max-running 1 is below the 2 arrays"):
        plan(pts, idle_cpus=2, total_cpus=2, max_array_size=100, points_per_task=1, max_running=1)
    with pytest.raises(UsageError, match="not both"):
        plan(pts, idle_cpus=2, total_cpus=2, tasks=2, points_per_task=2)
    with pytest.raises(UsageError, match="exceed your limit of 10 submitted jobs"):
        plan(pts, idle_cpus=2, total_cpus=2, tasks=20, user_max_submit=10)


BAD_POINTS = (13, 77, 150)


def ledger_notebook(path: Path, ledger: str, *, broken: bool, pause: float = 0.0) -> Path:
    """A trivial point: it appends its x to `ledger` on the cluster (to count how often each point ran),
    fails for BAD_POINTS while `broken`, and returns x squared."""
    check = f"if x in {BAD_POINTS!r}:\n    raise ValueError(f'bad point {{x}}')" if broken else "pass"
    return make_notebook(path, [
        new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
        new_code_cell(f"import time\ntime.sleep({pause})\nwith open({ledger!r}, 'a') as f:\n    f.write(f'{{x}}\\n')"),
        new_code_cell(check),
        new_code_cell("y = x * x\ny", metadata={"tags": ["output"]}),
    ])


def ledger_counts(shell, ledger: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in shell.run(f"cat {shlex.quote(ledger)}").stdout.split():
        counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


@pytest.mark.waits
def test_a_200_point_sweep_runs_every_point_once_lists_the_failures_and_reruns_them_alone(slurm, tmp_path, cli):
    from cybershuttle import compute, template

    shell = compute.get("testcluster").shell()
    ledger = f"{compute.get('testcluster').facts['home']}/ledger-{tmp_path.name}.txt"
    shell.run(f"rm -f {shlex.quote(ledger)}")
    template.add("square", notebook=str(ledger_notebook(tmp_path / "square.ipynb", ledger, broken=True)))
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  x: [" + ", ".join(str(i) for i in range(200)) + "]\n")

    # 4 tasks of 50 points, at most 2 running at once: the other two wait in the queue at first.
    runs = template.sweep("square", sweep, resource="testcluster", output=str(tmp_path / "out"), tasks=4,
                          max_running=2)
    assert len(runs) == 200 and len({r.job_id for r in runs}) == 1
    assert sorted(collections.Counter(r.task for r in runs).values()) == [50, 50, 50, 50]
    watch = subprocess.Popen([str(CLI), "template", "runs", "square", "--watch", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    done = template.wait("square", timeout=600)
    out, err = watch.communicate(timeout=120)
    assert watch.returncode == 1, err  # it ends by itself once every point has ended; some failed
    seen = [json.loads(line) for line in out.splitlines()]
    assert any(t["state"] == "PENDING" and t["position"] for t in seen[0]["tasks"]), seen[0]
    assert seen[-1]["final"] and seen[-1]["counts"] == {"COMPLETED": 197, "FAILED": 3}, seen[-1]
    done_counts = [s["counts"].get("COMPLETED", 0) for s in seen]
    assert done_counts == sorted(done_counts) and len(set(done_counts)) > 3, done_counts  # live, as points end
    assert any(s["eta_s"] for s in seen[:-1])  # a time left, once the first points gave a pace
    states = {r.point: r.status for r in done}
    assert sorted(p for p, s in states.items() if s == "FAILED") == list(BAD_POINTS), \
        [(r.point, r.status, r.error) for r in done if r.status != "COMPLETED"]
    assert sum(1 for s in states.values() if s == "COMPLETED") == 197
    assert ledger_counts(shell, ledger) == {i: 1 for i in range(200)}  # a failure did not stop its task's others
    assert all(r.outputs["y"] == r.point ** 2 for r in done if r.status == "COMPLETED")

    res = cli("template", "runs", "square")
    assert res.code == 0, res.err
    failed_lines = [line for line in res.out.splitlines() if " FAILED " in line]
    assert len(failed_lines) == 3 and all("cell 2: ValueError: bad point" in line for line in failed_lines), res.out
    listed = json.loads(cli("template", "runs", "square", "--json").out)
    assert len(listed) == 200 and {r["point"]: r["error"] for r in listed if r["status"] == "FAILED"} == \
        {x: f"cell 2: ValueError: bad point {x}" for x in BAD_POINTS}

    # The notebook is fixed; only the three failed points run again, as one new array.
    fixed = ledger_notebook(tmp_path / "fixed.ipynb", ledger, broken=False)
    assert cli("template", "add", "--name", "square", "--notebook", str(fixed), "--replace").code == 0
    res = cli("template", "rerun", "square", "--failed", "--json")
    assert res.code == 0, res.err
    again = json.loads(res.out)
    assert sorted(r["point"] for r in again) == list(BAD_POINTS) and len({r["job_id"] for r in again}) == 1
    assert again[0]["job_id"] not in {r.job_id for r in runs} and {r["status"] for r in again} == {"PENDING"}
    done = template.wait("square", timeout=300)
    assert [r.status for r in done] == ["COMPLETED"] * 200, [(r.point, r.status, r.error) for r in done]
    assert ledger_counts(shell, ledger) == {i: 2 if i in BAD_POINTS else 1 for i in range(200)}
    assert {r.point: r.outputs["y"] for r in done if r.point in BAD_POINTS} == {x: x * x for x in BAD_POINTS}
    res = cli("template", "rerun", "square", "--failed")
    assert res.code == 1 and "no failed or not-run points" in res.err

    # Results as one table: a DataFrame here, and CSV, JSON and Parquet files.
    df = template.results("square")
    assert len(df) == 200 and list(df.columns[:5]) == ["run", "sweep", "point", "x", "state"]
    assert set(df["state"]) == {"COMPLETED"} and (df["y"] == df["x"] ** 2).all() and (df["run_time_s"] > 0).all()
    for fmt in ("csv", "json", "parquet"):
        res = cli("template", "collect", "square", "--format", fmt, "--to", str(tmp_path / f"table.{fmt}"))
        assert res.code == 0 and "wrote 200 row(s)" in res.out, res.err
    import pandas

    from_csv = pandas.read_csv(tmp_path / "table.csv")
    from_parquet = pandas.read_parquet(tmp_path / "table.parquet")
    from_json = pandas.read_json(tmp_path / "table.json")
    for table in (from_csv, from_parquet, from_json):
        assert len(table) == 200 and sorted(table["x"]) == list(range(200))
        assert dict(zip(table["x"], table["y"])) == {i: i * i for i in range(200)}
    shell.run(f"rm -f {shlex.quote(ledger)}")


@pytest.mark.waits
def test_a_walltime_kill_in_the_middle_of_a_task_leaves_the_rest_not_run_and_rerun_runs_them(slurm, tmp_path, cli):
    from cybershuttle import compute, template

    shell = compute.get("testcluster").shell()
    ledger = f"{compute.get('testcluster').facts['home']}/ledger-{tmp_path.name}.txt"
    shell.run(f"rm -f {shlex.quote(ledger)}")
    # 40 points of 3 s in one task with a 1-minute walltime: Slurm kills the task part-way.
    template.add("slow", notebook=str(ledger_notebook(tmp_path / "slow.ipynb", ledger, broken=False, pause=3)))
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  x: [" + ", ".join(str(i) for i in range(40)) + "]\n")
    res = cli("template", "run", "--name", "slow", "--sweep", str(sweep), "--resource", "testcluster", "--tasks", "1",
              "--walltime", "1", "--output", str(tmp_path / "out"))
    assert res.code == 0 and "40 point(s) in 1 task(s) of 1 job array(s)" in res.err, res.err
    done = template.wait("slow", timeout=300)
    states = [r.status for r in done]
    completed = states.count("COMPLETED")
    assert 0 < completed < 40 and states == ["COMPLETED"] * completed + ["NOT_RUN"] * (40 - completed), states
    assert compute.get_job(done[0].job_id).state == "TIMEOUT"
    cut = done[completed]  # the point that was running when the walltime ended
    assert cut.error.startswith("not run: its array task ended (walltime) while it ran"), cut.error
    assert done[-1].error.startswith("not run: its array task ended (walltime) before it started"), done[-1].error
    counts = ledger_counts(shell, ledger)
    assert all(counts[i] == 1 for i in range(completed)) and not any(counts.get(i) for i in range(completed + 1, 40))
    listed = cli("template", "runs", "slow")
    assert listed.out.count(" NOT_RUN ") == 40 - completed, listed.out

    # Faster now (no pause): `rerun --failed` submits exactly the points that were not run, as one array.
    fixed = ledger_notebook(tmp_path / "fast.ipynb", ledger, broken=False)
    assert cli("template", "add", "--name", "slow", "--notebook", str(fixed), "--replace").code == 0
    res = cli("template", "rerun", "slow", "--failed", "--json")
    assert res.code == 0, res.err
    assert sorted(r["point"] for r in json.loads(res.out)) == list(range(completed, 40))
    done = template.wait("slow", timeout=300)
    assert [r.status for r in done] == ["COMPLETED"] * 40, [(r.point, r.status, r.error) for r in done]
    counts = ledger_counts(shell, ledger)
    assert all(counts[i] == 1 for i in range(40) if i != completed) and counts[completed] in (1, 2)
    shell.run(f"rm -f {shlex.quote(ledger)}")


def test_a_sweep_above_the_sites_max_array_size_is_split_and_max_running_throttles_each_array(slurm, tmp_path, cli):
    from cybershuttle import compute, template

    shell = compute.get("testcluster").shell()
    assert "MaxArraySize            = 100" in shell.run("scontrol show config", login_shell=True).stdout
    ledger = f"{compute.get('testcluster').facts['home']}/ledger-{tmp_path.name}.txt"
    template.add("square", notebook=str(ledger_notebook(tmp_path / "sq.ipynb", ledger, broken=False)))
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  x: [" + ", ".join(str(i) for i in range(101)) + "]\n")
    res = cli("template", "run", "--name", "square", "--sweep", str(sweep), "--resource", "testcluster",
              "--points-per-task", "1", "--max-running", "2", "--output", str(tmp_path / "out"), "--json")
    assert res.code == 0 and "101 point(s) in 101 task(s) of 2 job array(s)" in res.err, res.err
    runs = json.loads(res.out)
    arrays = sorted({r["job_id"] for r in runs}, key=lambda j: int(compute.get_job(j).native_id))
    assert [sum(1 for r in runs if r["job_id"] == j) for j in arrays] == [100, 1]
    for job_id in arrays:  # Slurm took both, each with its share of the --max-running 2 throttle
        job = compute.get_job(job_id)
        shown = shell.run(f"scontrol show job {job.native_id}", login_shell=True, check=False).stdout
        assert "ArrayTaskThrottle=1" in shown, shown
    # The one-task array runs beside the first; then the big one is cancelled: its unfinished points are NOT_RUN.
    compute.wait(arrays[1], timeout=600)
    template.cancel("square")
    done = {r.point: r for r in template.runs("square")}
    assert done[100].status == "COMPLETED" and done[100].outputs["y"] == 10000
    not_run = [p for p, r in done.items() if r.status == "NOT_RUN"]
    assert len(not_run) > 50 and all("cancelled" in done[p].error for p in not_run), not_run[:3]
    assert {r.status for r in done.values()} <= {"COMPLETED", "NOT_RUN"}
    shell.run(f"rm -f {shlex.quote(ledger)}")
