"""Where an API dataset's credential comes from and where it may go: the caller's own setting.

An API dataset's catalog entry belongs to its owner, and a public one is read by everyone;
if the entry named the environment variable to read, alice could make bob's `request`
send bob's `JUPYTERHUB_API_TOKEN` to any host she likes. So the entry only says which
header its owner uses (a hint). Which variable holds *your* credential, which header
carries it, and which hosts (`host:port`) may receive it are your settings, kept in your
profile (`credentials.json`, mode 0600; names only, never the secret itself).

Registering an API dataset with `--auth-env` records the registering user's own setting,
with the URL's host approved. Anyone else runs `cybershuttle dataset credential NAME
--env VAR` once, which approves the host the URL names then. A URL that later points at
another host, or a redirect to one, is refused with what to run; nothing is sent.
"""
from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import profile
from ..errors import CybershuttleError, UsageError

_FILE = "credentials.json"
#: What a header name and an environment variable's name may be (the dataset's registration checks them too).
HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialError(CybershuttleError):
    """A credential that would leave for a host the user did not approve, or has no source yet."""

    http_status = 403


@dataclass
class Setting:
    """One user's credential for one API dataset: read from `env`, sent as `header`, only to `hosts`."""

    dataset: str
    env: str
    header: str = "Authorization"
    hosts: list[str] = field(default_factory=list)  # "host:port", lower case

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_of(url: str) -> str:
    """`host:port` of a URL (the scheme's default port filled in), as settings keep it."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        port = 0
    return f"{host}:{port}"


def approvable(url: str) -> str:
    """`host:port` of an API dataset's URL template, which a credential setting can approve; a host
    that is itself a {parameter} cannot be."""
    host = host_of(url)
    if not _HOST.fullmatch(host):
        raise UsageError(f"the host of {url!r} is not fixed ({host}): an API dataset that carries a credential "
                         "needs a fixed host, so the credential's destination can be approved")
    return host


def get(dataset: str) -> Setting | None:
    """Your setting for `dataset`, or None."""
    raw = _load().get(dataset)
    return Setting(**raw) if raw else None


def list_all() -> list[Setting]:
    return [Setting(**raw) for _, raw in sorted(_load().items())]


def save(dataset: str, env: str, *, header: str | None = None, hosts: list[str] | None = None) -> Setting:
    """Set where your credential for `dataset` comes from and which hosts may receive it
    (`hosts` added to those approved before)."""
    if not ENV_VAR.fullmatch(env or ""):
        raise UsageError(f"{env!r} is not a valid environment variable name (for example MY_API_TOKEN)")
    header = header or "Authorization"
    if not HEADER.fullmatch(header):
        raise UsageError(f"{header!r} is not a valid HTTP header name (for example Authorization, X-API-Key)")
    approved: list[str] = []
    for host in hosts or []:
        host = host.strip().lower()
        if not _HOST.fullmatch(host):
            raise UsageError(f"{host!r} is not a host to approve: write HOST:PORT (for example api.example.org:443)")
        approved.append(host)
    old = get(dataset)
    setting = Setting(dataset, env, header, sorted(set((old.hosts if old else []) + approved)))
    data = _load()
    data[dataset] = setting.to_dict()
    _store(data)
    return setting


def remove(dataset: str) -> Setting:
    data = _load()
    if dataset not in data:
        raise CybershuttleError(f"you have no credential setting for API dataset {dataset!r}")
    gone = Setting(**data.pop(dataset))
    _store(data)
    return gone


def headers_for(dataset: str, owner: str, url: str, needs_credential: bool, user: str) -> dict[str, str]:
    """The credential header to send to `url` for `dataset`, from the caller's own setting.

    Refuses (one line: the dataset, its owner, what to run) when the dataset needs a credential
    and the caller has none set, or when the URL's host is not one the caller approved.
    """
    setting = get(dataset)
    whose = "yours" if owner == user else f"of {owner}"
    if setting is None:
        if not needs_credential:
            return {}
        raise CredentialError(f"API dataset {dataset!r} ({whose}) needs a credential: say which environment variable "
                              f"holds yours with `cybershuttle dataset credential {dataset} --env VAR` (it will be "
                              f"sent only to {host_of(url)})")
    host = host_of(url)
    if host not in setting.hosts:
        raise CredentialError(f"API dataset {dataset!r} ({whose}) now sends requests to {host}, which you have not "
                              f"approved for your credential (approved: {', '.join(setting.hosts) or 'none'}): if "
                              f"you trust it, `cybershuttle dataset credential {dataset} --env {setting.env} "
                              f"--approve-host {host}`")
    secret = os.environ.get(setting.env)
    if not secret:
        raise CredentialError(f"API dataset {dataset!r} ({whose}) reads your credential from the environment "
                              f"variable {setting.env}: set it (it is never stored)")
    return {setting.header: secret}


def _path() -> Any:
    return profile.active().root / _FILE


def _load() -> dict[str, dict[str, Any]]:
    path = _path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise CybershuttleError(f"{path} is not valid JSON ({exc}): fix or remove it") from None
    return data if isinstance(data, dict) else {}


def _store(data: dict[str, dict[str, Any]]) -> None:
    # Written whole to a private partial file and renamed: never half a file, never readable by others.
    from ..storage.partial import write_whole

    write_whole(str(_path()), json.dumps(data, indent=1, sort_keys=True).encode("utf-8"), 0o600)
