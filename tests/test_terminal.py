"""`%open_web_terminal`: a real Jupyter server's terminal ends up in a shell on the runtime's host."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cybershuttle import runtime


@pytest.fixture
def jupyter_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = os.urandom(8).hex()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "server", "--no-browser", "--allow-root",
                             f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={tmp_path}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + f"api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    yield {"url": url, "token": token, "base_url": "/", "pid": proc.pid}
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("resource", ["workstation", "testcluster"])
def test_web_terminal_opens_a_shell_on_the_runtimes_host(registered, jupyter_server, resource):
    from cybershuttle_magic import terminal

    runtime.request("term", resource)
    runtime.wait("term")
    try:
        name = terminal.open_terminal(jupyter_server, terminal.shell_command("term"))
        seen = asyncio.run(_type_and_read(jupyter_server, name, "echo on-$(id -un)-job-${SLURM_JOB_ID:-none}\r",
                                          "on-csuser-job-"))
        assert "on-csuser-job-" in seen
        if resource == "testcluster":
            assert "on-csuser-job-none" not in seen  # inside the runtime's allocation
    finally:
        runtime.stop("term")


async def _type_and_read(server, name: str, text: str, expect: str) -> str:
    """Wait for the ssh login, type `text`, and read until `expect` appears (the echo of
    the typed line cannot match: it shows `$(id -un)`, not the user's name)."""
    from tornado.websocket import websocket_connect

    ws = f"ws://{server['url'].split('://', 1)[1]}terminals/websocket/{name}?token={server['token']}"
    conn = await websocket_connect(ws)
    seen = ""
    start = time.monotonic()
    sent = False
    while time.monotonic() - start < 40 and expect not in seen:
        if not sent and time.monotonic() - start > 3:
            await conn.write_message(json.dumps(["stdin", text]))
            sent = True
        try:
            msg = await asyncio.wait_for(conn.read_message(), timeout=0.5)
        except asyncio.TimeoutError:
            continue
        if msg is None:
            break
        kind, *payload = json.loads(msg)
        if kind == "stdout":
            seen += payload[0]
    conn.close()
    return seen
