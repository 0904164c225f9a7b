"""Sweeps: many runs of one template as ONE Slurm job array.

A sweep file (YAML, TOML or JSON) is either a grid — every combination of
the listed values (a single value is held fixed)::

    grid:
      learning_rate: [0.1, 0.01]
      neurons: [100, 120]

or a list of points (`points:` or a top-level list of mappings). Every point
is checked against the spec before anything is submitted.

Each array task is cheap on purpose: the notebook and every point's
parameters and rendered input files travel once, with the submission (one
tar the tasks extract their own directory from); the tasks share one cached
Python environment holding papermill and ipykernel (built by the first task,
reused by the rest and by later sweeps); and a task runs papermill with the
plain `python3` kernel of that environment inside its allocation — no second
job, no SSH forwarding. Each task asks for one CPU, so Slurm runs as many at
once as the partition has CPUs free.
"""
from __future__ import annotations

import itertools
import json
import shlex
import time
from pathlib import Path
from typing import Any

from .. import compute
from ..errors import CybershuttleError
from . import catalog as templates
from .run import Run, extract, finish, local_dir, new_id, pack, render_inputs, runs, save
from . import spec as spec_file
from .spec import InputError, read_document

PAPERMILL_ENV = ("papermill>=2.5", "ipykernel>=7")
# One task: extract this point's directory, run papermill there with the environment's own kernel.
_TASK = """cd "$CYBERSHUTTLE_JOB_DIR" || exit 96
d="runs/$SLURM_ARRAY_TASK_ID"
tar -xf points.tar "$d" || exit 96
cd "$d" && python -m papermill "$CYBERSHUTTLE_JOB_DIR/template.ipynb" executed.ipynb -f parameters.json \\
  -k python3 --cwd . --no-progress-bar --start-timeout 120 > papermill.log 2>&1"""


def points(sweep_file: str | Path) -> list[dict[str, Any]]:
    """The points of a sweep file: the cartesian product of a grid, or its list."""
    doc = read_document(sweep_file, "sweep file")
    if isinstance(doc, dict) and "grid" in doc:
        grid = doc["grid"]
        if not isinstance(grid, dict) or not grid:
            raise InputError(f"{sweep_file}: 'grid' must map parameter names to lists of values")
        axes = [(k, v if isinstance(v, list) else [v]) for k, v in grid.items()]
        empty = [k for k, v in axes if not v]
        if empty:
            raise InputError(f"{sweep_file}: grid value list(s) for {', '.join(empty)} are empty")
        return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    items = doc.get("points") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items or not all(isinstance(p, dict) for p in items):
        raise InputError(f"{sweep_file}: expected 'grid:' (name -> list of values) or 'points:' (a list of "
                         "mappings of parameter values)")
    return [dict(p) for p in items]


def sweep(name: str, sweep_file: str | Path, *, resource: str, input_dir: str | None = None,
          output: str | None = None, walltime: str | int | None = None,
          setup_file: str | Path | None = None) -> list[Run]:
    """Submit every point of `sweep_file` as one task of one Slurm job array; returns the runs (PENDING).

    `setup_file` (cybershuttle.yml) adds its modules and pip packages to the
    tasks' environment, for notebooks that need more than papermill.

    Nothing is submitted when any point does not fit the spec or a placeholder
    in `input_dir` names no parameter. The point directories come back to
    `output/<index>` (default: the profile's `template-runs/<template>/<sweep-id>`)
    as the tasks finish (`runs()` or `wait()`).
    """
    tmpl = templates.get(name)
    res = compute.get(resource)
    if not compute.schedulers.for_resource(res).arrays:
        raise CybershuttleError(f"a sweep runs as one Slurm job array, but {res.name} is a {res.kind} resource: "
                                "choose a Slurm resource (see `cybershuttle compute list`)")
    pts = points(sweep_file)
    values, problems = [], []
    for i, point in enumerate(pts):
        value, wrong = spec_file.check(tmpl.params, point)
        values.append(value)
        problems += [f"point {i}: {w}" for w in wrong]
    if problems:
        raise InputError(f"{sweep_file}: point(s) do not fit template {name!r}; nothing was submitted: "
                         + "; ".join(problems))
    bundle: dict[str, bytes] = {}
    for i, v in enumerate(values):
        bundle[f"runs/{i}/parameters.json"] = json.dumps(v, ensure_ascii=False).encode()
        for rel, data in (render_inputs(input_dir, v) if input_dir else {}).items():
            bundle[f"runs/{i}/{rel}"] = data
    sweep_id = new_id(name)
    root = local_dir(name, sweep_id, output)
    job = compute.execute(_TASK, res.name, cpus=1, walltime=walltime, name=f"template-{name}"[:40],
                          extra_pip=PAPERMILL_ENV, array=f"0-{len(values) - 1}",
                          setup_file=str(Path(setup_file).resolve()) if setup_file else None,
                          files={"template.ipynb": tmpl.notebook.encode(), "points.tar": pack(bundle)})
    started = time.time()
    out = []
    for i, v in enumerate(values):
        local = root / str(i)
        local.mkdir()
        record = Run(id=f"{sweep_id}-{i}", template=name, status="PENDING", parameters=v, resource=res.name,
                     output=str(local), started=started, job_id=job.id, task=i, remote_dir=f"{job.jobdir}/runs/{i}",
                     sweep=sweep_id)
        save(record, new=True)
        out.append(record)
    return out


