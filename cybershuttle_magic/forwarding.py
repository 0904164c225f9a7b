"""Running one cell on a runtime's kernel from the notebook's own kernel.

The remote kernel's IOPub messages are re-published on the local kernel's
IOPub socket under the *current* parent header, so every message type
(stream, display_data, update_display_data, clear_output, comm_*) reaches the
notebook as if the local kernel had produced it. The loop blocks on the
client's ZeroMQ sockets: no polling interval, no sleep.

A remote error becomes a local exception carrying the remote traceback, so
the cell fails (Run All and papermill stop there). Ctrl-C becomes an
`interrupt_request` to the remote kernel; `input()` is relayed both ways.

Nothing is shown twice or lost: the runtime numbers its IOPub messages and
journals them (runtime/journal.py). A `Cursor` remembers the last number
handled; a jump in the numbers (a dropped connection) or a silent spell is
filled from the journal, in order, and a notebook that re-attaches first sees
what it missed under a marker (`reattach`), then a cell still running goes on.
"""
from __future__ import annotations

import getpass
import time
from typing import Any

import zmq

from cybershuttle.errors import CybershuttleError
from cybershuttle.runtime import journal

_SKIP = {"status", "execute_input"}  # the local kernel publishes its own
#: output messages, passed on with their content still packed (nothing here reads it)
_PASS_PACKED = {"stream", "display_data", "update_display_data", "execute_result"}


class RemoteError(Exception):
    """An exception raised by the remote kernel; renders as the remote traceback."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(evalue)
        self.ename, self.evalue, self.remote_traceback = ename, evalue, traceback

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a local traceback
        return self.remote_traceback or [f"{self.ename}: {self.evalue}"]


class RuntimeLost(Exception):
    """The remote kernel stopped answering in the middle of a cell."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31mcybershuttle: {self}\x1b[0m"]


#: How long the remote side may be silent before its heartbeat is checked.
QUIET_CHECK_S = 3.0
#: How long without a heartbeat before the runtime is declared lost.
LOST_AFTER_S = 15.0


def run_cell(shell: Any, kc: Any, code: str, is_dead: Any = None,
             cursor: journal.Cursor | None = None) -> dict[str, Any]:
    """Execute `code` on the kernel behind `kc`; returns the execute_reply content.

    While the remote side is silent, its heartbeat is checked; when it stays
    silent (`is_dead()` says the job ended, or no heartbeat for a while), the
    cell fails with RuntimeLost instead of waiting forever. With a `cursor`,
    messages lost to a dropped connection are taken from the runtime's journal.
    """
    msg_id = kc.execute(code, allow_stdin=True, stop_on_error=True)
    return _follow(shell, kc, msg_id, is_dead, cursor, expect_reply=True)


def reattach(shell: Any, kc: Any, name: str, cursor: journal.Cursor, is_dead: Any = None) -> None:
    """Show what runtime `name` published since `cursor`, under a marker; follow a cell it still runs."""
    kernel = getattr(shell, "kernel", None)
    parent = _current_parent(kernel)
    found = journal.missed(kc, cursor.seq)
    shown = [(seq, when, m) for seq, when, m in found.messages if m["msg_type"] not in _SKIP]
    if shown:
        lost = cursor.seq and found.first_kept and found.first_kept > cursor.seq + 1
        span = f"{_clock(shown[0][1])}–{_clock(shown[-1][1])}" if len(shown) > 1 else _clock(shown[0][1])
        _say(shell, kernel, parent, f"── runtime {name}: output produced while this notebook was away ({span})"
             + (", older output beyond the journal's bound was dropped" if lost else "") + " ──\n")
        for _, _, msg in shown:
            _publish(shell, kernel, parent, msg)
    cursor.advance(max([found.last] + [seq for seq, _, _ in found.messages]))
    if found.running:
        _say(shell, kernel, parent, f"── runtime {name}: that cell is still running; its output follows ──\n")
        _follow(shell, kc, found.running, is_dead, cursor, expect_reply=False)


