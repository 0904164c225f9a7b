"""Python sessions: recorded cybershuttle calls, and cells in a real IPython kernel with the runtime they ran on."""
from __future__ import annotations

import json

import nbformat
import pytest

from conftest import run_ok


def test_calls_are_recorded_replayed_and_exported(cs_home, cli):
    from cybershuttle import compute, runtime, session
    from cybershuttle.errors import NotFoundError

    compute.register_local()
    session.start("py1")
    try:
        job = compute.execute("echo token=S3CRETPY > /dev/null", "local", name="s1")
        compute.wait(job.id)
        with pytest.raises(NotFoundError):
            runtime.stop("nope")
    finally:
        session.stop()
    assert not hasattr(compute.execute, "__cs_recorder__"), "stop() puts the original functions back"

    calls = session.get("py1").events("call")
    assert [(c["call"], c["args"], c["ok"]) for c in calls] == [
        ("compute.execute", ["echo token=REDACTED > /dev/null", "local"], True),
        ("runtime.stop", ["nope"], False)]
    assert calls[0]["kwargs"] == {"name": "s1"} and "no runtime named 'nope'" in calls[1]["error"]
    for path in cs_home.rglob("sessions/**/*"):
        if path.is_file():
            assert b"S3CRETPY" not in path.read_bytes()

    dry = session.load("py1", dry_run=True)
    assert [s.command for s in dry.steps] == ["compute.execute('echo token=REDACTED > /dev/null', 'local', name='s1')",
                                              "runtime.stop('nope')"]
    with pytest.raises(session.SessionError, match="past the end"):
        session.load("py1", from_step=3)
    again = session.load("py1")
    assert again.failed is not None and again.failed.number == 2 and again.steps[0].exit_code == 0
    assert len(compute.jobs("local", include_finished=True)) == 2, "the replay submitted the job again"

    script = cli("session", "export", "py1", "--format", "sh").out
    assert "from cybershuttle import compute, runtime" in script and "runtime.stop('nope')" in script
    nb = nbformat.reads(session.export("py1", format="ipynb"), as_version=4)
    nbformat.validate(nb)
    assert nb.cells[1].source == ("from cybershuttle import compute\n\n"
                                  "compute.execute('echo token=REDACTED > /dev/null', 'local', name='s1')")
    listed = json.loads(cli("session", "list", "--json").out)
    assert [(s["name"], s["kind"], s["state"]) for s in listed] == [("py1", "python", "stopped")]


@pytest.mark.waits
def test_cells_are_recorded_with_the_runtime_they_ran_on(local_kernel, cs_home):
    from cybershuttle import compute, runtime, session

    compute.register_local()
    kc = local_kernel
    cells = ["x = 21",
             "%request_runtime krt --resource local --cpus 1",
             "%switch_runtime krt",
             "import os\nprint(os.getpid())",
             "%%run_on local\nprint(x * 2)",
             "%switch_runtime local"]
    run_ok(kc, "import cybershuttle_magic\nfrom cybershuttle import session")
    run_ok(kc, "session.start('cells1')")
    try:
        for cell in cells:
            run_ok(kc, cell)
        failed = kc.execute_interactive("1 / 0", output_hook=lambda m: None, timeout=60)
        assert failed["content"]["status"] == "error"
    finally:
        run_ok(kc, "%stop_runtime krt")
        run_ok(kc, "session.stop()")
    assert runtime.get("krt").state == "STOPPED"

    recorded = session.get("cells1").events("cell")
    assert [(c["source"], c["runtime"], c["ok"]) for c in recorded] == [
        ("x = 21", "local", True),
        ("%request_runtime krt --resource local --cpus 1", "local", True),
        ("%switch_runtime krt", "local", True),
        ("import os\nprint(os.getpid())", "krt", True),
        ("%%run_on local\nprint(x * 2)", "local", True),
        ("%switch_runtime local", "local", True),
        ("1 / 0", "local", False),
        ("%stop_runtime krt", "local", True),
    ]
    calls = session.get("cells1").events("call")
    made = [c["call"] for c in calls]
    assert made[0] == "runtime.request" and "compute.execute" not in made, "only the outermost call is recorded"
    assert calls[0]["args"][:2] == ["krt", "local"] and all(c["in_cell"] for c in calls)
    assert "runtime.stop" in made

    nb = nbformat.reads(session.export("cells1", format="ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code] == [c["source"] for c in recorded], "calls made by cells are not repeated"
    assert code[3].metadata["cybershuttle"]["runtime"] == "krt"
