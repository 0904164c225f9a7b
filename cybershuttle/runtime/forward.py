"""In-process TCP forwarding of kernel ports over the pooled SSH transport.

One selector thread serves every forward of the process: it accepts on local
listening sockets (127.0.0.1 only), opens a `direct-tcpip` channel per
connection on the resource's pooled transport, and pumps bytes both ways.
Every socket gets TCP_NODELAY: kernel messages are small, and Nagle's
algorithm would hold each one back for ~40 ms.

When the SSH connection drops, the forwarded connections close; ZeroMQ
reconnects by itself, and the next accepted connection opens its channel on
a fresh transport from the pool.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
from dataclasses import dataclass, field
from typing import Callable

import paramiko

log = logging.getLogger(__name__)
_CHUNK = 256 * 1024


@dataclass
class Forward:
    """A local port whose connections reach `remote_host:remote_port` over SSH."""

    local_port: int
    remote_host: str
    remote_port: int
    open_channel: Callable[[str, int], paramiko.Channel]
    listener: socket.socket
    pairs: list[tuple[socket.socket, paramiko.Channel]] = field(default_factory=list)


class Forwarder:
    """Owns the forwarding thread; `add()` returns the local port."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, ("wakeup", None))
        self._pending: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._loop, name="cybershuttle-forwarder", daemon=True)
        self._thread.start()

    def add(self, remote_host: str, remote_port: int, open_channel: Callable[[str, int], paramiko.Channel]) -> Forward:
        """Listen on a free 127.0.0.1 port and forward it to `remote_host:remote_port`."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        fwd = Forward(listener.getsockname()[1], remote_host, remote_port, open_channel, listener)
        self._call(lambda: self._selector.register(listener, selectors.EVENT_READ, ("accept", fwd)))
        return fwd

    def remove(self, fwd: Forward) -> None:
        """Stop listening and close every connection of `fwd`."""

        def close() -> None:
            for sock in [fwd.listener] + [s for pair in fwd.pairs for s in pair]:  # type: ignore[operator]
                self._forget(sock)
            fwd.pairs.clear()

        self._call(close)

    # -- the loop ------------------------------------------------------------
    def _call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the forwarding thread (selectors are not thread-safe)."""
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()

        with self._lock:
            self._pending.append(wrapped)
        self._wakeup_w.send(b"x")
        done.wait(10)

    def _loop(self) -> None:
        while True:
            for key, _ in self._selector.select():
                what, obj = key.data
                try:
                    if what == "wakeup":
                        self._wakeup_r.recv(4096)
                        with self._lock:
                            todo, self._pending = self._pending, []
                        for fn in todo:
                            fn()
                    elif what == "accept":
                        self._accept(obj)
                    else:
                        self._pump(key.fileobj, obj)
                except Exception:  # one broken connection must not stop the others
                    log.debug("forwarding error", exc_info=True)

    def _accept(self, fwd: Forward) -> None:
        try:
            client, _ = fwd.listener.accept()
        except BlockingIOError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            chan = fwd.open_channel(fwd.remote_host, fwd.remote_port)
        except Exception as exc:
            # Expected while a kernel restarts or after it exited; ZeroMQ retries on its own.
            log.debug("cannot forward to %s:%s: %s", fwd.remote_host, fwd.remote_port, exc)
            client.close()
            return
        client.setblocking(False)
        chan.setblocking(False)
        fwd.pairs.append((client, chan))
        self._selector.register(client, selectors.EVENT_READ, ("pump", (chan, fwd)))
        self._selector.register(chan, selectors.EVENT_READ, ("pump", (client, fwd)))

    def _pump(self, source, target_and_fwd) -> None:
        target, fwd = target_and_fwd
        try:
            data = source.recv(_CHUNK)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(source, target, fwd)
            return
        try:
            _send_all(target, data)
        except OSError:
            self._close_pair(source, target, fwd)

    def _close_pair(self, a, b, fwd: Forward) -> None:
        self._forget(a)
        self._forget(b)
        fwd.pairs[:] = [p for p in fwd.pairs if a not in p]

    def _forget(self, sock) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass


def _send_all(target, data: bytes) -> None:
    """Send everything, waiting briefly when the peer's window is full."""
    view = memoryview(data)
    while view:
        try:
            sent = target.send(view)
        except (BlockingIOError, socket.timeout):
            sent = 0
        if sent == 0:
            if isinstance(target, paramiko.Channel):
                if target.closed:
                    raise OSError("channel closed")
                target.setblocking(True)  # wait for the SSH window to open
                target.sendall(bytes(view))
                target.setblocking(False)
                return
            import select

            select.select([], [target], [], 5)
            continue
        view = view[sent:]


_forwarder: Forwarder | None = None
_forwarder_lock = threading.Lock()


def forwarder() -> Forwarder:
    """The process-wide forwarder (started on first use)."""
    global _forwarder
    with _forwarder_lock:
        if _forwarder is None:
            _forwarder = Forwarder()
        return _forwarder
