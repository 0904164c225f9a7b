"""The site configuration: what a site's administrator decides for every user.

One TOML file that only root can write (`/etc/cybershuttle/site.toml`;
`CYBERSHUTTLE_SITE_CONFIG` names another, held to the same rule). A file that
someone else could have written is refused, not read: a setting here changes
what runs for every user, so it must come from the administrator. A missing
file is an empty configuration.

    [trust]
    owners = ["labadmin"]   # their public entries' code runs without asking (cybershuttle.trust)
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .errors import CybershuttleError

DEFAULT = Path("/etc/cybershuttle/site.toml")


class SiteConfigError(CybershuttleError):
    """A site configuration that is not root's alone, or cannot be read."""


def location() -> Path:
    """Where the site configuration is read from (it need not exist)."""
    return Path(os.environ.get("CYBERSHUTTLE_SITE_CONFIG") or DEFAULT)


def load() -> dict[str, Any]:
    """The site configuration as a mapping ({} when there is none)."""
    path = location()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SiteConfigError(f"cannot read the site configuration {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        _check_root_only(path, os.fstat(f.fileno()))
        text = f.read().decode("utf-8", errors="replace")
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(f"the site configuration {path} is not valid TOML ({exc}): ask your site's "
                              "administrator to fix it") from exc


def trusted_owners() -> frozenset[str]:
    """Owners whose public entries' code every user runs without being asked (`[trust] owners`)."""
    section = load().get("trust", {})
    owners = section.get("owners", []) if isinstance(section, dict) else None
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise SiteConfigError(f"the site configuration {location()}: [trust] owners must be a list of user names")
    return frozenset(owners)


def _check_root_only(path: Path, st: os.stat_result) -> None:
    """The file and every directory above it are root's, and nobody else can write or replace them."""
    if not stat.S_ISREG(st.st_mode):
        raise SiteConfigError(f"the site configuration {path} is not a regular file")
    problem = _not_root_only(st, directory=False)
    parent = Path(os.path.realpath(path)).parent
    while problem is None:
        problem = _not_root_only(parent.stat(), directory=True, where=parent)
        if parent == parent.parent:
            break
        parent = parent.parent
    if problem:
        raise SiteConfigError(f"the site configuration {path} is not read: {problem}; only a file only root can "
                              "write counts (chown root:root and chmod go-w it and its directories)")


def _not_root_only(st: os.stat_result, *, directory: bool, where: Path | None = None) -> str | None:
    what = f"its directory {where}" if where else "it"
    if st.st_uid != 0:
        return f"{what} belongs to uid {st.st_uid}, not root"
    # A sticky directory (/tmp) lets others add files but not replace root's.
    if st.st_mode & 0o022 and not (directory and st.st_mode & stat.S_ISVTX):
        return f"{what} can be written by others than root (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
