"""The kernel-side output journal (`durable_kernel.Journal`): every IOPub message kept in wire order, bounded,
whether the sending thread wrote it (small messages) or the journal's own thread did (large ones)."""
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


def test_small_and_large_messages_come_back_in_order_with_their_bytes(dk, tmp_path):
    journal = dk.Journal(str(tmp_path / "journal"), 64 << 20)
    sizes = [10, 3 << 20, 20, 30, 200 << 10, 5, 0, 1 << 20, 7]  # large ones go through the writer thread
    for seq, size in enumerate(sizes, 1):
        journal.append(seq, _message(seq, size))
    records, first = journal.read(0)
    assert first == 1
    assert [seq for seq, _, _ in records] == list(range(1, len(sizes) + 1))
    for (seq, _, parts), size in zip(records, sizes):
        expected = _message(seq, size)
        assert parts[:2] == expected[:2] and parts[2] == bytes(expected[2].buffer) and parts[3] == expected[3]
    assert journal.read(len(sizes)) == ([], None)


def test_the_journal_keeps_the_newest_output_within_its_bound(dk, tmp_path):
    limit = 1 << 18
    journal = dk.Journal(str(tmp_path / "journal"), limit)
    for seq in range(1, 401):
        journal.append(seq, _message(seq, 3000 if seq % 50 else 100 << 10))
    records, first = journal.read(0)
    assert records[-1][0] == 400 and first > 1 and [r[0] for r in records] == list(range(first, 401))
    journal.drain()
    on_disk = sum(Path(p).stat().st_size for p in journal.paths if Path(p).exists())
    assert on_disk <= limit + (100 << 10) + 1024


def test_a_record_written_in_pieces_by_the_os_is_still_whole(dk, tmp_path, monkeypatch):
    import os

    real = os.writev

    def at_most_7_bytes(fd, buffers):  # what a signal or a nearly full disk can do to one writev
        data = b"".join(bytes(b) for b in buffers)[:7]
        return real(fd, [data])

    monkeypatch.setattr(dk.os, "writev", at_most_7_bytes)
    journal = dk.Journal(str(tmp_path / "journal"), 64 << 20)
    journal.append(1, _message(1, 100))
    journal.append(2, _message(2, 70 << 10))
    records, _ = journal.read(0)
    assert [(seq, parts[3]) for seq, _, parts in records] == [(1, bytes([1]) * 100), (2, bytes([2]) * (70 << 10))]
