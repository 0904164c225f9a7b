"""The output journal, client side: what a runtime's kernel published while nobody listened.

The kernel (`durable_kernel.py`) numbers every IOPub message (metadata
`cybershuttle_seq`) and keeps the newest of them, as the signed frames it
sent, in a bounded journal in its own memory. A client remembers the last number
it handled in a `Cursor` (a small 0600 file in the profile, updated with one
`pwrite` per message, so it survives the notebook's kernel being killed);
whoever re-attaches asks the kernel, on its control channel, for everything
after that number (`missed`) and checks each message's signature with the
runtime's key before showing it.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from .. import profile
from .durable import control_request

SEQ_KEY = "cybershuttle_seq"
_JOB = 120  # bytes for the job id; the sequence number follows
_SEQ = struct.Struct("<Q")


@dataclass
class Missed:
    """What the journal held after a cursor."""

    messages: list[tuple[int, float, dict[str, Any]]]  # (seq, time on the kernel's host, message)
    first_kept: int | None  # the oldest number still in the journal (older output was dropped by its bound)
    last: int  # the newest number the kernel had published
    running: str | None  # the msg_id of the execute_request the kernel is running now, if any


def seq_of(msg: dict[str, Any]) -> int | None:
    return (msg.get("metadata") or {}).get(SEQ_KEY)


def missed(kc: Any, after: int, timeout: float = 60.0) -> Missed:
    """Ask the kernel behind `kc` for the messages it published after number `after`."""
    reply = control_request(kc, "cybershuttle_journal_request", {"after": after}, timeout)
    content, buffers = reply["content"], [bytes(b) for b in reply.get("buffers") or []]
    # A session of its own: the client's remembers the signatures it saw live and would refuse them
    # here as replays (and, having seen them here, refuse the same messages still queued live).
    from jupyter_client.session import Session

    session = Session(key=kc.session.key, signature_scheme=kc.session.signature_scheme)
    out, pos = [], 0
    for seq, when, count in content["records"]:
        frames, pos = buffers[pos:pos + count], pos + count
        _, wire = session.feed_identities(frames, copy=True)
        out.append((seq, when, session.deserialize(wire, content=True, copy=True)))  # checks the signature
    return Missed(out, content.get("first"), int(content.get("last") or 0), content.get("running"))


class Cursor:
    """The last journal number this profile's notebooks handled for one runtime's current job."""

    def __init__(self, name: str, job_id: str) -> None:
        path = profile.active().subdir("runtimes") / f"{name}.cursor"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        raw = os.pread(self._fd, _JOB + _SEQ.size, 0)
        job = raw[:_JOB].rstrip(b"\0").decode(errors="replace")
        if job == job_id and len(raw) == _JOB + _SEQ.size:
            self.seq = _SEQ.unpack(raw[_JOB:])[0]
        else:  # another job (or none yet): nothing of this one was seen
            self.seq = 0
            os.pwrite(self._fd, job_id.encode()[:_JOB].ljust(_JOB, b"\0") + _SEQ.pack(0), 0)

    def advance(self, seq: int) -> None:
        if seq > self.seq:
            self.seq = seq
            os.pwrite(self._fd, _SEQ.pack(seq), _JOB)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
