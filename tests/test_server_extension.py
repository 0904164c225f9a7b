"""The Jupyter server extension loads and its API refuses strangers."""
from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True}}}


async def test_index_lists_the_routes(jp_fetch):
    response = await jp_fetch("cybershuttle", "api", "v1", "")
    assert response.code == 200
    body = json.loads(response.body)
    assert body["routes"][0]["path"].endswith("/cybershuttle/api/v1/")
    assert body["version"]


async def test_every_route_refuses_an_unauthenticated_request(jp_fetch):
    from cybershuttle_server.handlers import ROUTES

    for path, _, methods, _ in ROUTES:
        for method in methods:
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch("cybershuttle", "api", "v1", path, method=method,
                               headers={"Authorization": ""},
                               **({"body": "{}"} if method in ("POST", "PUT", "PATCH") else {}))
            assert info.value.code in (401, 403), (path, method)


def test_extension_is_enabled_by_the_installed_config():
    import subprocess
    import sys
    from pathlib import Path

    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run([str(jupyter), "server", "extension", "list"], capture_output=True, text=True).stderr
    out += subprocess.run([str(jupyter), "server", "extension", "list"], capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if "cybershuttle_server" in l and "enabled" in l)
    assert "enabled" in line
