"""REST routes for templates: the spec the sidebar's form is made from, runs through real papermill."""
from __future__ import annotations

import asyncio
import time

import nbformat
import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import template

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


@pytest.fixture
def square(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 2\nlabel = 'square'")
    params.metadata["tags"] = ["parameters"]
    result = nbformat.v4.new_code_cell("y = x * x\ny")
    result.metadata["tags"] = ["output"]
    nb.cells = [params, result]
    path = tmp_path / "square.ipynb"
    nbformat.write(nb, path)
    spec = tmp_path / "spec.toml"
    spec.write_text('[[parameters]]\nname = "x"\ntype = "int"\ndefault = 2\nmin = 0\nmax = 100\nhelp = "the side"\n'
                    '[[parameters]]\nname = "label"\ntype = "str"\ndefault = "square"\n')
    template.add("square", notebook=str(path), spec=str(spec))
    return path


async def test_a_template_is_shown_with_its_spec_run_and_its_runs_listed(jp_fetch, jp_root_dir, square):
    code, body = await call(jp_fetch, "templates")
    assert code == 200 and [t["name"] for t in body["items"]] == ["square"] and "notebook" not in body["items"][0]
    code, body = await call(jp_fetch, "templates/square")
    x = next(p for p in body["spec"] if p["name"] == "x")
    assert code == 200 and x["type"] == "int" and x["default"] == 2 and x["max"] == 100 and x["help"] == "the side"

    code, body = await call(jp_fetch, "templates/square/runs", "POST", json_body={"inputs": {"x": 7}, "output": "run1",
                                                                                  "wait": True})
    assert code == 201 and body["status"] == "COMPLETED", body
    assert body["parameters"]["x"] == 7 and body["outputs"]["y"] in (49, "49")
    assert (jp_root_dir / "run1" / "executed.ipynb").is_file()

    code, body = await call(jp_fetch, "templates/square/runs", "POST", json_body={"inputs": {"x": 3}})
    assert code == 202 and body["status"] == "RUNNING"
    run_id = body["id"]
    deadline = time.monotonic() + 120
    while True:
        code, runs = await call(jp_fetch, "templates/square/runs")
        status = {r["id"]: r["status"] for r in runs["items"]}
        if status[run_id] != "RUNNING" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert runs["total"] == 2 and status[run_id] == "COMPLETED"

    code, body = await call(jp_fetch, "templates/square/runs", "POST", json_body={"inputs": {"x": 500, "z": 1}})
    assert code == 400 and "x" in body["error"] and "z" in body["error"]
    assert len((await blocking(template.runs, "square"))) == 2  # nothing ran
    code, body = await call(jp_fetch, "templates/square/runs", "POST", json_body={"inputs": [7]})
    assert code == 400 and '"inputs" must be an object' in body["error"]
    code, body = await call(jp_fetch, "templates/nosuch/runs", "POST", json_body={"inputs": {}})
    assert code == 404 and "square" in body["error"]
    code, body = await call(jp_fetch, "search", params={"q": "squ"})
    assert {"kind": "template", "name": "square", "detail": "2 parameter(s)"} in body["items"]


async def test_a_sweeps_progress_is_pushed_as_events_with_queue_places_and_its_failures_rerun(
        jp_fetch, jp_http_port, jp_base_url, jp_serverapp, registered, tmp_path):
    from rest_api import EventStream

    from cybershuttle import compute

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 0")
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell("if x == 3:\n    raise ValueError('three')\ny = x + 1\ny")
    check.metadata["tags"] = ["output"]
    nb.cells = [params, check]
    nbformat.write(nb, tmp_path / "inc.ipynb")
    template.add("inc", notebook=str(tmp_path / "inc.ipynb"))
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("grid:\n  x: [0, 1, 2, 3, 4, 5]\n")
    stream = await EventStream(jp_http_port, jp_base_url + "cybershuttle/api/v1/events",
                               jp_serverapp.identity_provider.token).open()
    try:
        # Two tasks, one at a time: the second waits in the queue while the first runs.
        runs = await blocking(template.sweep, "inc", sweep, resource="testcluster", tasks=2, max_running=1,
                              output=str(tmp_path / "out"))
        sweep_id = runs[0].sweep
        mine = lambda e: e.get("kind") == "sweep" and e.get("id") == sweep_id  # noqa: E731
        queued = await stream.wait_for(lambda e: mine(e) and any(
            t["state"] == "PENDING" and t["position"] for t in e["progress"]["tasks"]), 120)
        assert queued["template"] == "inc" and queued["progress"]["total"] == 6 and not queued["final"]
        done = await stream.wait_for(lambda e: mine(e) and e["final"], 180)
        assert done["state"] == "FAILED" and done["progress"]["counts"] == {"COMPLETED": 5, "FAILED": 1}
        seen = [e["progress"]["counts"].get("COMPLETED", 0) for e in stream.events if mine(e)]
        assert seen == sorted(seen) and len(set(seen)) > 2, seen  # pushed as points ended, not only at the end

        code, body = await call(jp_fetch, "templates/inc/sweeps")
        assert code == 200 and [s["sweep"] for s in body["items"]] == [sweep_id]
        assert body["items"][0]["counts"] == {"COMPLETED": 5, "FAILED": 1} and body["items"][0]["final"]

        fixed = nbformat.v4.new_code_cell("y = x + 1\ny")
        fixed.metadata["tags"] = ["output"]
        nb.cells = [params, fixed]
        nbformat.write(nb, tmp_path / "inc.ipynb")
        template.add("inc", notebook=str(tmp_path / "inc.ipynb"), replace=True)
        code, body = await call(jp_fetch, f"templates/inc/sweeps/{sweep_id}/rerun", "POST", json_body={})
        assert code == 202 and [r["point"] for r in body["items"]] == [3]
        again = await stream.wait_for(lambda e: mine(e) and e["final"] and e["state"] == "COMPLETED", 180)
        assert again["progress"]["counts"] == {"COMPLETED": 6}
        code, body = await call(jp_fetch, "templates/inc/runs")
        assert {r["point"]: r["outputs"]["y"] for r in body["items"]} == {x: x + 1 for x in range(6)}
    finally:
        stream.close()
        for job in compute.jobs():
            try:
                compute.cancel(job.id)
            except Exception:
                pass
