"""Validation of the names users give things, and confinement of paths.

Every name in the catalog ends up in file names, URLs and shell commands, so
one rule applies everywhere: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 chars.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InvalidNameError, ScriptValueError

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


# Any C0 control character or DEL: a newline (or CR) would end an `#SBATCH` line and start a
# new one -- `--uid=0`, or a shell line after the header -- so none may reach a job script.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def script_value(value: object, field: str) -> str:
    """Return `value` (as text) if it may go into a job script's header, else raise ScriptValueError.

    `field` names where it came from (e.g. "--account", "job name") for the message.
    """
    text = str(value)
    bad = _CONTROL.search(text)
    if bad:
        raise ScriptValueError(f"{field} {text!r} contains the control character {bad.group()!r}, which would "
                               f"end the job script's header line: give a {field} on one line, without control "
                               "characters")
    return text


def pip_requirement(requirement: str, where: str) -> str:
    """Return `requirement` if it is a requirement (not a pip option), else raise ScriptValueError.

    Requirements are passed to `pip install` / `uv pip install` as arguments, so one starting with
    '-' (`--index-url ...`, `-e`, `-r file`) would be read as an option and change where packages
    come from or what runs. `where` names the file and key for the message.
    """
    if _CONTROL.search(requirement):
        raise ScriptValueError(f"{where}: {requirement!r} contains a control character: write each pip "
                               "requirement on its own line")
    if requirement.strip().startswith("-"):
        raise ScriptValueError(f"{where}: {requirement!r} is a pip option, not a requirement: list only packages "
                               "(e.g. 'numpy==1.26', 'pkg[extra]>=2', 'git+https://host/repo.git'); index and "
                               "install options are not accepted in a setup file")
    return requirement


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
