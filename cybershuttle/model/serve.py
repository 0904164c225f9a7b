"""`--serve`: keep an AI model loaded in a small server process so later calls skip loading.

One process per served model, on this machine, owned by the user. It listens on
a unix socket (0600, in a 0700 directory of the profile) and answers only
connections from the same uid (SO_PEERCRED). A request is one JSON line, the
answer one JSON line:

    {"op": "ping"}                        -> {"ok": true, "model": ..., "location": ..., "pid": ..., "load_s": ...}
    {"op": "run", "input_folder"|"input"|"input_sequence": PATH, "batch_size": N, "output": DIR|null}
                                          -> {"ok": true, "result": RunResult.to_dict()}
    {"op": "stop"}                        -> {"ok": true}; the process exits

A server that sees no request for `idle_s` (default one hour) exits by itself.
`python -m cybershuttle.model.serve NAME` is the server; the functions below are the client.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import profile
from ..errors import CybershuttleError
from .catalog import Model

START_TIMEOUT_S = 180.0
IDLE_S = 3600.0
_MAX_UNIX_PATH = 100


def socket_path(name: str) -> Path:
    """Where the server for model `name` listens (short enough for AF_UNIX)."""
    path = profile.active().subdir("models") / f"{name}.sock"
    if len(str(path)) <= _MAX_UNIX_PATH:
        return path
    # Deep profile paths exceed the 108-byte limit of a unix socket address: use a private dir in /tmp.
    root = Path("/tmp") / f"cybershuttle-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077:
        raise CybershuttleError(f"{root} is not a private directory of yours: remove it and try again")
    digest = hashlib.sha256(str(profile.active().root).encode()).hexdigest()[:12]
    return root / f"{digest}-{name}.sock"


def request(name: str, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Send one request to the served model `name`; CybershuttleError when none answers."""
    path = socket_path(name)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            answer = _read_line(sock)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise CybershuttleError(f"model {name!r} is not being served ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise CybershuttleError(f"the server of model {name!r} did not answer: {exc}") from exc
    reply = json.loads(answer)
    if not reply.get("ok"):
        raise CybershuttleError(reply.get("error") or f"the server of model {name!r} failed")
    return reply


def info(name: str) -> dict[str, Any] | None:
    """The ping answer of the served model `name`, or None when it is not served."""
    try:
        return request(name, {"op": "ping"}, timeout=10)
    except CybershuttleError:
        return None


def ensure(model: Model, device: str | None = None) -> dict[str, Any]:
    """Start serving `model` unless a server with the same location already runs; returns its ping."""
    current = info(model.name)
    if current is not None and current.get("location") == model.location and \
            (device in (None, "auto") or current.get("device") == device):
        return current
    if current is not None:
        stop(model.name)
    path = socket_path(model.name)
    path.unlink(missing_ok=True)
    log = profile.active().subdir("models") / f"{model.name}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cybershuttle.model.serve", model.name,
                                 "--device", device or "auto"], stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True)
    finally:
        os.close(fd)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise CybershuttleError(f"serving model {model.name!r} failed: {' | '.join(tail)} (log: {log})")
        current = info(model.name)
        if current is not None:
            return current
        time.sleep(0.1)
    proc.kill()
    raise CybershuttleError(f"model {model.name!r} was not loaded within {START_TIMEOUT_S:.0f} s (log: {log})")


def stop(name: str) -> bool:
    """Stop serving `name`; False when it was not served."""
    current = info(name)
    if current is None:
        socket_path(name).unlink(missing_ok=True)
        return False
    try:
        request(name, {"op": "stop"}, timeout=10)
    except CybershuttleError:
        os.kill(int(current["pid"]), signal.SIGTERM)
    return True


# -- the server process ----------------------------------------------------
def serve(name: str, device: str, idle_s: float = IDLE_S) -> None:
    from . import catalog, inputs
    from .run import Loaded

    model = catalog.get(name)
    loaded = Loaded(model, device)
    path = socket_path(name)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(8)
    server.settimeout(idle_s)
    print(f"serving {name} ({model.location}) on {loaded.device}; loaded in {loaded.load_s:.2f} s", flush=True)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                print(f"no request for {idle_s:.0f} s: exiting", flush=True)
                return
            with conn:
                uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
                if uid != os.getuid():
                    continue
                try:
                    message = json.loads(_read_line(conn))
                    op = message.get("op")
                    if op == "ping":
                        reply = {"ok": True, "model": name, "location": model.location, "pid": os.getpid(),
                                 "device": loaded.device, "load_s": loaded.load_s}
                    elif op == "run":
                        items, _ = inputs.read(input_folder=message.get("input_folder"), input=message.get("input"),
                                               input_sequence=message.get("input_sequence"))
                        result = loaded.apply(items, message.get("batch_size"), message.get("output"))
                        result.served = True
                        reply = {"ok": True, "result": result.to_dict()}
                    elif op == "stop":
                        conn.sendall(b'{"ok": true}\n')
                        return
                    else:
                        reply = {"ok": False, "error": f"unknown request {op!r}"}
                except CybershuttleError as exc:
                    reply = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a bad input must not take the served model down
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:  # the caller went away (Ctrl-C): keep serving the others
                    pass
    finally:
        server.close()
        path.unlink(missing_ok=True)


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cybershuttle.model.serve")
    parser.add_argument("name")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--idle", type=float, default=IDLE_S, help="exit after this many seconds without a request")
    args = parser.parse_args(argv)
    serve(args.name, args.device, args.idle)


if __name__ == "__main__":
    main()
