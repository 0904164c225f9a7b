"""Multi-factor SSH: a key, then a keyboard-interactive one-time code, asked once.

The loopback sshd runs without PAM and cannot ask for a code, so this test
runs a small paramiko SSH server with the policy HPC centres use:
`AuthenticationMethods publickey,keyboard-interactive`.
"""
from __future__ import annotations

import socket
import subprocess
import threading

import paramiko
import pytest

from cybershuttle.errors import SSHError
from cybershuttle.ssh import Endpoint, Pool

CODE = "123456"


class _MfaServer(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey) -> None:
        self.client_key = client_key
        self.key_ok = False

    def get_allowed_auths(self, username: str) -> str:
        return "keyboard-interactive" if self.key_ok else "publickey"

    def check_auth_publickey(self, username, key):
        if key == self.client_key:
            self.key_ok = True
            return paramiko.AUTH_PARTIALLY_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_interactive(self, username, submethods):
        if not self.key_ok:
            return paramiko.AUTH_FAILED
        query = paramiko.InteractiveQuery("Duo", "Enter the code from your token")
        query.add_prompt("Verification code: ", False)
        return query

    def check_auth_interactive_response(self, responses):
        return paramiko.AUTH_SUCCESSFUL if list(responses) == [CODE] else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        def answer():
            # Half-close only: closing could overtake the exec reply and the client
            # would see "Channel closed" before it knew the command had started.
            channel.sendall(b"ran: " + bytes(command) + b"\n")
            channel.send_exit_status(0)
            channel.shutdown_write()

        threading.Thread(target=answer, daemon=True).start()
        return True


@pytest.fixture
def mfa_server(tmp_path):
    keyfile = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    client_key = paramiko.PKey.from_path(keyfile)
    host_key = paramiko.ECDSAKey.generate()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    transports = []

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(sock)
            t.add_server_key(host_key)
            t.start_server(server=_MfaServer(client_key))
            transports.append(t)

    threading.Thread(target=serve, daemon=True).start()
    yield Endpoint("127.0.0.1", port, "alice", key=str(keyfile), known_hosts=str(known))
    listener.close()
    for t in transports:
        t.close()


def test_key_then_one_time_code_is_asked_once_and_the_connection_reused(mfa_server):
    asked = []

    def prompter(prompt: str, secret: bool) -> str:
        asked.append((prompt, secret))
        return CODE

    pool = Pool()
    try:
        conn = pool.connect(mfa_server, prompter)
        assert conn.run("hostname").stdout == "ran: hostname\n"
        assert pool.connect(mfa_server, prompter).run("id").stdout == "ran: id\n"
    finally:
        pool.close_all()
    assert asked == [("Verification code: ", True)]


def test_wrong_one_time_code_is_refused_clearly(mfa_server):
    pool = Pool()
    with pytest.raises(SSHError, match="keyboard-interactive authentication failed"):
        pool.connect(mfa_server, lambda prompt, secret: "000000")
    pool.close_all()


def test_a_prompt_without_a_terminal_says_how_to_answer_it(mfa_server, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO())
    pool = Pool()
    with pytest.raises(SSHError, match="no terminal to answer it.*%authenticate"):
        pool.connect(mfa_server)
    pool.close_all()