def _follow(shell: Any, kc: Any, msg_id: str, is_dead: Any, cursor: journal.Cursor | None,
            expect_reply: bool) -> dict[str, Any]:
    """Relay the IOPub messages of request `msg_id` until it is done (its reply too, when `expect_reply`)."""
    kernel = getattr(shell, "kernel", None)
    parent = _current_parent(kernel)
    poller = zmq.Poller()
    iopub, stdin, shell_sock = kc.iopub_channel.socket, kc.stdin_channel.socket, kc.shell_channel.socket
    for sock in (iopub, stdin, shell_sock):
        poller.register(sock, zmq.POLLIN)
    reply: dict[str, Any] | None = None if expect_reply else {"status": "ok"}
    idle = False
    error: dict[str, Any] | None = None
    interrupted = False
    silent_since: float | None = None

    def handle(msg: dict[str, Any]) -> None:
        nonlocal idle, error
        if msg["parent_header"].get("msg_id") != msg_id:
            return
        kind = msg["msg_type"]
        if kind == "status":
            idle = idle or msg["content"].get("execution_state") == "idle"
        elif kind == "error" and expect_reply:
            error = msg["content"]  # raised below as a local exception carrying the remote traceback
        elif kind not in _SKIP:
            _publish(shell, kernel, parent, msg)
            _track_comm(kernel, kc, msg)

    while reply is None or not idle:
        try:
            events = dict(poller.poll(QUIET_CHECK_S * 1000))
            if not events:
                silent_since = silent_since or time.monotonic()
                _check_alive(kc, is_dead, time.monotonic() - silent_since)
                if interrupted and not idle:  # still running after a quiet spell: the request may have been
                    # lost on a control connection being (re)made (seen in CI); asking again is harmless
                    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
                if cursor is not None and kc.hb_channel.is_beating():
                    for msg in _from_journal(kc, cursor, None):  # what a dropped connection swallowed
                        handle(msg)
                    if idle and reply is None:  # its reply went to a connection that is gone
                        reply = {"status": "error", **error} if error else {"status": "ok"}
                continue
            silent_since = None
        except KeyboardInterrupt:
            if not interrupted:  # first Ctrl-C: interrupt the remote cell, keep collecting its output
                interrupted = True
                kc.control_channel.send(kc.session.msg("interrupt_request", {}))
                continue
            raise
        if iopub in events:
            msg = _next_iopub(kc)
            for ordered in _from_journal(kc, cursor, msg) if cursor is not None else [msg]:
                handle(ordered)
        if stdin in events:
            msg = kc.stdin_channel.get_msg(timeout=0)
            if msg["msg_type"] == "input_request":
                kc.input(_ask(kernel, msg["content"]))
        if shell_sock in events:
            msg = kc.shell_channel.get_msg(timeout=0)
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg["content"]
    if expect_reply and reply.get("status") == "error":
        raise _remote_exception(reply)
    return reply


