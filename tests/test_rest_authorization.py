"""The REST API asks the server's Authorizer (as JupyterHub deployments configure it):
GET needs "read", changes need "write", running things needs "execute"."""
from __future__ import annotations

import pytest
from jupyter_server.auth import Authorizer
from rest_api import call

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ASKED: list[tuple[str, str]] = []


class ReadAndWriteOnly(Authorizer):
    """May read and change Cybershuttle things, may not run anything."""

    def is_authorized(self, handler, user, action, resource):
        ASKED.append((action, resource))
        return resource != "cybershuttle" or action in ("read", "write")


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True}, "authorizer_class": ReadAndWriteOnly}}


async def test_the_authorizer_decides_per_action(jp_fetch):
    ASKED.clear()
    code, body = await call(jp_fetch, "datasets")
    assert code == 200 and ("read", "cybershuttle") in ASKED
    code, body = await call(jp_fetch, "jobs/nosuch.1/cancel", "POST")
    assert code == 404  # allowed to write: the request reached the core, which knows no such job
    for path in ("templates/t/runs", "models/m/run", "sessions/s/load", "applications/a/load"):
        code, body = await call(jp_fetch, path, "POST")
        assert code == 403 and "not allowed to execute" in body["error"], (path, body)
    code, body = await call(jp_fetch, "templates/t/runs")
    assert code == 404  # reading the same route is allowed
