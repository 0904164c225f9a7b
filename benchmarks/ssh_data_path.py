"""What a C SSH library in our process would buy over paramiko: the same sshd, key and cipher
(aes128-gcm), in one run.

  echo  100-byte messages through `cat` on an exec channel, one round trip at a time
        (what a trivial cell's messages cost the client process);
  bulk  20 MB from `head -c` on an exec channel, read to the end (a large output).

paramiko gets the window and packet size our kernel channels use (ssh.BULK_WINDOW, BULK_PACKET);
libssh2 (ssh2-python) its defaults. The libssh2 side is a comparator only, never a dependency: the
script runs itself in a venv of its own, made on first use (`python -m venv` + pip into VENV).
Paths alternate (paramiko, libssh2, paramiko, ...); each figure is the median of its rounds. The last
line is `echo_cpu_ratio=<libssh2/paramiko CPU per round trip> echo_rtt_ratio=<median round trip>
bulk_cpu_ratio=<libssh2/paramiko CPU per 20 MB>`.

    python benchmarks/ssh_data_path.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env, comparator_python  # noqa: E402

VENV = Path("/var/tmp/cybershuttle-bench-ssh2")
ECHOES = 2000
BULK = "head -c 20000000 /dev/zero"
CIPHER = "aes128-gcm@openssh.com"


def echo_and_bulk(chan_for, write, read) -> tuple[float, float, float]:
    """(CPU µs per echo round trip, median round trip µs, CPU ms for the bulk read)."""
    chan = chan_for("cat")
    msg = b"x" * 100

    def round_trip() -> None:
        write(chan, msg)
        got = 0
        while got < len(msg):
            got += len(read(chan, len(msg) - got))

    for _ in range(50):
        round_trip()
    times, cpu = [], time.process_time()
    for _ in range(ECHOES):
        start = time.perf_counter()
        round_trip()
        times.append(time.perf_counter() - start)
    echo_cpu = (time.process_time() - cpu) / ECHOES * 1e6
    chan.close()
    chan, n, cpu = chan_for(BULK), 0, time.process_time()
    while data := read(chan, 1 << 26):
        n += len(data)
    assert n == 20_000_000, n
    return echo_cpu, statistics.median(times) * 1e6, (time.process_time() - cpu) * 1e3


def with_paramiko(c: dict) -> tuple[float, float, float]:
    import paramiko

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cybershuttle.ssh import BULK_PACKET, BULK_WINDOW

    sock = socket.create_connection((c["CS_TEST_HOST"], int(c["CS_TEST_PORT"])))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.get_security_options().ciphers = (CIPHER,)
    transport.start_client()
    transport.auth_publickey(c["CS_TEST_USER"], paramiko.PKey.from_path(c["CS_TEST_KEY"]))

    def chan_for(command: str):
        chan = transport.open_session(window_size=BULK_WINDOW, max_packet_size=BULK_PACKET)
        chan.exec_command(command)
        return chan

    try:
        return echo_and_bulk(chan_for, lambda ch, m: ch.sendall(m), lambda ch, n: ch.recv(n))
    finally:
        transport.close()


def with_libssh2(c: dict) -> tuple[float, float, float]:
    from ssh2.session import LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC, Session

    sock = socket.create_connection((c["CS_TEST_HOST"], int(c["CS_TEST_PORT"])))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    session = Session()
    session.method_pref(LIBSSH2_METHOD_CRYPT_CS, CIPHER)
    session.method_pref(LIBSSH2_METHOD_CRYPT_SC, CIPHER)
    session.handshake(sock)
    session.userauth_publickey_fromfile(c["CS_TEST_USER"], c["CS_TEST_KEY"])

    def chan_for(command: str):
        chan = session.open_session()
        chan.execute(command)
        return chan

    def read(chan, n: int) -> bytes:
        size, data = chan.read(min(n, 1 << 20))
        return data[:size] if size > 0 else b""

    try:
        return echo_and_bulk(chan_for, lambda ch, m: ch.write(m), read)
    finally:
        session.disconnect()
        sock.close()


def venv_python() -> Path | None:
    import paramiko

    return comparator_python(VENV, ["ssh2-python", f"paramiko=={paramiko.__version__}"],
                             "import ssh2.session, paramiko", "ssh_data_path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.in_venv:
        python = venv_python()
        if python is None:
            sys.exit(1)
        os.execv(str(python), [str(python), __file__, "--in-venv", "--rounds", str(args.rounds)])
    c = cluster_env()
    figures: dict[str, list[tuple[float, float, float]]] = {"paramiko": [], "libssh2": []}
    for _ in range(args.rounds):
        figures["paramiko"].append(with_paramiko(c))
        figures["libssh2"].append(with_libssh2(c))
    med = {name: [statistics.median(f[i] for f in runs) for i in range(3)] for name, runs in figures.items()}
    for name, (echo_cpu, rtt, bulk_cpu) in med.items():
        print(f"{name}: echo 100 B: {echo_cpu:.0f} us CPU per round trip, median round trip {rtt:.0f} us; "
              f"20 MB: {bulk_cpu:.0f} ms CPU", flush=True)
    p, lib = med["paramiko"], med["libssh2"]
    print(f"echo_cpu_ratio={lib[0] / p[0]:.2f} echo_rtt_ratio={lib[1] / p[1]:.2f} bulk_cpu_ratio={lib[2] / p[2]:.2f}")


if __name__ == "__main__":
    main()
