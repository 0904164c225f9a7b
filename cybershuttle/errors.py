"""One exception hierarchy for every front end.

Messages say what was wrong and what to do; the CLI prints them on one line,
the magics as a short red line, the REST API as JSON with a 4xx status.
"""
from __future__ import annotations


class CybershuttleError(Exception):
    """Base of every error a user is meant to read."""

    #: exit status the CLI uses for this kind of error
    exit_code: int = 1
    #: HTTP status the REST API uses for this kind of error
    http_status: int = 400
    #: What the user can do next, as (action, subject), e.g. ("runtime.request", "hpc"). The core
    #: names the action; each front end words it in its own syntax (a magic, a CLI verb), so a core
    #: message never shows one front end's commands to another's users. None: nothing to add.
    next_step: tuple[str, str] | None = None

    def __init__(self, *args: object, next_step: tuple[str, str] | None = None) -> None:
        super().__init__(*args)
        if next_step is not None:
            self.next_step = next_step


class UsageError(CybershuttleError):
    """The command line or call was malformed (unknown verb, bad option)."""

    exit_code = 2


class InvalidNameError(CybershuttleError):
    """A name that is not `[A-Za-z0-9][A-Za-z0-9._-]*`."""


class ScriptValueError(CybershuttleError):
    """A value bound for a job script (an `#SBATCH` line, a pip command line) that could change its meaning."""


class NotFoundError(CybershuttleError):
    """A named thing (storage, dataset, resource, ...) that does not exist."""

    http_status = 404


class AlreadyExistsError(CybershuttleError):
    """A name already taken in the catalog."""

    http_status = 409


class SetupFileError(CybershuttleError):
    """A cybershuttle.yml that cannot be read or has a wrong type."""


class SSHError(CybershuttleError):
    """Connecting or authenticating over SSH failed."""

    http_status = 502


class HostKeyError(SSHError):
    """The server's host key is unknown or does not match known_hosts."""


class RemoteCommandError(CybershuttleError):
    """A command run on a resource exited non-zero."""

    http_status = 502


class OutputTooLargeError(RemoteCommandError):
    """A command wrote more than a caller may hold in memory: read it in pieces or stream it."""
