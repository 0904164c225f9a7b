"""The one SSH connection pool: every SSH use in Cybershuttle goes through it.

One authenticated paramiko transport per (user, host, port) carries commands,
SFTP and port forwards alike, so a notebook that runs a job, copies a file and
forwards five kernel ports still authenticates (and asks for an OTP) once.

Host keys are always checked against a known_hosts file; an unknown host is
refused with the command that trusts it. Sockets get TCP_NODELAY: without it a
small kernel message can wait ~40 ms for Nagle's algorithm; the server's side gets
it from the first session started on the connection (`Connection._nodelay`).
"""
from __future__ import annotations

import getpass
import logging
import shlex
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import paramiko

from .errors import HostKeyError, OutputTooLargeError, RemoteCommandError, SSHError

CONNECT_TIMEOUT_S = 15.0  # TCP connect, SSH handshake, each channel open and each request's answer
#: A command or stream that has said nothing for this long has its connection probed (a channel
#: opened and closed): a host that went away is an SSHError within PROBE_S + CONNECT_TIMEOUT_S,
#: even during a wait that may rightly last hours.
PROBE_S = 30.0
SFTP_TIMEOUT_S = 60.0  # each SFTP request's answer (not a whole transfer)
#: The most stdout `Connection.run` keeps in memory; beyond it the caller must read in pieces or stream.
MAX_OUTPUT = 64 * 2**20
KEEPALIVE_S = 30
# Channels that carry a kernel's bytes (its sockets, a relay under a node's session): a window that lets
# a 20 MB output cross without waiting for window adjusts, in packets 8x paramiko's default, so its
# per-packet Python costs less. Measured (benchmarks/cell_throughput.py, one 20 MB write, same run):
# 2 MiB/32 KiB 1.26-1.32x a local kernel, 32-64 MiB/256 KiB 1.16-1.22x.
BULK_WINDOW = 32 * 2**20
BULK_PACKET = 256 * 2**10
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


class _QuietExpected(logging.Filter):
    """Drops paramiko's records of what our callers expect, handle and report themselves.

    * A channel refused because nothing listens yet (or any more): forwarding a kernel's ports retries
      while it starts, restarts or after it exited, dozens of times per runtime start and stop, and every
      caller of `open_tunnel`/`open_unix` gets the refusal as an SSHError.
    * A channel the server will not open (forwarding prohibited or limited): a node's hop then goes
      through our relay (`_hop`), and a forward logs it once itself.
    * A transport whose socket died ("Socket exception: Connection reset by peer"): in a notebook that
      line lands in the running cell; the pool opens a fresh transport on the next use, and a connection
      that cannot be re-established is an SSHError that says so.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        # TCP: "...: Connection refused: Connect failed"; a Unix socket: "...: open failed: Connect failed"
        # (OpenSSH words a Unix socket nobody listens on like any channel it will not open)
        refused = msg.startswith("Secsh channel") and (msg.endswith(" open FAILED: Connection refused: Connect failed")
                                                       or msg.endswith(" open FAILED: open failed: Connect failed")
                                                       or msg.endswith(": Administratively prohibited"))
        return not (refused or msg.startswith("Socket exception: "))


logging.getLogger("paramiko.transport").addFilter(_QuietExpected())


class Prompter(Protocol):
    """Asks the person at the front end in use (terminal, notebook) for an answer."""

    def __call__(self, prompt: str, secret: bool) -> str: ...


@dataclass(frozen=True)
class Endpoint:
    """How to reach one SSH server as one user."""

    host: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key: str | None = None  # private key file; None: agent, then ~/.ssh/id_*
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    via: Endpoint | None = None  # reach this host through another (a compute node through its login node)
    # How the `via` host reaches this one: "tcpip" (the via sshd's direct-tcpip, as OpenSSH's ProxyJump; our
    # relay when that sshd will not open it) or "relay" (always our relay program on the via host: runtime/relay.py).
    hop: str = "tcpip"

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}" + (f" via {self.via.host}" if self.via else "")

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts or "~/.ssh/known_hosts").expanduser()

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files use for this server."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def openssh_options(self) -> list[str]:
        """The same settings as OpenSSH client options (for scp/rsync fast paths)."""
        opts = ["-p", str(self.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}"]
        if self.key:
            opts += ["-i", str(Path(self.key).expanduser()), "-o", "IdentitiesOnly=yes"]
        return opts


@dataclass(frozen=True)
class Result:
    """What a remote command did."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, where: str) -> Result:
        """Return self, or raise RemoteCommandError with the command's last line of output."""
        if not self.ok:
            detail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise RemoteCommandError(f"{where}: {self.command!r} exited with {self.exit_code}: {detail[0]}")
        return self


