"""REST routes for applications: the real Lmod catalog of the test cluster, and load into a setup file."""
from __future__ import annotations

import pytest
from rest_api import SERVER_CONFIG, call

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


async def test_applications_of_the_cluster_are_searched_and_loaded_into_a_setup_file(jp_fetch, jp_root_dir,
                                                                                   registered):
    code, body = await call(jp_fetch, "applications", params={"resource": "testcluster", "q": "hello"})
    assert code == 200
    hello = next(a for a in body["items"] if a["name"] == "hello")
    assert hello["kind"] == "module" and hello["default"] == "2.0" and hello["resource"] == "testcluster"
    assert [v["full"] for v in hello["versions"]] == ["hello/1.0", "hello/2.0"]
    code, page = await call(jp_fetch, "applications", params={"resource": "testcluster", "limit": "2"})
    assert len(page["items"]) == 2 and page["total"] > 2

    (jp_root_dir / "cybershuttle.yml").write_text("additional_dependencies:\n  modules: []\n")
    code, body = await call(jp_fetch, "applications/hello/load", "POST",
                            json_body={"version": "1.0", "setup_file": "cybershuttle.yml", "resource": "testcluster"})
    assert code == 200 and body["item"] == "hello/1.0" and body["setup_changed"] is True
    assert "hello/1.0" in (jp_root_dir / "cybershuttle.yml").read_text()
    code, body = await call(jp_fetch, "applications/hello/load", "POST",
                            json_body={"version": "2.0", "setup_file": "cybershuttle.yml", "resource": "testcluster"})
    assert code == 409, body
    assert "hello" in body["error"] and "hello/2.0" not in (jp_root_dir / "cybershuttle.yml").read_text()

    code, body = await call(jp_fetch, "applications/hello/load", "POST", json_body={"setup_file": "../outside.yml"})
    assert code == 400 and "leaves" in body["error"]
    code, body = await call(jp_fetch, "applications/nosuchapp/load", "POST",
                            json_body={"setup_file": "cybershuttle.yml", "resource": "testcluster"})
    assert code == 404 and "nosuchapp" in body["error"]
    code, body = await call(jp_fetch, "applications", params={"resource": "nosuchresource"})
    assert code == 404 and "nosuchresource" in body["error"]
