"""What the user's jobs consumed: CPU-hours, GPU-hours, memory, wall time.

A scheduler with accounting answers itself (Slurm: every job of the user
there, not only those started through Cybershuttle: the allocation is what is
billed). Otherwise the answer comes from the record of each job run there.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..errors import CybershuttleError
from . import job, resources, schedulers


def usage(resource: str | None = None, since: str | None = None) -> dict[str, Any]:
    """Per-job rows and totals; `since` is YYYY-MM-DD[THH:MM] (default: the last 30 days)."""
    since = since or time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * 86400))
    since_ts = _parse_since(since)
    targets = [resources.get(resource)] if resource else resources.list_all()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for res in targets:
        try:
            accounted = schedulers.for_resource(res).usage(res.shell(), since, res.user)
            rows += accounted if accounted is not None else _process_rows(res, since_ts)
        except CybershuttleError as exc:
            errors.append(f"{res.name}: {exc}")
    totals = {
        "jobs": len(rows),
        "cpu_hours": round(sum(r["cpu_hours"] for r in rows), 4),
        "gpu_hours": round(sum(r["gpu_hours"] for r in rows), 4),
        "elapsed_hours": round(sum(r["elapsed_s"] for r in rows) / 3600, 4),
        "max_rss_mb": max((r["max_rss_mb"] or 0 for r in rows), default=0),
    }
    return {"since": since, "jobs": rows, "totals": totals, "errors": errors}


def _process_rows(res: resources.Resource, since_ts: float) -> list[dict[str, Any]]:
    mine = [j for j in job.list_jobs(res.name, include_finished=True) if j.submitted >= since_ts]
    out = []
    for j in mine:
        elapsed = j.usage.get("elapsed_s") or ((time.time() - j.submitted) if not j.final else 0.0)
        cpus = int(j.request.get("cpus") or 1)
        out.append({"resource": res.name, "job": j.id, "name": j.name, "state": j.state, "cpus": cpus, "gpus": 0,
                    "elapsed_s": elapsed, "cpu_s": j.usage.get("cpu_s"), "cpu_hours": round(cpus * elapsed / 3600, 6),
                    "gpu_hours": 0.0, "max_rss_mb": j.usage.get("max_rss_mb"), "start": j.started, "end": j.ended})
    return out


def _parse_since(text: str) -> float:
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise CybershuttleError(f"--since must be a date like 2026-01-31 or 2026-01-31T14:00, got {text!r}")