class Connection:
    """One authenticated transport; cheap channels for commands, SFTP and forwards."""

    def __init__(self, endpoint: Endpoint, transport: paramiko.Transport) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._session_started = False  # see _nodelay
        self._nodelay_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            stdin: bytes | None = None, login_shell: bool = False, max_output: int = MAX_OUTPUT) -> Result:
        """Run `command` (a shell string: quote what you put in it) and collect its output.

        `login_shell` runs it under `bash -lc`, which is where `module` exists
        on HPC systems. `timeout` bounds the whole command; without one, a
        command that stays quiet has its connection probed (see PROBE_S), so a
        host that went away is an SSHError, never a hang. More than
        `max_output` bytes of stdout is an OutputTooLargeError (stream big
        output with `stream`); of stderr only the last `max_output` bytes are kept.
        """
        remote = f"bash -lc {shlex.quote(command)}" if login_shell else command
        deadline = None if timeout is None else time.monotonic() + timeout
        chan = self.session(lambda c: c.exec_command(remote), f"starting {command!r}")
        with chan:
            err = bytearray()
            # stderr is drained in a thread so a command writing a lot to both
            # streams cannot fill one window while we block on the other.
            reader = threading.Thread(target=_drain_stderr, args=(chan, err, max_output), daemon=True)
            reader.start()
            out = bytearray()

            def keep(data: bytes) -> None:
                if len(out) + len(data) > max_output:
                    raise OutputTooLargeError(
                        f"{self.endpoint.label}: {command!r} wrote more than {max_output // 2**20} MiB: "
                        "read its output in pieces or stream it")
                out.extend(data)

            try:
                if stdin is not None:
                    chan.settimeout(timeout if timeout is not None else CONNECT_TIMEOUT_S + PROBE_S)
                    chan.sendall(stdin)
                chan.shutdown_write()
                self._pump(chan, keep, deadline, command, timeout)
                reader.join(CONNECT_TIMEOUT_S)
                code = self._exit_status(chan, command)
            except socket.timeout as exc:
                raise RemoteCommandError(f"{self.endpoint.label}: {command!r} did not take its input within "
                                         f"{timeout} s") from exc
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SSHError(f"{self.endpoint.label}: the connection dropped while running {command!r} "
                               f"({exc})") from exc
        result = Result(command, code, out.decode(errors="replace"), bytes(err).decode(errors="replace"))
        return result.check(self.endpoint.label) if check else result

    def stream(self, command: str, sink: Callable[[bytes], None], *, login_shell: bool = False,
               timeout: float | None = None) -> int:
        """Run `command`, handing its stdout (stderr merged) to `sink` as it arrives.

        Returns the exit code. A dropped connection (or one that stopped
        answering: see PROBE_S) raises SSHError, so the caller can reconnect
        and resume from what `sink` already received. `timeout` bounds the whole
        command (RemoteCommandError); without one it may run as long as it likes.
        """
        remote = f"bash -lc {shlex.quote(command)}" if login_shell else command
        deadline = None if timeout is None else time.monotonic() + timeout

        def start(chan: paramiko.Channel) -> None:
            chan.set_combine_stderr(True)
            chan.exec_command(remote)

        chan = self.session(start, f"starting {command!r}")
        try:
            with chan:
                chan.shutdown_write()
                self._pump(chan, sink, deadline, command, timeout)
                if not self.transport.is_active():
                    raise SSHError(f"{self.endpoint.label}: the connection dropped")
                return self._exit_status(chan, command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.endpoint.label}: the connection dropped ({exc})") from exc

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session (opened once, shared). Each SFTP request waits at most
        SFTP_TIMEOUT_S for its answer (socket.timeout, an OSError), never forever."""
        with self._lock:
            if self._sftp is None or self._sftp.sock.closed:
                chan = self.session(lambda c: c.invoke_subsystem("sftp"), "opening SFTP")
                chan.settimeout(SFTP_TIMEOUT_S)
                try:
                    self._sftp = paramiko.SFTPClient(chan)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    chan.close()
                    raise SSHError(f"{self.endpoint.label}: the SFTP server did not start ({exc})") from exc
            assert self._sftp is not None
            return self._sftp

    def _nodelay(self) -> None:
        """Make sure the server has started a session on this connection before it forwards anything.

        OpenSSH's sshd turns TCP_NODELAY on for its connection when the first session starts (an exec,
        a shell or a subsystem) and never before: a connection that only forwards keeps Nagle's
        algorithm, and every burst of small kernel messages waits for our delayed ACK, ~40 ms a cell
        (measured on a node's connection through its login node and on a login connection alike: 48 ms
        a cell against 5-6 ms; a pooled connection re-made after a drop may well only forward). So a connection
        about to forward before it ran anything starts one session (`true`); only the request's answer
        is awaited, never the command. A server that refuses it still forwards, only slower.
        """
        if self._session_started:
            return
        with self._nodelay_lock:
            if self._session_started:
                return
            try:
                self.session(lambda c: c.exec_command("true"), "starting a session").close()
            except SSHError:
                pass  # forwarding still works (only slower); a lost connection fails the forward itself
            self._session_started = True

    def open_tunnel(self, remote_host: str, remote_port: int) -> paramiko.Channel:
        """A direct-tcpip channel to `remote_host:remote_port` as seen by the server."""
        self._nodelay()
        try:
            return self.transport.open_channel(
                "direct-tcpip", (remote_host, remote_port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT_S,
                window_size=BULK_WINDOW, max_packet_size=BULK_PACKET,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.endpoint.label}: cannot forward to {remote_host}:{remote_port}: {exc}") from exc

    def open_unix(self, path: str) -> paramiko.Channel:
        """A channel to the Unix socket `path` on the server (OpenSSH's `direct-streamlocal@openssh.com`).

        A refusal is a `paramiko.ChannelException` with code OPEN_FAILED_CONNECT_FAILED in the
        SSHError's cause (see `forward.refused`). OpenSSH answers so both when nothing listens
        there and when it forbids such channels (`AllowStreamLocalForwarding no`): see
        `runtime.transports.ssh_forwards_unix_sockets` for telling them apart.
        """
        self._nodelay()
        try:
            return _open_streamlocal(self.transport, path, CONNECT_TIMEOUT_S)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.endpoint.label}: cannot forward to the Unix socket {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except (paramiko.SSHException, OSError, EOFError):
                    pass  # a connection that is already gone is closed enough
                self._sftp = None
        self.transport.close()

    # -- bounded waiting -----------------------------------------------------
    def session(self, start: Callable[[paramiko.Channel], None], doing: str, *, bulk: bool = False) -> paramiko.Channel:
        """A session channel on which `start` (an exec or subsystem request) has been answered, e.g.
        `conn.session(lambda c: c.exec_command(cmd), f"starting {cmd!r}")`; SSHError if it is not.

        paramiko waits for the server's answer to such a request without a
        limit; a watchdog closes the channel after CONNECT_TIMEOUT_S, which
        ends that wait. Use it for every channel you exec on. `bulk`: a channel that carries a kernel's
        bytes (BULK_WINDOW, BULK_PACKET).
        """
        try:
            chan = self.transport.open_session(timeout=CONNECT_TIMEOUT_S,
                                               **({"window_size": BULK_WINDOW, "max_packet_size": BULK_PACKET}
                                                  if bulk else {}))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.endpoint.label}: cannot open a channel ({exc}); the connection was lost") from exc
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            chan.close()

        watchdog = threading.Timer(CONNECT_TIMEOUT_S, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            start(chan)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            chan.close()
            if fired.is_set():
                raise SSHError(f"{self.endpoint.label}: no answer within {CONNECT_TIMEOUT_S:g} s while {doing}; "
                               "the server may be overloaded or gone") from exc
            raise SSHError(f"{self.endpoint.label}: the server refused {doing} ({exc})") from exc
        finally:
            watchdog.cancel()
        self._session_started = True
        return chan

    def _pump(self, chan: paramiko.Channel, sink: Callable[[bytes], None], deadline: float | None,
              command: str, timeout: float | None) -> None:
        """Hand what `chan` sends to `sink` until its end; past `deadline` a RemoteCommandError.
        Silence longer than PROBE_S is answered by a probe of the connection."""
        while True:
            wait = PROBE_S if deadline is None else max(0.0, min(PROBE_S, deadline - time.monotonic()))
            chan.settimeout(wait)
            try:
                data = chan.recv(65536)
            except socket.timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise RemoteCommandError(
                        f"{self.endpoint.label}: {command!r} did not finish within {timeout} s") from None
                self.probe(f"waiting for {command!r}")
                continue
            if not data:
                return
            sink(data)

    def _exit_status(self, chan: paramiko.Channel, command: str) -> int:
        # The exit status follows the end of output; paramiko's recv_exit_status would wait for it forever.
        if not chan.status_event.wait(CONNECT_TIMEOUT_S):
            raise SSHError(f"{self.endpoint.label}: {command!r} ended but its exit status did not arrive within "
                           f"{CONNECT_TIMEOUT_S:g} s; the connection may be gone")
        code = chan.exit_status
        if code == -1 and not self.transport.is_active():
            raise SSHError(f"{self.endpoint.label}: the connection dropped while running {command!r}")
        return code

    def probe(self, doing: str) -> None:
        """Prove that the server still answers (a channel opened and closed), or close the
        connection and raise SSHError: a host that went away must not leave a wait hanging."""
        try:
            chan = self.transport.open_session(timeout=CONNECT_TIMEOUT_S)
        except paramiko.ChannelException:
            return  # refused (MaxSessions reached): that is an answer
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.transport.close()
            raise SSHError(f"{self.endpoint.label}: the server stopped answering while {doing} (no reply within "
                           f"{CONNECT_TIMEOUT_S:g} s); check the host and your network, then retry") from exc
        chan.close()


class Pool:
    """Connections keyed by endpoint, re-established when they drop.

    The key is the whole endpoint (user, host, port, key, known_hosts), not
    just (user, host, port): a transport verified against one known_hosts
    file must not be handed to a caller who pinned another.
    """

    def __init__(self) -> None:
        self._connections: dict[Endpoint, Connection] = {}
        self._keys: dict[str, paramiko.PKey] = {}  # decrypted keys: a passphrase is asked once
        # `_lock` guards the two dicts only and is never held while connecting: one host that
        # accepts TCP and never speaks SSH must not stall everyone else's connections. Callers of
        # the same endpoint wait for one another on its gate, so a host is dialled once at a time.
        self._lock = threading.Lock()
        self._gates: dict[Endpoint, threading.Lock] = {}
        self._keys_lock = threading.Lock()  # one passphrase prompt per key, even from two threads

    def connect(self, endpoint: Endpoint, prompter: Prompter | None = None) -> Connection:
        """A live connection to `endpoint`, reusing the pooled one when it is alive."""
        with self._lock:
            conn = self._connections.get(endpoint)
            if conn is not None and conn.alive:
                return conn
            gate = self._gates.setdefault(endpoint, threading.Lock())
        with gate:
            with self._lock:
                conn = self._connections.get(endpoint)
                if conn is not None and conn.alive:
                    return conn  # another caller connected while we waited at the gate
            conn = Connection(endpoint, self._open(endpoint, prompter or getattr(_thread_default, "prompter", None)
                                                   or terminal_prompter))
            with self._lock:
                self._connections[endpoint] = conn
            return conn

    def drop(self, endpoint: Endpoint) -> None:
        """Close and forget the pooled connection to `endpoint` (if any)."""
        with self._lock:
            conn = self._connections.pop(endpoint, None)
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            conn.close()

    # -- connecting --------------------------------------------------------
    def _open(self, endpoint: Endpoint, prompter: Prompter) -> paramiko.Transport:
        known = _known_keys(endpoint)
        sock: socket.socket | paramiko.Channel
        if endpoint.via is not None:
            # A second SSH session inside a channel of the first (the relay's exec channel, or a
            # direct-tcpip one): the node is checked and authenticated like any other host.
            sock = _Drained(_hop(self.connect(endpoint.via, prompter), endpoint))
        else:
            try:
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise SSHError(f"cannot reach {endpoint.host}:{endpoint.port} ({exc}): check the host, the port "
                               "and your network") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        options = transport.get_security_options()
        # AES-GCM first (paramiko prefers AES-CTR): one AEAD call per packet instead of AES and a separate
        # HMAC makes large kernel output ~25% faster (benchmarks/cell_throughput.py); same strength.
        options.ciphers = tuple(sorted(options.ciphers, key=lambda name: not name.endswith("-gcm@openssh.com")))
        if known:
            # Negotiate a host key type we have on record, so a server that also
            # offers another type is not mistaken for an unknown one.
            supported = set(transport.get_security_options().key_types)
            transport.get_security_options().key_types = [t for t in known if t in supported] or list(supported)
        try:
            try:
                transport.start_client(timeout=CONNECT_TIMEOUT_S)
                if not transport.initial_kex_done:  # paramiko returns, not raises, when its wait runs out
                    raise paramiko.SSHException(f"no SSH banner or key exchange within {CONNECT_TIMEOUT_S:g} s")
            except (paramiko.SSHException, OSError, EOFError) as exc:
                # Something listens but does not speak SSH (or hung up): say so, not a paramiko traceback.
                raise SSHError(f"{endpoint.label}: no SSH handshake ({exc}): check that an SSH server "
                               f"listens on port {endpoint.port}") from exc
            _check_host_key(endpoint, transport.get_remote_server_key(), known)
            self._authenticate(endpoint, transport, prompter)
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(KEEPALIVE_S)
        return transport

    def _authenticate(self, endpoint: Endpoint, transport: paramiko.Transport, prompter: Prompter) -> None:
        remaining: list[str] = []
        tried: list[str] = []
        for label, key in self._candidate_keys(endpoint, prompter):
            tried.append(label)
            try:
                remaining = transport.auth_publickey(endpoint.user, key)
            except paramiko.BadAuthenticationType as exc:
                remaining = list(exc.allowed_types)
                break
            except paramiko.AuthenticationException:
                continue
            break
        if transport.is_authenticated():
            return
        if "keyboard-interactive" in remaining or (not tried and not remaining):
            try:
                transport.auth_interactive(endpoint.user, _interactive_handler(prompter))
            except paramiko.AuthenticationException as exc:
                raise SSHError(f"{endpoint.label}: keyboard-interactive authentication failed ({exc})") from exc
            if transport.is_authenticated():
                return
        keys = ", ".join(tried) or "none found (no key given, no agent, no ~/.ssh/id_*)"
        # A compute node (reached through its login node) lets in only users with a job there, on most sites.
        node = " (a compute node also refuses users who hold no job on it)" if endpoint.via is not None else ""
        raise SSHError(f"{endpoint.label}: authentication failed; keys tried: {keys}. "
                       f"Check the user name and that the public key is in the server's authorized_keys{node}")

    def _candidate_keys(self, endpoint: Endpoint, prompter: Prompter):
        if endpoint.key:
            yield endpoint.key, self._load_key(Path(endpoint.key).expanduser(), prompter)
            return
        try:
            for i, key in enumerate(paramiko.Agent().get_keys()):
                yield f"agent key {i + 1}", key
        except paramiko.SSHException:
            pass
        for name in _DEFAULT_KEYS:
            path = Path("~/.ssh").expanduser() / name
            if path.is_file():
                yield str(path), self._load_key(path, prompter)

    def _load_key(self, path: Path, prompter: Prompter) -> paramiko.PKey:
        with self._keys_lock:
            return self._load_key_once(path, prompter)

    def _load_key_once(self, path: Path, prompter: Prompter) -> paramiko.PKey:
        cache_key = str(path.resolve())
        if cache_key in self._keys:
            return self._keys[cache_key]
        if not path.is_file():
            raise SSHError(f"SSH key {path} does not exist: give the path of your private key")
        try:
            key = paramiko.PKey.from_path(path)
        except (paramiko.PasswordRequiredException, TypeError):
            # paramiko's own loaders raise PasswordRequiredException; the
            # cryptography-backed OpenSSH loader raises TypeError.
            passphrase = prompter(f"Passphrase for SSH key {path}: ", True)
            try:
                key = paramiko.PKey.from_path(path, passphrase.encode())
            except (paramiko.SSHException, ValueError, TypeError) as exc:
                raise SSHError(f"cannot decrypt SSH key {path}: wrong passphrase?") from exc
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise SSHError(f"cannot read SSH key {path}: {exc}") from exc
        self._keys[cache_key] = key
        return key


#: The process-wide pool.
pool = Pool()


def connect(endpoint: Endpoint, prompter: Prompter | None = None) -> Connection:
    """A pooled, authenticated connection to `endpoint`."""
    return pool.connect(endpoint, prompter)


_thread_default = threading.local()


@contextmanager
def prompting(prompter: Prompter) -> Iterator[None]:
    """Answer SSH prompts with `prompter` in calls made by this thread that name none (a server's
    worker threads have no terminal, and must not ask the one `jupyter lab` was started from)."""
    before = getattr(_thread_default, "prompter", None)
    _thread_default.prompter = prompter
    try:
        yield
    finally:
        _thread_default.prompter = before


def terminal_prompter(prompt: str, secret: bool) -> str:
    """Ask on the controlling terminal; refuse clearly where there is none."""
    if not sys.stdin or not sys.stdin.isatty():
        raise SSHError(f"the SSH server asks {prompt.strip()!r} but there is no terminal to answer it: "
                       "run the command in a terminal, or `%authenticate` in a notebook")
    return getpass.getpass(prompt) if secret else input(prompt)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- helpers ---------------------------------------------------------------
def _known_keys(endpoint: Endpoint) -> dict[str, paramiko.PKey]:
    path = endpoint.known_hosts_path
    if not path.is_file():
        return {}
    try:
        host_keys = paramiko.HostKeys(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"cannot read known_hosts file {path}: {exc}") from exc
    entry = host_keys.lookup(endpoint.host_key_name)
    return dict(entry) if entry else {}


def _check_host_key(endpoint: Endpoint, key: paramiko.PKey, known: dict[str, paramiko.PKey]) -> None:
    path = endpoint.known_hosts_path
    if not known and endpoint.via is not None:
        # A node behind its login node is out of reach of ssh-keyscan here: give the known_hosts line itself.
        line = f"{endpoint.host_key_name} {key.get_name()} {key.get_base64()}"
        raise HostKeyError(
            f"the host key of node {endpoint.host_key_name} (seen through {endpoint.via.host}: {key.get_name()} "
            f"{fingerprint(key)}) is not in {path}. If that fingerprint is the node's, trust it with: "
            f"echo {shlex.quote(line)} >> {path}"
        )
    if not known:
        port = f"-p {endpoint.port} " if endpoint.port != 22 else ""
        raise HostKeyError(
            f"the host key of {endpoint.host_key_name} ({key.get_name()} {fingerprint(key)}) is not in {path}. "
            f"If that fingerprint is the server's, trust it with: ssh-keyscan {port}{endpoint.host} >> {path}"
        )
    recorded = known.get(key.get_name())
    if recorded is None or recorded != key:
        raise HostKeyError(
            f"the host key of {endpoint.host_key_name} does NOT match {path} (got {key.get_name()} "
            f"{fingerprint(key)}): someone may be intercepting the connection. If the server was "
            f"reinstalled, remove the old key with: ssh-keygen -R '{endpoint.host_key_name}' -f {path}"
        )


def _interactive_handler(prompter: Prompter) -> Callable[[str, str, list[tuple[str, bool]]], list[str]]:
    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        if instructions.strip():
            print(instructions.strip(), file=sys.stderr)
        return [prompter(text, not echo) for text, echo in prompts]

    return handler


def _hop(via: Connection, endpoint: Endpoint) -> paramiko.Channel:
    """A byte stream from the `via` host to `endpoint`'s host and port, for a second SSH session.

    The via sshd's direct-tcpip first (what ProxyJump uses; `Connection._nodelay` keeps the node's
    sshd from stalling on it). When that sshd will not open it (TCP forwarding forbidden or limited
    by `PermitOpen`, or the host cannot be reached), our relay program on the via host tries: it
    needs only an exec channel, and when it cannot connect either it says why in one line
    (does not resolve, refused, no route), which sshd's answer does not.
    """
    from .runtime import relay

    if endpoint.hop != "relay":
        try:
            return via.open_tunnel(endpoint.host, endpoint.port)
        except SSHError as exc:
            if not isinstance(exc.__cause__, paramiko.ChannelException):
                raise  # the via connection itself failed: nothing else would get through it
    return relay.open(via, endpoint.host, endpoint.port)


class _Drained:
    """A channel as the socket of a second SSH session, read in whole buffers.

    paramiko's transport reads its socket a packet header and a packet at a time;
    a channel serves each such read by cutting it off the front of its buffer,
    which moves everything behind it (up to the window, 32 MiB) every time: a
    20 MB output through a node's session spent most of its time there. Here the
    channel's whole buffer is taken at once and the reads are served from it.
    """

    def __init__(self, chan: paramiko.Channel) -> None:
        self._chan = chan
        self._data = b""
        self._at = 0

    def recv(self, n: int) -> bytes:
        if self._at >= len(self._data):
            self._data = self._chan.recv(2 * BULK_WINDOW)  # all that is buffered; socket.timeout as a socket
            self._at = 0
            if not self._data:
                return b""
        out = self._data[self._at:self._at + n]
        self._at += len(out)
        return out

    def __getattr__(self, name: str):  # send, sendall, settimeout, close, ... as the channel's
        return getattr(self._chan, name)


def _open_streamlocal(transport: paramiko.Transport, path: str, timeout: float) -> paramiko.Channel:
    """`Transport.open_channel` for the channel type it does not know: its steps, with the
    streamlocal payload (socket path, two reserved fields: OpenSSH's PROTOCOL, section 2.4)."""
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message

    if not transport.is_active():
        raise paramiko.SSHException("SSH session not active")
    with transport.lock:
        window, packet = BULK_WINDOW, BULK_PACKET
        chanid = transport._next_channel()
        m = Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string("direct-streamlocal@openssh.com")
        m.add_int(chanid)
        m.add_int(window)
        m.add_int(packet)
        m.add_string(path)
        m.add_string("")
        m.add_int(0)
        chan = paramiko.Channel(chanid)
        transport._channels.put(chanid, chan)
        transport.channel_events[chanid] = event = threading.Event()
        transport.channels_seen[chanid] = True
        chan._set_transport(transport)
        chan._set_window(window, packet)
    transport._send_user_message(m)
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.is_active():
            raise transport.get_exception() or paramiko.SSHException("SSH session ended")
        if time.monotonic() > deadline:
            raise paramiko.SSHException("timeout opening the channel")
    opened = transport._channels.get(chanid)
    if opened is None:
        raise transport.get_exception() or paramiko.SSHException("the server refused the channel")
    return opened


def _drain_stderr(chan: paramiko.Channel, err: bytearray, keep: int) -> None:
    """Collect a command's stderr, keeping its last `keep` bytes (an error's explanation is at its end)."""
    while True:
        try:
            data = chan.recv_stderr(65536)
        except socket.timeout:
            if chan.closed:
                return
            continue
        except (OSError, EOFError):
            return  # the reader on stdout reports the timeout or the lost connection
        if not data:
            return
        err.extend(data)
        if len(err) > keep:
            del err[:len(err) - keep]
