"""What each permission of the API reaches, and where REST writes may land.

Jupyter's Authorizer is asked for `read` (GET), `write` (changes) or `execute` (anything
that runs code: template and model runs, session loads, application loads, starting a
kernel or a process, registering a resource, whose checks run a login shell on it). A
user given `write` but not `execute` must not be able to make code run by writing files
either: a copy or a mount into `~/.ssh` (authorized_keys), `~/.ipython/profile_*/startup`,
`~/.jupyter`, `~/.bashrc`, a git hook, an `.envrc`, or a `jupyter_server_config.py` in
the directory Jupyter starts in runs the writer's choice at the user's next login, kernel
or server start.

So every path a REST copy or mount would create is checked where it really lands
(symlinked directories resolved, on a remote host through its SFTP server): no component
of it may start with '.' (dot-directories and dot-files, of the home or anywhere; Jupyter's
own `.ipynb_checkpoints` excepted), and its name may not be one Python or Jupyter loads as
configuration or code on start. Every path a copy reads is checked the same way (links
followed): `write` does not grant reading `~/.ssh` into a storage others can read. Within
that, copies reach registered storages and mounts the Jupyter root (the handlers confine
the paths they are given). A terminal is not the REST API: the refusal says what to run there.
"""
from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from cybershuttle.errors import CybershuttleError

READ, WRITE, EXECUTE = "read", "write", "execute"

#: Dot-directories Jupyter itself writes notebook copies into (data, never loaded as code).
_HARMLESS_DOT = frozenset({".ipynb_checkpoints"})
#: Names loaded as configuration or code when Python, IPython or Jupyter start in (or import from) a directory.
_LOADED_ON_START = re.compile(r"(jupyter|ipython|ipython_kernel|ipykernel|jupyter_server|jupyter_notebook|"
                              r"jupyter_lab)[a-z_]*config\.(py|json)|sitecustomize\.py|usercustomize\.py|.*\.pth",
                              re.IGNORECASE)


class WriteRefused(CybershuttleError):
    """A REST write that would land where files make code run."""

    http_status = 403


def action_for(handler: Any, method: str) -> str:
    """The permission a request needs: `read` for GET/HEAD, else the handler's action for the method."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return READ
    return handler.method_actions.get(method, handler.post_action)


def write_guard(what: str, entry: str, owner: str, terminal: str) -> Any:
    """A `storage.copy` guard for a REST write (see the module doc); `entry`/`owner` name what is refused."""

    parents: dict[str, str] = {}  # a tree of many files into few directories resolves each directory once

    def guard(storage: Any, path: str) -> None:
        parent, name = posixpath.split(path)
        if parent not in parents:
            parents[parent] = _landing(storage, parent or ".", follow_last=True)
        check(posixpath.join(parents[parent], name), what, f"{entry} (owner {owner})", terminal)

    return guard


def read_guard(what: str, entry: str, owner: str, terminal: str) -> Any:
    """A `storage.copy` read guard: no copying out of dot-files and dot-directories (`~/.ssh/id_ed25519`
    into a storage others read), each source file's links followed to see where it really is: `write`
    does not grant reading what holds keys and tokens."""

    def guard(storage: Any, path: str) -> None:
        check(_landing(storage, path, follow_last=True), what, f"{entry} (owner {owner})", terminal, reading=True)

    return guard


def check_mounted_root(name: str, terminal: str) -> None:
    """Refuse mounting a storage whose files are in a dot-directory (its root, links followed): a mount in
    the Jupyter root would open them to writes the mount point check cannot see."""
    from cybershuttle import storage

    found = storage.get(name)
    root = storage.fs(name)._join("")
    check(_landing(found, root, follow_last=True), "mounting", f"storage {name!r} (owner {found.owner})", terminal)


def check(path: str, what: str, entry: str, terminal: str, reading: bool = False) -> None:
    """Refuse (one line: what, the entry, what to run instead) a write landing at `path` (or a read of it)."""
    bad = [part for part in path.split("/") if part.startswith(".") and part not in (".", "..", *_HARMLESS_DOT)]
    name = posixpath.basename(path.rstrip("/"))
    if bad or (not reading and _LOADED_ON_START.fullmatch(name)):
        why = f"{bad[0]!r} is a dot-file or dot-directory" if bad else f"{name!r} is loaded as code on start"
        where = f"{what} out of {entry} would read {path}" if reading else f"{what} into {entry} would write {path}"
        raise WriteRefused(f"{where}, and {why}: the write permission of the Cybershuttle API reaches registered "
                           f"storages and the Jupyter root, never where files hold keys or run code; if you mean "
                           f"it, run `{terminal}` in a terminal")


def _landing(storage: Any, path: str, follow_last: bool) -> str:
    """Where `path` of `storage` really is: symlinks resolved here or on the SFTP server (the last name too
    when it is read; a copy replaces a target's name, never writes through it)."""
    if storage.protocol == "file":
        return os.path.realpath(os.path.expanduser(path)) if follow_last else resolved_local(path)
    if storage.protocol == "sftp":
        return _resolved_sftp(storage.endpoint, path, follow_last)
    return path  # object stores and rclone remotes: no links, and nothing there starts code here


def lexical(path: str) -> str:
    """A path on a host this server cannot resolve paths on: normalised, checked as written."""
    return posixpath.normpath(path)


def resolved_local(path: str) -> str:
    """`path` with its directory's symlinks resolved (the last name is replaced, never followed, by a copy)."""
    parent, name = os.path.split(os.path.abspath(os.path.expanduser(path)))
    return os.path.join(os.path.realpath(parent), name)


def _resolved_sftp(endpoint: Any, path: str, follow_last: bool = False) -> str:
    """The same on an SFTP server: its realpath of the nearest existing directory, plus the rest."""
    from cybershuttle import ssh

    client = ssh.connect(endpoint).sftp()
    head, rest = (path, []) if follow_last else (posixpath.dirname(path) or ".", [posixpath.basename(path)])
    while True:
        try:
            return posixpath.join(client.normalize(head), *reversed(rest))
        except OSError:
            if head in ("", ".", "/"):
                return posixpath.join(head, *reversed(rest))
            head, tail = posixpath.split(head)
            rest.append(tail)
