"""The kernel-side output journal (`durable_kernel.Journal`): every IOPub message kept in wire order, in the
kernel's memory, bounded, as the bytes that went out."""
from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

import cybershuttle.runtime

SOURCE = Path(cybershuttle.runtime.__file__).with_name("durable_kernel.py")


@pytest.fixture(scope="module")
def dk():
    """durable_kernel loaded as the job loads it (a file of its own), without keeping its SIGUSR1 handler."""
    before = signal.getsignal(signal.SIGUSR1)
    spec = importlib.util.spec_from_file_location("durable_kernel_under_test", SOURCE)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        signal.signal(signal.SIGUSR1, before)
    return module


class _Frame:
    """What ipykernel hands to send_multipart besides bytes: a zmq.Frame, whose bytes are in `.buffer`."""

    def __init__(self, data: bytes) -> None:
        self.buffer = memoryview(data)


def _message(seq: int, size: int) -> list:
    return [b"<IDS|MSG>", b"sig%d" % seq, _Frame(b'{"seq": %d}' % seq), bytes([seq % 251]) * size]


def test_messages_come_back_in_order_with_their_bytes_and_bytes_are_not_copied(dk):
    journal = dk.Journal(64 << 20)
    sizes = [10, 3 << 20, 20, 30, 200 << 10, 5, 0, 1 << 20, 7]
    sent = [_message(seq, size) for seq, size in enumerate(sizes, 1)]
    for seq, parts in enumerate(sent, 1):
        journal.append(seq, parts)
    records, first = journal.read(0)
    assert first == 1
    assert [seq for seq, _, _ in records] == list(range(1, len(sizes) + 1))
    for (seq, _, parts), expected in zip(records, sent):
        assert parts[:2] == expected[:2] and parts[2] == bytes(expected[2].buffer) and parts[3] == expected[3]
        assert parts[3] is expected[3]  # a 20 MB output is kept, not copied
    assert journal.read(len(sizes)) == ([], None)
    assert [seq for seq, _, _ in journal.read(7)[0]] == [8, 9] and journal.read(7)[1] == 1


def test_the_journal_keeps_the_newest_output_within_its_bound(dk):
    limit = 1 << 18
    journal = dk.Journal(limit)
    for seq in range(1, 401):
        journal.append(seq, _message(seq, 3000 if seq % 50 else 100 << 10))
    records, first = journal.read(0)
    assert records[-1][0] == 400 and first > 1 and [r[0] for r in records] == list(range(first, 401))
    assert sum(len(f) for _, _, frames in records for f in frames) <= limit
    # one message larger than the whole bound: it is the newest, so it is what a re-attaching notebook gets
    journal.append(401, _message(401, limit * 2))
    records, first = journal.read(0)
    assert first == 401 and [r[0] for r in records] == [401] and len(records[0][2][3]) == limit * 2


def test_a_buffer_changed_after_its_send_is_journaled_as_it_was_sent(dk):
    journal = dk.Journal(64 << 20)
    buffer = bytearray(b"before")  # a user's buffer (a comm's binary frame): its memory may change later
    journal.append(1, [b"<IDS|MSG>", b"sig", b"{}", _Frame(b"header"), memoryview(buffer)])
    buffer[:] = b"after!"
    (_, _, parts), = journal.read(0)[0]
    assert parts[3] == b"header" and parts[4] == b"before"
