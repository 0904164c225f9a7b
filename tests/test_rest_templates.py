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
