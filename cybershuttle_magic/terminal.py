"""`%open_web_terminal`: a JupyterLab terminal whose shell is on the runtime's host.

The notebook's Jupyter server (found among the running servers: the one that
started this kernel) opens an ordinary terminal through its REST API, and the
terminal is told to `ssh` to the runtime's host with the resource's key and
pinned known_hosts, and there into the job's allocation (the command its
scheduler gives: `compute.enter_command`). Nothing is published outside this machine.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import threading
import urllib.request
from typing import Any

from cybershuttle.errors import CybershuttleError


def find_server() -> dict[str, Any]:
    """The Jupyter server that runs this kernel (its url, token, base_url)."""
    from jupyter_server.serverapp import list_running_servers

    servers = list(list_running_servers())
    mine = [s for s in servers if s.get("pid") == os.getppid()]
    if mine:
        return mine[0]
    if len(servers) == 1:
        return servers[0]
    raise CybershuttleError("cannot tell which Jupyter server runs this notebook "
                            f"({len(servers)} are running): open a terminal in JupyterLab and run the ssh command "
                            "that `%stat_runtime` shows")


def shell_command(runtime_name: str) -> list[str]:
    """The command that puts a terminal on the runtime's host (inside its job's allocation): the core's."""
    from cybershuttle.runtime.terminal import terminal_command

    return terminal_command(runtime_name)


def open_terminal(server: dict[str, Any], argv: list[str]) -> str:
    """Open a terminal on `server` and start `argv` in it; returns the terminal's name."""
    base = server["url"].rstrip("/") + "/"
    token = server.get("token", "")
    request = urllib.request.Request(base + "api/terminals", data=b"{}", method="POST",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            name = json.loads(response.read())["name"]
    except OSError as exc:
        raise CybershuttleError(f"the Jupyter server at {base} did not open a terminal: {exc}") from exc
    ws_url = base.replace("http", "ws", 1) + f"terminals/websocket/{name}?token={token}"
    _send_to_terminal(ws_url, shlex.join(argv) + "\r")
    return name


def _send_to_terminal(ws_url: str, text: str) -> None:
    """Type `text` into the terminal (on a private event loop: the kernel's own is busy running us)."""
    errors: list[BaseException] = []

    async def send() -> None:
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(ws_url)
        await conn.read_message()  # the terminal's "setup" message: it is ready
        await conn.write_message(json.dumps(["stdin", text]))
        conn.close()

    def run() -> None:
        try:
            asyncio.run(send())
        except BaseException as exc:  # reported in the calling thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    if errors:
        raise CybershuttleError(f"could not start the shell in the terminal: {errors[0]}")