def _from_journal(kc: Any, cursor: journal.Cursor, live: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`live` (None: nothing arrived) preceded by whatever the journal holds between the cursor and it.

    Messages at or below the cursor were handled already (a message both
    journaled and still queued on the socket) and are dropped.
    """
    seq = journal.seq_of(live) if live is not None else None
    if live is not None and seq is None:
        return [live]  # a kernel without a journal
    if seq is not None and seq <= cursor.seq:
        return []
    out: list[dict[str, Any]] = []
    if seq is None or seq > cursor.seq + 1:
        try:
            found = journal.missed(kc, cursor.seq, timeout=QUIET_CHECK_S)
        except CybershuttleError:
            found = None  # not reachable now: the next silence or jump asks again
        if found is not None:
            out = [m for s, _, m in found.messages if seq is None or s < seq]
    if live is not None:
        out.append(live)
    ordered = []
    for msg in out:
        number = journal.seq_of(msg) or 0
        if number > cursor.seq:
            cursor.advance(number)
            ordered.append(msg)
    return ordered


def _say(shell: Any, kernel: Any, parent: dict[str, Any], text: str) -> None:
    _publish(shell, kernel, parent, {"msg_type": "stream", "content": {"name": "stdout", "text": text}})


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def _track_comm(kernel: Any, kc: Any, msg: dict[str, Any]) -> None:
    """Mirror the remote kernel's comms locally, so the frontend's messages find their way back.

    A widget's comm is opened by the remote kernel; the notebook answers to the
    *local* kernel. A proxy comm registered here under the same id forwards each
    comm_msg/comm_close to the remote kernel and relays what that causes.
    """
    if kernel is None:
        return
    import comm as comm_pkg

    manager = comm_pkg.get_comm_manager()
    kind, content = msg["msg_type"], msg["content"]
    if kind == "comm_open":
        from ipykernel.comm import Comm

        proxy = Comm(target_name=content.get("target_name", "comm"), comm_id=content["comm_id"], primary=False,
                     target_module=content.get("target_module"))
        proxy.on_msg(lambda local: _to_remote(kernel, kc, "comm_msg", local))
        proxy.on_close(lambda local: _to_remote(kernel, kc, "comm_close", local))
        manager.register_comm(proxy)
    elif kind == "comm_close":
        proxy = manager.comms.get(content.get("comm_id"))
        if proxy is not None:
            proxy._closed = True  # closed by the remote side: nothing to send back
            manager.unregister_comm(proxy)


def _to_remote(kernel: Any, kc: Any, kind: str, local: dict[str, Any]) -> None:
    """Send a frontend's comm message to the remote kernel and relay its effects."""
    parent = _current_parent(kernel)
    request = kc.session.msg(kind, local["content"])
    kc.session.send(kc.shell_channel.socket, request, buffers=local.get("buffers") or None)
    msg_id = request["header"]["msg_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not kc.iopub_channel.socket.poll(1000):
            continue
        msg = kc.iopub_channel.get_msg(timeout=0)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"].get("execution_state") == "idle":
                return
        elif msg["msg_type"] not in _SKIP:
            _publish(None, kernel, parent, msg)
            _track_comm(kernel, kc, msg)


def _check_alive(kc: Any, is_dead: Any, silent_for: float) -> None:
    if kc.hb_channel.is_beating():
        return  # a long computation: the kernel still answers its heartbeat
    reason = is_dead() if is_dead is not None else None
    if reason:
        raise RuntimeLost(reason)
    if not kc.hb_channel.is_beating() and silent_for >= LOST_AFTER_S:
        raise RuntimeLost(f"the runtime's kernel has not answered for {silent_for:.0f} s "
                          "(the node, the kernel or the connection is gone); check it with %stat_runtime")


def _current_parent(kernel: Any) -> dict[str, Any]:
    if kernel is None:
        return {}
    getter = getattr(kernel, "get_parent", None)
    return getter("shell") if getter else getattr(kernel, "_parent_header", {})


def _publish(shell: Any, kernel: Any, parent: dict[str, Any], msg: dict[str, Any]) -> None:
    if kernel is not None:
        metadata = {k: v for k, v in (msg.get("metadata") or {}).items() if k != journal.SEQ_KEY}
        kernel.session.send(kernel.iopub_socket, msg["msg_type"], msg["content"], parent=parent,
                            metadata=metadata, buffers=msg.get("buffers") or None, ident=_topic(msg))
        return
    _render_without_kernel(msg)  # plain IPython (a terminal): show what can be shown


def _topic(msg: dict[str, Any]) -> bytes:
    kind = msg["msg_type"]
    if isinstance(msg["content"], bytes):
        return msg.get("topic") or kind.encode()
    if kind == "stream":
        return f"stream.{msg['content'].get('name', 'stdout')}".encode()
    return kind.encode()


def _next_iopub(kc: Any) -> dict[str, Any]:
    """The next IOPub message, signature checked; an output message's content stays as the kernel packed it.

    `Session.send` relays packed (bytes) content as it is, so a 20 MB stream
    message is not JSON-decoded here only to be encoded again for the local
    IOPub socket: re-publishing costs two HMAC passes instead.
    """
    session = kc.session
    topics, frames = session.feed_identities(kc.iopub_channel.socket.recv_multipart())
    msg = session.deserialize(frames, content=False)
    msg["topic"] = topics[0] if topics else None  # the kernel's own ("stream.stdout"): the content is not read
    if session.auth is not None:
        session._add_digest(frames[0])  # deserialize(content=False) leaves replay protection to its caller
    if msg["msg_type"] not in _PASS_PACKED:
        msg["content"] = session.unpack(msg["content"])
    return msg


def _render_without_kernel(msg: dict[str, Any]) -> None:
    import json
    import sys

    kind, content = msg["msg_type"], msg["content"]
    if isinstance(content, bytes):
        content = json.loads(content)
    if kind == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(content.get("text", ""))
        stream.flush()
    elif kind in ("display_data", "execute_result", "update_display_data"):
        from IPython.display import publish_display_data

        publish_display_data(content.get("data", {}), content.get("metadata", {}))


def _ask(kernel: Any, content: dict[str, Any]) -> str:
    prompt, password = content.get("prompt", ""), content.get("password", False)
    if kernel is not None:
        return kernel.getpass(prompt) if password else kernel.raw_input(prompt)
    return getpass.getpass(prompt) if password else input(prompt)


def _remote_exception(reply: dict[str, Any]) -> RemoteError:
    ename = str(reply.get("ename") or "RemoteError")
    cls = type(ename if ename.isidentifier() else "RemoteError", (RemoteError,), {})
    return cls(ename, str(reply.get("evalue", "")), list(reply.get("traceback") or []))
