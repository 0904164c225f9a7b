"""Applications: one searchable catalog of what each resource offers.

    from cybershuttle import application
    application.list_all("testcluster")                 # Lmod modules, conda envs, Python packages, executables
    application.search("compiler", "testcluster")
    application.load("hello/2.0", setup_file="cybershuttle.yml", resource="testcluster")
    application.load("hello/1.0", runtime="hpc")        # `module load` inside a running runtime
    application.register("mytool", "~/bin/mytool --fast", public=True)

Modules: `catalog` (gathering, cache, registered executables), `lmod`,
`envmodules`, `conda`, `python_env` (one parser per source), `conflicts`,
`setup_edit` (adding to a cybershuttle.yml), `load`, and `modules` (the
uniform `module list|avail|spider|load|unload` wrapper).
"""
from __future__ import annotations

from typing import Any

from .catalog import gathered_at, get, list_all, register, registered, search, unregister
from .lmod import LmodOutputError
from .records import Application, Version

# `loading` and `conflicts` import packaging and yaml; listing a cached catalog needs neither,
# so they are imported on first use (the CLI's `application list` starts faster).
_LAZY = {"Conflict": "conflicts", "ConflictError": "conflicts", "LoadResult": "loading", "load": "loading",
         "loaded_in_runtime": "loading", "resolve": "loading"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Application", "Conflict", "ConflictError", "LmodOutputError", "LoadResult", "Version", "gathered_at", "get",
    "list_all", "load", "loaded_in_runtime", "register", "registered", "resolve", "search", "unregister",
]
