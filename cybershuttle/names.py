"""Validation of the names users give things, and confinement of paths.

Every name in the catalog ends up in file names, URLs and shell commands, so
one rule applies everywhere: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 chars.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InvalidNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate(name: object, what: str = "name") -> str:
    """Return `name` if it is a valid catalog name, else raise InvalidNameError.

    `what` names the thing in the message ("storage name", "user name", ...).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        shown = name if isinstance(name, str) else type(name).__name__
        raise InvalidNameError(
            f"{shown!r} is not a valid {what}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, no '..', no spaces, at most 128 characters)"
        )
    return name


def confine(root: str | os.PathLike[str], relative: str) -> Path:
    """Resolve `relative` under `root` and refuse anything that escapes it.

    Symlinks are resolved first, so a link pointing outside the root is
    refused too.
    """
    base = Path(root).resolve()
    target = (base / relative.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise InvalidNameError(f"path {relative!r} leaves {base}: use a path inside it")
    return target
