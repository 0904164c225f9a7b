"""The login node's HTTP proxy for the compute nodes (tests/cluster/nodes.sh).

Compute nodes have no route off the cluster network, as on many sites; what jobs there need from
the package index (pip building a runtime's environment inside its job) goes through this proxy
on the login node's bridge address, as sites give their nodes an HTTP proxy. It forwards
`CONNECT host:443` tunnels and plain `http://` requests to ports 80 and 443 only, so it is no
relay to anything else the login node can reach.

    python3 node_proxy.py LISTEN_ADDR PORT
"""
from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

ALLOWED_PORTS = {80, 443}
HEAD_LIMIT = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def _answer(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    writer.close()


async def _serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        head = await client_r.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        client_w.close()
        return
    request_line, _, rest = head.partition(b"\r\n")
    try:
        method, target, version = request_line.decode("latin-1").split(" ")
    except ValueError:
        await _answer(client_w, "400 Bad Request")
        return
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        first = b""
    else:  # absolute-form http://host[:port]/path: sent on in origin-form
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await _answer(client_w, "400 Bad Request")
            return
        host, port = url.hostname, str(url.port or 80)
        path = url.path or "/"
        first = f"{method} {path}{'?' + url.query if url.query else ''} {version}\r\n".encode("latin-1") + rest
    if not port.isdigit() or int(port) not in ALLOWED_PORTS or not host:
        await _answer(client_w, "403 Forbidden")
        return
    try:
        upstream_r, upstream_w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 30)
    except (OSError, asyncio.TimeoutError):
        await _answer(client_w, "502 Bad Gateway")
        return
    if method == "CONNECT":
        client_w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await client_w.drain()
    else:
        upstream_w.write(first)
    await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))


async def main(address: str, port: int) -> None:
    server = await asyncio.start_server(_serve, address, port, limit=HEAD_LIMIT)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
