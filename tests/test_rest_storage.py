"""REST routes for storage: browse a local and an SFTP storage (the loopback sshd), copy
between them, mount into the Jupyter root and unmount."""
from __future__ import annotations

import os

import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import storage

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "lab"
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "a.csv").write_text("x,y\n1,2\n")
    (root / "notes.txt").write_text("hello")
    storage.register("lab", str(root))
    return root


async def test_a_local_storage_is_listed_browsed_mounted_and_unmounted(jp_fetch, jp_root_dir, lab):
    code, body = await call(jp_fetch, "storage")
    assert code == 200 and [s["name"] for s in body["items"]] == ["lab"] and body["items"][0]["mounts"] == []
    code, body = await call(jp_fetch, "storage/lab/ls")
    assert code == 200 and [(e["name"], e["type"]) for e in body["items"]] == [("raw", "directory"), ("notes.txt", "file")]
    code, body = await call(jp_fetch, "storage/lab/ls", params={"path": "/raw"})
    assert body["items"][0]["path"] == "/raw/a.csv" and body["items"][0]["size"] == 8
    code, body = await call(jp_fetch, "storage/lab/ls", params={"path": "/../.."})
    assert code == 400 and "leaves the storage's root" in body["error"]
    code, body = await call(jp_fetch, "storage/lab/ls", params={"path": "/nosuch"})
    assert code == 400 and "does not exist" in body["error"]

    code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": "mounts"})
    assert code == 200 and body["method"] == "symlink", body
    link = jp_root_dir / "mounts" / "lab"
    assert link.is_symlink() and (link / "raw" / "a.csv").read_text() == "x,y\n1,2\n"
    code, body = await call(jp_fetch, "storage/lab")
    assert code == 200 and body["mounts"][0]["path"] == str(link) and body["scope"] == "private"
    code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": "mounts"})
    assert code == 400 and "already mounted" in body["error"]
    code, body = await call(jp_fetch, "storage/lab/umount", "POST")
    assert code == 200 and not os.path.lexists(link)
    code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": "../../elsewhere"})
    assert code == 400 and "leaves" in body["error"]


async def test_copy_to_and_from_the_cluster_over_sftp(jp_fetch, lab, registered, cluster):
    await blocking(storage.register, "hpc", f"/home/{cluster.user}", resource="testcluster")
    code, body = await call(jp_fetch, "storage/hpc/ls")
    assert code == 200 and body["total"] >= 1

    target = f"hpc:/rest-copy-{os.getpid()}/"
    code, body = await call(jp_fetch, "storage/copy", "POST",
                            json_body={"src": "lab:/raw", "dst": target, "recursive": True, "checksum": True})
    try:
        assert code == 200 and body["files"] == 1 and body["bytes"] == 8 and body["checksums"], body
        code, body = await call(jp_fetch, "storage/hpc/ls", params={"path": f"/rest-copy-{os.getpid()}/raw"})
        assert [e["name"] for e in body["items"]] == ["a.csv"]
        code, body = await call(jp_fetch, "storage/copy", "POST",
                                json_body={"src": f"{target}raw/a.csv", "dst": "lab:/back.csv"})
        assert code == 200 and (lab / "back.csv").read_text() == "x,y\n1,2\n"
    finally:
        def clean() -> None:
            storage.fs("hpc").rm(f"rest-copy-{os.getpid()}", recursive=True)

        await blocking(clean)
    code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": "/etc/passwd", "dst": "lab:/"})
    assert code == 400 and "must be a storage path" in body["error"]
    code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": "lab:/notes.txt", "dst": "nosuch:/"})
    assert code == 404 and "nosuch" in body["error"]
