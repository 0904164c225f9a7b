"""Notebook sessions on the server side: snapshot a session's notebooks at each save.

The logic is in the core (`cybershuttle.session.notebook.post_save_hook`);
this only registers it with the contents manager, next to any post-save hook
the user configured (jupyter_server runs both).
"""
from __future__ import annotations

from typing import Any


def install(serverapp: Any) -> bool:
    """Register the session snapshot hook on the server's contents manager; False where it cannot be."""
    from cybershuttle.session.notebook import post_save_hook

    manager = serverapp.contents_manager
    register = getattr(manager, "register_post_save_hook", None)
    if register is None:  # a contents manager without hooks (not file-backed): no snapshots
        serverapp.log.warning("cybershuttle_server: %s has no post-save hooks; notebook sessions are not snapshotted",
                              type(manager).__name__)
        return False
    if post_save_hook not in getattr(manager, "_post_save_hooks", []):
        register(post_save_hook)
    return True
