"""Loading the classes that distributions register under an entry-point group.

Schedulers (`cybershuttle.schedulers`) and transports (`cybershuttle.transports`)
are found the same way: Cybershuttle's own entry points first, the first of a
duplicated name wins, and a plug-in that cannot be loaded is reported by name
instead of taking the others down. What to do about a broken one is the caller's
policy (schedulers refuse to go on; transports leave it out and say why when it
is asked for).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def load(group: str, base: type[T], order: Callable[[EntryPoint], Any] = lambda ep: ep.name
         ) -> tuple[dict[str, type[T]], dict[str, str]]:
    """(loaded subclasses of `base` by name, why each broken one is broken) for entry-point `group`.

    Cybershuttle's own entry points come first; among each side, `order` decides.
    """
    found: dict[str, type[T]] = {}
    broken: dict[str, str] = {}
    for ep in sorted(entry_points(group=group), key=lambda ep: (not ep.value.startswith("cybershuttle."), order(ep))):
        if ep.name in found or ep.name in broken:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            broken[ep.name] = f"{ep.value} cannot be loaded: {exc}"
            log.debug("%s %s cannot be loaded", group, ep.name, exc_info=True)
            continue
        if isinstance(cls, type) and issubclass(cls, base):
            found[ep.name] = cls
        else:
            broken[ep.name] = f"{ep.value} is not a {base.__name__} subclass"
    return found, broken
