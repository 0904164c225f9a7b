"""IPython extension: `%load_ext cybershuttle_magic` (or `import cybershuttle_magic`).

Importing the package inside IPython registers the magics, as notebooks
written for the earlier platform expect of `import airavata_jupyter_magic`.
"""
from __future__ import annotations

from typing import Any

from .durable_magic import DurableMagics
from .magics import CybershuttleMagics
from .storage_magic import StorageMagics


def load_ipython_extension(ipython: Any) -> None:
    if "request_runtime" in ipython.magics_manager.magics["line"]:
        return  # already loaded: `import` and `%load_ext` may both run
    ipython.register_magics(CybershuttleMagics)
    ipython.register_magics(StorageMagics)
    ipython.register_magics(DurableMagics)


def _register_in_running_ipython() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to register into
        return
    ip = get_ipython()
    if ip is not None:
        load_ipython_extension(ip)


_register_in_running_ipython()
