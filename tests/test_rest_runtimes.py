"""REST routes for runtime actions the core owns (status, restart, subprocess), through a real
jupyter_server against the loopback sshd: the same core calls as the magics and the CLI."""
from __future__ import annotations

import time
import urllib.request

import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import runtime

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


async def test_status_subprocess_and_restart_of_a_runtime(jp_fetch, registered):
    await blocking(runtime.request, "restrt", "workstation")
    try:
        await blocking(runtime.wait, "restrt", timeout=120)
        code, body = await call(jp_fetch, "runtimes/restrt")
        assert code == 200 and body["state"] == "READY" and body["job"]["state"] == "RUNNING"
        assert body["transport"].startswith("private Unix sockets")
        first_job = body["job_id"]

        command = ("mkdir -p ~/cs-rest-web && cd ~/cs-rest-web && echo rest-$(id -un) > index.html && "
                   "exec python3 -m http.server 18766 --bind 127.0.0.1")
        code, started = await call(jp_fetch, "runtimes/restrt/subprocess", "POST", json_body={"command": command})
        assert code == 201 and started["pid"] > 0
        # Started through REST, seen by every face: the pid is in the runtime's record.
        assert (await blocking(runtime.get, "restrt")).subprocess["pid"] == started["pid"]
        mapping = await blocking(runtime.tunnels.open_tunnels, "restrt", [18766])
        body_text = ""
        for _ in range(50):
            try:
                body_text = (await blocking(urllib.request.urlopen, f"http://127.0.0.1:{mapping[18766]}/index.html",
                                            timeout=5)).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert body_text.strip() == "rest-csuser"
        code, again = await call(jp_fetch, "runtimes/restrt/subprocess", "POST", json_body={"command": "sleep 1"})
        assert code == 400 and "already runs a subprocess" in again["error"] and "%" not in again["error"]

        code, restarted = await call(jp_fetch, "runtimes/restrt/restart", "POST", timeout=300)
        assert code == 200 and restarted["state"] == "READY" and restarted["job_id"] != first_job
        assert restarted["subprocess"] is None  # stopping the old kernel stopped its subprocess
        with pytest.raises(OSError):
            await blocking(urllib.request.urlopen, f"http://127.0.0.1:{mapping[18766]}/index.html", timeout=5)
        code, missing = await call(jp_fetch, "runtimes/restrt/subprocess", "DELETE")
        assert code == 400 and "runs no subprocess" in missing["error"]
        code, ghost = await call(jp_fetch, "runtimes/ghost")
        assert code == 404 and "request it first" in ghost["error"] and "%request_runtime" not in ghost["error"]
    finally:
        await blocking(runtime.stop, "restrt")