def wait(name: str, timeout: float | None = None) -> list[Run]:
    """Block until every sweep job of template `name` has ended; returns all its runs, refreshed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for job_id in sorted({r.job_id for r in runs(name, refresh=False) if not r.final and r.job_id}):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        compute.wait(job_id, timeout=left)
    return runs(name)


def refresh(records: list[Run]) -> list[Run]:
    """Live states of unfinished sweep points; finished ones are fetched and completed."""
    by_job: dict[str, list[Run]] = {}
    for r in records:
        if not r.final and r.job_id and r.task is not None:
            by_job.setdefault(r.job_id, []).append(r)
    updated: dict[str, Run] = {}
    for job_id, pending in by_job.items():
        try:
            job = compute.get_job(job_id)
            sched = compute.scheduler(job)
            shell = sched.resource.shell()
            states = sched.task_states(shell, job, [r.task for r in pending])
        except CybershuttleError:
            continue  # unreachable for now: the runs keep their last known state
        ended = []
        for r in pending:
            state = states[r.task]
            if compute.states.final(state):
                ended.append((r, state))
            elif compute.states.active(state):
                live = state  # the job's own word: a run speaks the job-state vocabulary
                if live != r.status:
                    r = Run(**{**r.to_dict(), "status": live})
                    save(r)
                updated[r.id] = r
        if ended:
            tmpl_nb = templates.get(ended[0][0].template).nb()
            _fetch(shell, job.jobdir, [r for r, _ in ended])
            for r, state in ended:
                status = "RUNNING" if state == "COMPLETED" else state  # finish() decides COMPLETED vs FAILED
                error = None if state == "COMPLETED" else _task_error(Path(r.output), state)
                done = finish(Run(**{**r.to_dict(), "status": status}), tmpl_nb, error)
                save(done)
                updated[r.id] = done
    return [updated.get(r.id, r) for r in records]


def _fetch(shell: Any, jobdir: str, ended: list[Run]) -> None:
    """Copy the ended points' directories back in one stream."""
    members = " ".join(shlex.quote(f"runs/{r.task}") for r in ended)
    chunks: list[bytes] = []
    code = shell.stream(f"tar -C {shlex.quote(jobdir)} -cf - {members} 2>/dev/null", chunks.append)
    if code not in (0, 1, 2) or not chunks:  # 2: some directory never existed (a task that did not start)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        extract(b"".join(chunks), Path(tmp))
        for r in ended:
            src = Path(tmp) / "runs" / str(r.task)
            if not src.is_dir():
                continue
            dest = Path(r.output)
            dest.mkdir(parents=True, exist_ok=True)
            for item in src.iterdir():
                target = dest / item.name
                if target.exists():
                    continue
                item.rename(target)


def _task_error(local: Path, state: str) -> str:
    log = local / "papermill.log"
    tail = ""
    if log.is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1] if lines else ""
    return f"the array task ended {state}" + (f": {tail}" if tail else "")
