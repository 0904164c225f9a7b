"""Compute resources (local, ssh, slurm) and the jobs run on them.

Only the catalog entry and the embedded `local` resource exist so far;
validation, execution, jobs and usage arrive with the compute work.
"""
from __future__ import annotations

import os
import socket

from .registry import Entry, catalog

KIND = "compute"


def register_local() -> tuple[Entry, bool]:
    """Register this machine as compute resource `local` (idempotent)."""
    cat = catalog()
    existing = cat.find(KIND, "local")
    if existing is not None:
        return existing, False
    spec = {"kind": "local", "host": socket.gethostname(), "cpus": os.cpu_count() or 1}
    return cat.add(KIND, "local", spec), True


def list() -> "list[Entry]":  # noqa: A001 - mirrors `cybershuttle compute list`
    return catalog().list(KIND)
