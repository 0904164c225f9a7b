"""Where a user's Cybershuttle state lives.

Layout under `$CYBERSHUTTLE_HOME` (default `~/.cybershuttle`)::

    current                 the active user's name (written by `initialize`)
    users/<user>/           one profile per user, mode 0700
        catalog.db          the user's private catalog
    site/catalog.db         the site catalog, unless CYBERSHUTTLE_SITE_CATALOG
                            points elsewhere (a file, or a directory holding
                            catalog.db)

The active user is `$CYBERSHUTTLE_USER`, else the name in `current`, else the
login name.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from . import names

CATALOG_FILE = "catalog.db"


@dataclass(frozen=True)
class Profile:
    """One user's profile directory and the two catalogs it reads."""

    user: str
    root: Path
    site_catalog: Path

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


def site_catalog_path() -> Path:
    """Path of the site (public) catalog database file."""
    configured = os.environ.get("CYBERSHUTTLE_SITE_CATALOG")
    if not configured:
        return home() / "site" / CATALOG_FILE
    path = Path(configured).expanduser()
    if path.is_dir() or not path.suffix:
        return path / CATALOG_FILE
    return path


def current_user() -> str:
    """Name of the active user (not validated against existing profiles)."""
    user = os.environ.get("CYBERSHUTTLE_USER")
    if user:
        return names.validate(user, "user name (from CYBERSHUTTLE_USER)")
    marker = home() / "current"
    if marker.is_file():
        user = marker.read_text().strip()
        if user:
            return names.validate(user, f"user name (from {marker})")
    return names.validate(_login_name(), "user name (your login name)")


def active() -> Profile:
    """The active user's profile, created on first use."""
    return _open(current_user())


def initialize(user: str) -> tuple[Profile, bool]:
    """Create (or reuse) `user`'s profile and make it the active one.

    Returns the profile and whether it was newly created. Idempotent.
    """
    names.validate(user, "user name")
    created = not (home() / "users" / user).is_dir()
    profile = _open(user)
    marker = home() / "current"
    if not marker.exists() or marker.read_text().strip() != user:
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(user + "\n")
        os.replace(tmp, marker)
    return profile, created


def _open(user: str) -> Profile:
    _private_dir(home())
    root = home() / "users" / user
    _private_dir(root.parent)
    _private_dir(root)
    site = site_catalog_path()
    site.parent.mkdir(parents=True, exist_ok=True)
    return Profile(user=user, root=root, site_catalog=site)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): fall back to the uid
        return f"uid{os.getuid()}"
