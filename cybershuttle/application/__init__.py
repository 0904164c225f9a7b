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

from .catalog import gathered_at, get, list_all, register, registered, search, unregister
from .conflicts import Conflict, ConflictError
from .lmod import LmodOutputError
from .load import LoadResult, load, loaded_in_runtime, resolve
from .records import Application, Version

__all__ = [
    "Application", "Conflict", "ConflictError", "LmodOutputError", "LoadResult", "Version", "gathered_at", "get",
    "list_all", "load", "loaded_in_runtime", "register", "registered", "resolve", "search", "unregister",
]
