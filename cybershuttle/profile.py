"""Who the user is, and where their Cybershuttle state lives.

The user is the operating-system user the process runs as (the password-database
entry of the effective uid; under JupyterHub the OS user of the single-user
server). Nothing a process can set — an environment variable, a file — makes
one person another: the site catalog records owners by this name, and on
PostgreSQL the database checks the same identity through peer authentication.

Layout under `$CYBERSHUTTLE_HOME` (default `~/.cybershuttle`)::

    users/<user>/           the user's profile, mode 0700, owned by the user
        catalog.db          the user's private catalog (0600)
    site/catalog.db         the site catalog, unless CYBERSHUTTLE_SITE_CATALOG
                            names another: a file, a directory holding
                            catalog.db, or a database URI (postgresql:///cybershuttle)
"""
from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from . import names
from .errors import CybershuttleError

CATALOG_FILE = "catalog.db"


@dataclass(frozen=True)
class Profile:
    """One user's profile directory and the two catalogs it reads."""

    user: str
    root: Path
    #: a SQLite file path, or a database URI
    site_catalog: Path | str

    @property
    def catalog(self) -> Path:
        """The private catalog of this user."""
        return self.root / CATALOG_FILE

    def subdir(self, name: str) -> Path:
        """A 0700 directory inside the profile (created on first use)."""
        path = self.root / name
        _private_dir(path)
        return path


def home() -> Path:
    """The Cybershuttle home directory (not created)."""
    return Path(os.environ.get("CYBERSHUTTLE_HOME") or "~/.cybershuttle").expanduser()


def site_catalog_location() -> Path | str:
    """The site (public) catalog: a SQLite file path, or a database URI kept as written."""
    configured = os.environ.get("CYBERSHUTTLE_SITE_CATALOG")
    if not configured:
        return home() / "site" / CATALOG_FILE
    if "://" in configured:
        return configured
    path = Path(configured).expanduser()
    if path.is_dir() or not path.suffix:
        return path / CATALOG_FILE
    return path


def site_catalog_path() -> Path:
    """The site catalog's file (an error when it is a database, which has none)."""
    location = site_catalog_location()
    if isinstance(location, str):
        raise CybershuttleError(f"the site catalog is the database {location}, not a file")
    return location


def current_user() -> str:
    """The operating-system user this process runs as."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (some containers): the uid is still one person
        name = f"uid{os.geteuid()}"
    return names.validate(name, "user name (your login name)")


def active() -> Profile:
    """The user's profile, created on first use."""
    return _open(current_user())


def initialize(user: str | None = None) -> tuple[Profile, bool]:
    """Create (or reuse) the user's profile. Returns it and whether it was newly created.

    `user`, when given, must be the OS user: a profile cannot be made for, or switched to,
    somebody else. Idempotent.
    """
    me = current_user()
    if user is not None and user != me:
        names.validate(user, "user name")
        raise CybershuttleError(
            f"you are {me} (your operating-system login), not {user}: Cybershuttle's user is the login; "
            f"log in as {user} to use their profile, or run `initialize` without a name"
        )
    created = not (home() / "users" / me).is_dir()
    return _open(me), created


def _open(user: str) -> Profile:
    _private_dir(home())
    root = home() / "users" / user
    _private_dir(root.parent)
    _private_dir(root)
    # The profile must be the user's own: a CYBERSHUTTLE_HOME inside someone else's files
    # would mix two people's catalogs.
    owner = root.stat().st_uid
    if owner != os.geteuid():
        raise CybershuttleError(
            f"the profile {root} belongs to uid {owner}, not to you ({user}): set CYBERSHUTTLE_HOME to a "
            "directory of your own"
        )
    site = site_catalog_location()
    if isinstance(site, Path):
        site.parent.mkdir(parents=True, exist_ok=True)
    return Profile(user=user, root=root, site_catalog=site)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
