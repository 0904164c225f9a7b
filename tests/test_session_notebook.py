"""Notebook sessions: snapshots taken by a real Jupyter server's save hook, history, diff, restore, load."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True}}}


def _notebook(*sources: str, session: str | None = None) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if session:
        nb.metadata["cybershuttle"] = {"session": session}
    return json.loads(nbformat.writes(nb))


async def _save(jp_fetch, path: str, nb: dict) -> None:
    response = await jp_fetch("api", "contents", path, method="PUT",
                              body=json.dumps({"type": "notebook", "format": "json", "content": nb}))
    assert response.code in (200, 201)


@pytest.fixture
def local_runtime_cleanup():
    names: list[str] = []
    yield names
    from cybershuttle import runtime

    for name in names:
        rt = runtime.find(name)
        if rt is not None and rt.state in runtime.LIVE_STATES:
            runtime.stop(name)


async def test_saves_through_the_server_become_snapshots_and_load_restores(
        jp_fetch, jp_serverapp, jp_root_dir, tmp_path, cli, local_runtime_cleanup):
    from cybershuttle import compute, runtime, session
    from cybershuttle.session.notebook import post_save_hook

    assert post_save_hook in jp_serverapp.contents_manager._post_save_hooks
    await _save(jp_fetch, "analysis.ipynb", _notebook("x = 1", "print(x)", session="nbs"))
    await _save(jp_fetch, "other.ipynb", _notebook("y = 1"))  # in no session: no snapshot
    assert [s.name for s in session.list_all()] == ["nbs"]

    compute.register_local()
    local_runtime_cleanup.append("nbrt")
    runtime.request("nbrt", "local", cpus=1)
    from cybershuttle import storage

    (tmp_path / "results").mkdir()
    storage.register("results", str(tmp_path / "results"))
    storage.mount("results", str(tmp_path / "mnt"))
    second = _notebook("x = 2", "print(x)", "api_token = 'S3CRETNB'", session="nbs")
    await _save(jp_fetch, "analysis.ipynb", second)
    await _save(jp_fetch, "analysis.ipynb", second)  # unchanged: no new snapshot

    snaps = session.snapshots("nbs")
    notebook_path = str((Path(jp_root_dir) / "analysis.ipynb").resolve())
    assert [(s.id, s.notebook, s.cells) for s in snaps] == [(1, notebook_path, 2), (2, notebook_path, 3)]
    assert snaps[0].runtimes == [] and [r["name"] for r in snaps[1].runtimes] == ["nbrt"]
    assert snaps[1].runtimes[0]["resource"] == "local"
    assert [(m["name"], m["path"]) for m in snaps[1].mounts] == [("results", str(tmp_path / "mnt" / "results"))]
    assert session.get("nbs").kind == "notebook" and session.get("nbs").notebooks == [notebook_path]

    diff = session.diff("nbs", 1, 2)
    assert "-x = 1\n" in diff and "+x = 2\n" in diff and "+api_token = 'REDACTED'\n" in diff
    assert "print(x)" not in [l[1:] for l in diff.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert cli("session", "diff", "nbs", "1", "2").out == diff
    assert "snapshot 2" in cli("session", "show", "nbs").out
    for path in Path(jp_root_dir).parent.rglob("*"):
        if path.is_file() and "cshome" in path.parts:
            assert b"S3CRETNB" not in path.read_bytes(), path

    runtime.stop("nbrt")
    storage.umount("results")
    assert not (tmp_path / "mnt" / "results").exists()
    restored = tmp_path / "restored"
    result = session.load("nbs", directory=str(restored))
    assert result.restored["notebooks"] == [{"path": str(restored / "analysis.ipynb"), "snapshot": 2, "written": True}]
    back = nbformat.read(restored / "analysis.ipynb", as_version=4)
    assert [c.source for c in back.cells] == ["x = 2", "print(x)", "api_token = 'REDACTED'"]
    assert [(r["name"], r["reattached"]) for r in result.restored["runtimes"]] == [("nbrt", False)]
    assert runtime.get("nbrt").state in runtime.LIVE_STATES, "load asked for the session's runtime again"
    assert [m.name for m in storage.mounts()] == ["results"] and (tmp_path / "mnt" / "results").is_dir()
    assert result.restored["mounts"][0]["already"] is False
    assert json.loads(session.export("nbs", format="ipynb"))["cells"][0]["source"] == "x = 2"


def test_the_hook_directly(tmp_path, jp_environ=None):
    from cybershuttle import session
    from cybershuttle.session import notebook, python

    nb_path = tmp_path / "work.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1")]), nb_path)
    assert notebook.post_save_hook(model={"type": "notebook"}, os_path=str(nb_path)) is None  # in no session

    # a Python session started in that notebook's kernel groups the notebook: its saves become snapshots
    python.start("kern1", notebook=str(nb_path))
    try:
        snap = notebook.post_save_hook(model={"type": "notebook"}, os_path=str(nb_path))
    finally:
        session.stop()
    assert snap is not None and snap.id == 1 and session.get("kern1").kind == "notebook"

    # attach() marks the notebook itself, so the session survives a move of the file
    other = tmp_path / "moved.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("b = 1")]), other)
    session.attach("grouped", other)
    assert json.loads(other.read_text())["metadata"]["cybershuttle"]["session"] == "grouped"
    assert [s.id for s in session.snapshots("grouped")] == [1]

    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert notebook.post_save_hook(model={"type": "notebook"}, os_path=str(broken)) is None
    assert notebook.post_save_hook(model={"type": "file"}, os_path=str(tmp_path / "x.txt")) is None

    with pytest.raises(session.SessionError, match="no snapshot 7"):
        session.diff("grouped", 1, 7)
    # restoring over a notebook that changed since is refused unless asked
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("b = 2")]), other)
    with pytest.raises(session.SessionError, match="differs from snapshot 1"):
        session.restore("grouped")
    session.restore("grouped", overwrite=True, runtimes=False, mounts=False)
    assert nbformat.read(other, as_version=4).cells[0].source == "b = 1"
