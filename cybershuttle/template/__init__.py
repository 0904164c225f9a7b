"""Templates: notebooks with a `parameters` cell and an input spec, run through papermill.

    from cybershuttle import template
    template.add("tune", notebook="tune.ipynb", spec="spec.toml")
    run = template.run("tune", {"learning_rate": 0.1})            # here, in the run's own directory
    run = template.run("tune", "input1.yml", resource="testcluster")  # kernel on the cluster
    template.sweep("tune", "sweep.yml", resource="testcluster")  # one Slurm job array
    template.wait("tune"); template.collect("tune", "loss", "losses/")

Modules: `spec` (input specs, inference, checking inputs), `notebook`
(parameters cell, read-only and pre-run cells, named outputs, re-assignment
warnings), `catalog` (templates), `run` (single runs, run records, collect),
`sweep` (grids and lists as one job array).
"""
from __future__ import annotations

from .catalog import Template, add, get, list_all, remove
from .run import Run, collect, get_run, run, runs
from .spec import InputError, Param, SpecError
from .sweep import sweep, wait

__all__ = ["InputError", "Param", "Run", "SpecError", "Template", "add", "collect", "get", "get_run", "list_all",
           "remove", "run", "runs", "sweep", "wait"]
