"""Jupyter server extension: the REST API (and, later, notebook session state).

Enabled on install by `jupyter-config/jupyter_server_config.d/cybershuttle_server.json`.
Routes live under `/cybershuttle/api/v1/`; every handler is authenticated.
"""
from __future__ import annotations

from typing import Any

from .handlers import setup_handlers
from .snapshots import install as install_snapshots


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "cybershuttle_server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    setup_handlers(serverapp.web_app)
    install_snapshots(serverapp)  # notebook sessions: a snapshot at each save
    serverapp.log.info("cybershuttle_server: REST API at %s", serverapp.web_app.settings.get("base_url", "/") + "cybershuttle/api/v1/")
