"""Templates: notebooks with a `parameters` cell and an input spec, run through papermill.

    from cybershuttle import template
    template.add("tune", notebook="tune.ipynb", spec="spec.toml")
    run = template.run("tune", {"learning_rate": 0.1})            # here, in the run's own directory
    run = template.run("tune", "input1.yml", resource="testcluster")  # kernel on the cluster
    template.sweep("tune", "sweep.yml", resource="testcluster")  # points packed into array tasks
    template.wait("tune"); template.collect("tune", "loss", "losses/")
    template.rerun("tune")                 # only the failed and not-run points, as one new array
    df = template.results("tune")          # one row per point: parameters, state, outputs, run time

Modules: `spec` (input specs, inference, checking inputs), `notebook`
(parameters cell, read-only and pre-run cells, named outputs, re-assignment
warnings), `catalog` (templates), `run` (single runs, run records, collect),
`sweep` (grids and lists packed into array tasks; progress, rerun),
`packing` (how many tasks and arrays), `task_runner` (one array task, run on
the resource), `arrays` (what a sweep asks the scheduler), `results` (runs as
one table).
"""
from __future__ import annotations

from .catalog import Template, add, get, list_all, remove
from .run import Run, collect, get_run, run, runs
from .spec import InputError, Param, SpecError
from .results import results
from .sweep import Progress, Sweep, cancel, get_sweep, progress, rerun, sweep, sweeps, wait

__all__ = ["InputError", "Param", "Progress", "Run", "SpecError", "Sweep", "Template", "add", "cancel", "collect",
           "get", "get_run", "get_sweep", "list_all", "progress", "remove", "rerun", "results", "run", "runs", "sweep",
           "sweeps", "wait"]
