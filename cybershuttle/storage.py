"""Named storage: a name over an fsspec URL and its options.

Only the catalog entry and the embedded `home` default exist so far; the
protocols, listing, copy and mounts arrive with the storage work.
"""
from __future__ import annotations

from pathlib import Path

from .registry import Entry, catalog

KIND = "storage"


def register_home() -> tuple[Entry, bool]:
    """Register the user's home directory as storage `home` (idempotent)."""
    cat = catalog()
    existing = cat.find(KIND, "home")
    if existing is not None:
        return existing, False
    location = str(Path.home())
    return cat.add(KIND, "home", {"location": location, "protocol": "file", "read_only": False}), True


def get(name: str) -> Entry:
    """The storage called `name` (NotFoundError naming the known ones)."""
    return catalog().get(KIND, name)


def ls() -> "list[Entry]":
    """Every storage the active user can see, private and public."""
    return catalog().list(KIND)
