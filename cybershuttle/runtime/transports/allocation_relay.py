"""The relay the "allocation" transport starts inside a runtime's job (standalone: stdlib only, Python 3.6+).

It runs as a step of the job (the scheduler's `step_command`), on the node the
kernel runs on, started over the login node's SSH session; nothing else is
needed on the node. Protocol:

* stdin, first line: a secret token (hex). It arrives through the step's
  stdin, never on a command line.
* stdout: one line `LISTEN <port>` once it listens (every address of the node,
  an ephemeral port), then nothing.
* Each TCP connection to that port first sends `<token> <host> <port>\\n`,
  or `<token> unix <absolute path>\\n`; with the right token and a loopback
  host the relay connects to host:port on the node (a runtime's web server),
  or to that Unix socket (the kernel's, in its job directory), answers one
  byte `+` and copies bytes both ways; anything else (a wrong token, nothing
  listening there) is closed without an answer.
* stdin at EOF (the SSH session that started it closed) ends the relay.

Why not carry the bytes over the step's own stdin/stdout: measured here,
the batch system's I/O forwarding holds bursts of small writes ~44 ms (its
Nagle meeting a delayed ACK, neither end ours). On the TCP connection the
relay accepts, our end sets TCP_NODELAY and re-arms TCP_QUICKACK after every
read, so neither side waits for the other's ACK.
"""
import hmac
import os
import socket
import sys
import threading
import time

HEADER_MAX = 512
HEADER_TIMEOUT_S = 10.0
#: connections that have not shown the token yet, at most (anyone on the cluster can connect)
UNPROVEN_MAX = 32
unproven = threading.BoundedSemaphore(UNPROVEN_MAX)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def tune(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if QUICKACK is not None:
        sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


def pump(src, dst):
    """Copy src to dst until EOF, then pass the EOF on (half-close)."""
    # Linux clears quick-ACK mode by itself: re-arm it after every read of a TCP socket (a Unix socket,
    # the kernel's, has no ACKs: asking would fail on every read)
    rearm = QUICKACK is not None and src.family != socket.AF_UNIX
    try:
        while True:
            data = src.recv(262144)
            if rearm:
                try:
                    src.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                except OSError:
                    pass
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
        try:
            sock.shutdown(how)
        except OSError:
            pass


def read_header(conn):
    conn.settimeout(HEADER_TIMEOUT_S)
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(HEADER_MAX - len(data))
        if not chunk or len(data) + len(chunk) >= HEADER_MAX:
            return None, b""
        data += chunk
    line, rest = data.split(b"\n", 1)
    conn.settimeout(None)
    return line.decode("utf-8", "replace").split(" ", 2), rest


def serve(conn, token):
    if not unproven.acquire(blocking=False):
        return conn.close()  # a flood of strangers must not starve the relay of threads
    try:
        try:
            words, rest = read_header(conn)
        finally:
            unproven.release()
        tune(conn)
        if not words or len(words) != 3 or not hmac.compare_digest(words[0].encode(), token):
            return conn.close()
        host, port = words[1], words[2]
        if host == "unix" and port.startswith("/"):
            target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                target.connect(port)
            except OSError:
                target.close()
                raise
        elif host in LOOPBACK and port.isdigit():
            target = socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT_S)
            target.settimeout(None)
            tune(target)
        else:
            return conn.close()
        conn.sendall(b"+")  # connected: the caller can tell a listening port from a refused one
        if rest:
            target.sendall(rest)
    except OSError:
        return conn.close()
    back = threading.Thread(target=pump, args=(target, conn), daemon=True)
    back.start()
    pump(conn, target)
    back.join()
    conn.close()
    target.close()


def main():
    token = sys.stdin.buffer.readline().strip()
    if len(token) < 32:
        sys.stderr.write("cybershuttle-relay: no token on stdin\n")
        sys.exit(2)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(64)
    sys.stdout.write("LISTEN %d\n" % listener.getsockname()[1])
    sys.stdout.flush()

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # e.g. out of descriptors for a moment: keep serving the connections we have
                time.sleep(0.1)
                continue
            threading.Thread(target=serve, args=(conn, token), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    while sys.stdin.buffer.read(65536):  # until the session that started us is gone
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
