"""The `Transport` contract: how a runtime's kernel is reached on the host it runs on.

A kernel binds Unix sockets in its 0700 job directory (or, where a transport
cannot reach those, 127.0.0.1 ports with CurveZMQ) on its own host. When that host is the resource's
(login) host, the pooled SSH connection forwards to it directly ("login").
When Slurm put it on a compute node, a transport carries the connections
there: SSH to the node through the login node ("node-ssh"), or, on sites that
forbid SSH to nodes, a relay started inside the job's allocation ("allocation").

A transport is a class registered in the entry-point group
`cybershuttle.transports` (see `cybershuttle.runtime.transports`). One
instance serves one runtime in one process; it may hold connections, which
`close()` releases.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ...compute.resources import Resource
    from ...compute.shell import Shell


class Transport(ABC):
    """Reaches one runtime's kernel host. Subclass it and register the class in `cybershuttle.transports`."""

    #: the entry-point name; a resource's `transport:` setting names it
    name: ClassVar[str] = ""
    #: one line for `compute show` (what the runtimes' connections go through)
    summary: ClassVar[str] = ""
    #: among the transports a resource allows, the lowest preference is used
    preference: ClassVar[int] = 100
    #: whether it reaches a compute node (False: the resource's own host only)
    for_nodes: ClassVar[bool] = True
    #: whether `open_unix` reaches Unix sockets on the kernel's host. A runtime whose transports all do
    #: gets a kernel on Unix sockets in its 0700 job directory: no TCP port, so no CurveZMQ needed.
    unix_sockets: ClassVar[bool] = False

    def __init__(self, res: Resource, rt: Any) -> None:
        self.res = res
        self.rt = rt  # runtime.Runtime

    @classmethod
    def allowed(cls, res: Resource, shell: Shell) -> str | None:
        """At registration: None when runtimes on `res` can use this transport, else why not (one line).

        `shell` runs commands on the resource's host; `res.facts` already holds
        what the scheduler found (partitions, nodes).
        """
        return None

    def start(self) -> None:
        """Get ready for the first channel (may take a moment: a relay to start); called before forwarding."""

    @abstractmethod
    def open_channel(self, host: str, port: int) -> Any:
        """A byte stream to `host:port` as seen on the kernel's host (a paramiko.Channel, or anything with
        fileno/setblocking/recv/send/sendall/close/closed): what `forward.Forwarder.add` forwards to."""

    def open_unix(self, path: str) -> Any:
        """A byte stream to the Unix socket `path` on the kernel's host (like `open_channel`); a transport
        that sets `unix_sockets` implements it."""
        from ...errors import CybershuttleError

        raise CybershuttleError(f"transport {self.name} cannot reach Unix sockets on the kernel's host")

    def openssh(self) -> Any:
        """The `ssh.Endpoint` whose SSH server reaches the kernel's Unix sockets or ports itself (its `via`, one
        login host at most, is the hop), when an OpenSSH client can carry the kernel's forwards there
        (`runtime/openssh_forward.py`: C, outside this process); None (the default): the in-process
        forwarder uses `open_unix`/`open_channel`."""
        return None

    def kernel_address(self, host: str) -> str:
        """Where the `openssh` server reaches a kernel's TCP ports that the runtime records at `host` (its
        127.0.0.1, as a rule); a transport that maps them elsewhere says where."""
        return host

    @abstractmethod
    def shell(self) -> Shell:
        """A `compute.shell.Shell` whose commands run on the kernel's host."""

    def background(self, command: str) -> tuple[Shell, str]:
        """Where a long-lived process running `command` on the kernel's host is started and later
        signalled (a runtime's subprocess): that shell, and `command` as that shell must run it."""
        return self.shell(), command

    def close(self) -> None:
        """Release what this instance holds (relays, node connections)."""
