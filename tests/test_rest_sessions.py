"""REST routes for sessions: a recorded Python session listed, shown and replayed."""
from __future__ import annotations

import json

import nbformat
import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import dataset, session

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


async def test_a_python_session_is_listed_shown_and_replayed(jp_fetch, tmp_path):
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")

    def record() -> None:  # recording wraps module functions process-wide: done before the server is asked
        session.start("analysis")
        try:
            dataset.register("table", str(data), description="a small table")
        finally:
            session.stop()
        dataset.remove("table")

    await blocking(record)
    code, body = await call(jp_fetch, "sessions")
    assert code == 200 and [(s["name"], s["kind"], s["state"]) for s in body["items"]] == [
        ("analysis", "python", "stopped")]
    code, body = await call(jp_fetch, "sessions", params={"q": "nomatch"})
    assert body == {"items": [], "total": 0}

    code, body = await call(jp_fetch, "sessions/analysis")
    assert code == 200 and any("dataset.register" in str(e) for e in body["events"])

    code, body = await call(jp_fetch, "sessions/analysis/load", "POST", json_body={"dry_run": True})
    assert code == 200 and body["dry_run"] and body["ok"]
    [step] = body["steps"]
    assert "dataset.register" in step["command"] and "table" in step["command"]
    assert await blocking(dataset.list_all) == []

    code, body = await call(jp_fetch, "sessions/analysis/load", "POST", json_body={})
    assert code == 200 and body["ok"] and not body["dry_run"]
    assert (await blocking(dataset.get, "table")).description == "a small table"

    code, body = await call(jp_fetch, "sessions/analysis/load", "POST", json_body={"from_step": "x"})
    assert code == 400 and "from_step must be a number" in body["error"]
    code, body = await call(jp_fetch, "sessions/analysis/load", "POST", json_body={"dryrun": True})
    assert code == 400 and "unknown load option(s) dryrun" in body["error"]
    code, body = await call(jp_fetch, "sessions/nosuch")
    assert code == 404 and "nosuch" in body["error"]


async def test_notebook_saves_through_jupyter_become_snapshots_and_load_restores_them(jp_fetch, jp_root_dir):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path = jp_root_dir / "analysis.ipynb"
    nbformat.write(nb, path)
    await blocking(session.attach, "nbsession", str(path))  # snapshot 1

    nb.cells.append(nbformat.v4.new_code_cell("print(x + 1)"))
    saved = await jp_fetch("api", "contents", "analysis.ipynb", method="PUT",
                           body=json.dumps({"type": "notebook", "format": "json", "content": nb}))
    assert saved.code == 200  # the server's post-save hook took snapshot 2

    code, body = await call(jp_fetch, "sessions/nbsession")
    assert code == 200 and body["kind"] == "notebook"
    assert [(s["id"], s["cells"]) for s in body["snapshots"]] == [(1, 1), (2, 2)]
    assert body["snapshots"][1]["notebook"] == str(path.resolve())

    code, body = await call(jp_fetch, "sessions/nbsession/load", "POST", json_body={"directory": "restored"})
    assert code == 200 and body["ok"] and body["restored"]["notebooks"][0]["snapshot"] == 2, body
    restored = nbformat.read(jp_root_dir / "restored" / "analysis.ipynb", as_version=4)
    assert [c.source for c in restored.cells] == ["x = 1", "print(x + 1)"]
    code, body = await call(jp_fetch, "sessions/nbsession/load", "POST", json_body={"directory": "../../tmp"})
    assert code == 400 and "leaves" in body["error"]
