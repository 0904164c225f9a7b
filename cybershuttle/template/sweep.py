"""Sweeps: many runs of one template, packed into Slurm job array tasks.

A sweep file (YAML, TOML or JSON) is either a grid — every combination of
the listed values (a single value is held fixed)::

    grid:
      learning_rate: [0.1, 0.01]
      neurons: [100, 120]

or a list of points (`points:` or a top-level list of mappings). Every point
is checked against the spec before anything is submitted.

The points are packed into array tasks (see `packing`): each task runs its
share one after another in one warm process (`task_runner`: papermill's
imports paid once per task, a fresh kernel per point), records every point's
start and end in `progress/<task>.jsonl`, and goes on after a point fails.
The notebook, every point's parameters and rendered input files travel once,
with the submission. The tasks share one cached Python environment holding
papermill and ipykernel (built by the first task, reused by the rest and by
later sweeps).

A point's state comes from its task's progress file and the task's state in
the scheduler: PENDING, RUNNING, COMPLETED, FAILED, or NOT_RUN when its task
ended (a walltime kill, a cancel) before the point finished. `rerun` submits
the FAILED and NOT_RUN points again, alone, as one new array.
"""
from __future__ import annotations

import itertools
import json
import shlex
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import compute, trust
from ..errors import CybershuttleError, NotFoundError, UsageError
from ..registry import catalog, dump_record, load_record
from . import arrays, packing
from . import catalog as templates
from . import spec as spec_file
from .run import NOT_RUN, Run, fetch_tree, finish, local_dir, new_id, pack, render_inputs, runs, save
from .spec import InputError, read_document

KIND = "template-sweep"
PAPERMILL_ENV = ("papermill>=2.5", "ipykernel>=7")
RUNNER = Path(__file__).with_name("task_runner.py")
#: the point states `rerun` submits again
RERUN_STATES = frozenset({"FAILED", NOT_RUN})
# One task: its points, one after another, in one process (see task_runner.py). The runner's own
# stderr (kernels' warnings) goes to a file per task: the array's tasks share one output.log.
_TASK = """cd "$CYBERSHUTTLE_JOB_DIR" && mkdir -p progress || exit 96
exec python task_runner.py "$SLURM_ARRAY_TASK_ID" 2>>"progress/$SLURM_ARRAY_TASK_ID.log\""""


@dataclass(frozen=True)
class Sweep:
    """One sweep: its points are runs (`Run.sweep` = this id); its arrays are compute jobs."""

    id: str
    template: str
    resource: str
    created: float
    points: int
    output: str  # local directory: one sub-directory per point
    input_dir: str | None = None
    setup_file: str | None = None
    walltime: str | int | None = None
    max_running: int | None = None
    arrays: list[dict[str, Any]] = field(default_factory=list)  # {"job_id", "tasks": [[point, ...], ...], "why"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskInfo:
    """One array task as a watcher sees it."""

    job_id: str
    task: int
    state: str
    points: int
    done: int
    position: int | None = None  # among its partition's pending jobs (pending tasks only)
    estimated_start: float | None = None  # Slurm's expected start (pending tasks only)


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands: counts by point state, time left, the tasks still to finish."""

    sweep: str
    template: str
    resource: str
    total: int
    counts: dict[str, int]
    eta_s: float | None
    tasks: list[TaskInfo]
    final: bool
    updated: float

    @property
    def state(self) -> str:
        """RUNNING while any task runs, PENDING while all wait, else FAILED when any point did not complete."""
        if not self.final:
            return "RUNNING" if self.counts.get("RUNNING") or any(t.state == "RUNNING" for t in self.tasks) \
                else "PENDING"
        return "COMPLETED" if self.counts.get("COMPLETED", 0) == self.total else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


# -- public API ------------------------------------------------------------
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
          output: str | None = None, walltime: str | int | None = None, setup_file: str | Path | None = None,
          tasks: int | None = None, points_per_task: int | None = None,
          max_running: int | None = None) -> list[Run]:
    """Submit every point of `sweep_file`, packed into array tasks; returns the runs (PENDING).

    `tasks` or `points_per_task` fix the packing (default: from the
    partition's idle CPUs and your limits, see `packing`); `max_running`
    caps how many tasks run at once (Slurm's `%M`). `walltime` is each
    task's time limit. `setup_file` (cybershuttle.yml) adds its modules and
    pip packages to the tasks' environment.

    Nothing is submitted when any point does not fit the spec or a placeholder
    in `input_dir` names no parameter. The point directories come back to
    `output/<index>` (default: the profile's `template-runs/<template>/<sweep-id>`)
    as the points finish (`runs()`, `progress()` or `wait()`).
    """
    tmpl = templates.get(name)
    trust.require(templates.KIND, tmpl)  # another user's notebook runs only when trusted
    res = compute.get(resource)
    arrays.check(res)
    pts = points(sweep_file)
    values, problems = [], []
    for i, point in enumerate(pts):
        value, wrong = spec_file.check(tmpl.params, point)
        values.append(value)
        problems += [f"point {i}: {w}" for w in wrong]
    if problems:
        raise InputError(f"{sweep_file}: point(s) do not fit template {name!r}; nothing was submitted: "
                         + "; ".join(problems))
    files = {i: render_inputs(input_dir, v) if input_dir else {} for i, v in enumerate(values)}
    sweep_id = new_id(name)
    record = Sweep(id=sweep_id, template=name, resource=res.name, created=time.time(), points=len(values),
                   output="", input_dir=str(Path(input_dir).resolve()) if input_dir else None,
                   setup_file=str(Path(setup_file).resolve()) if setup_file else None,
                   walltime=walltime, max_running=max_running)
    plan = arrays.plan(res, list(range(len(values))), tasks=tasks, points_per_task=points_per_task,
                       max_running=max_running)
    root = local_dir(name, sweep_id, output)
    record = replace(record, output=str(root))
    submitted = _submit(record, tmpl.notebook, plan, values, files)
    record = replace(record, arrays=submitted)
    catalog().private.add(KIND, record.id, dump_record(record, "id"), catalog().user)
    out = []
    for i, job, task in _placed(submitted):
        local = root / str(i)
        local.mkdir(exist_ok=True)
        run = Run(id=f"{sweep_id}-{i}", template=name, status="PENDING", parameters=values[i], resource=res.name,
                  output=str(local), started=time.time(), job_id=job.id, task=task,
                  remote_dir=f"{job.jobdir}/runs/{i}", sweep=sweep_id, point=i)
        save(run, new=True)
        out.append(run)
    return sorted(out, key=lambda r: r.point or 0)


def rerun(name: str, *, sweep_id: str | None = None, tasks: int | None = None, points_per_task: int | None = None,
          max_running: int | None = None) -> list[Run]:
    """Submit the FAILED and NOT_RUN points of a sweep of `name` again, alone, as one new array.

    The template as it is now is run (fix the notebook with `template add
    --replace`, then rerun), with each point's recorded parameters, checked
    against the current spec first. Without `sweep_id` the sweep is the one
    sweep of `name` that has such points. Returns the re-submitted runs (PENDING).
    """
    records = runs(name)
    candidates = [r for r in records if r.sweep and r.status in RERUN_STATES]
    if sweep_id is not None:
        candidates = [r for r in candidates if r.sweep == sweep_id]
        get_sweep(sweep_id)
    sweeps = sorted({r.sweep for r in candidates if r.sweep})
    if not sweeps:
        where = f"sweep {sweep_id}" if sweep_id else f"any sweep of template {name!r}"
        raise NotFoundError(f"no failed or not-run points in {where}: see `cybershuttle template runs {name}`")
    if len(sweeps) > 1:
        raise UsageError(f"{len(sweeps)} sweeps of {name!r} have failed or not-run points: choose one with "
                         f"--sweep ({', '.join(sweeps)})")
    record = get_sweep(sweeps[0])
    tmpl = templates.get(name)
    trust.require(templates.KIND, tmpl)  # the template as it is now: its owner may have changed it
    chosen = sorted(candidates, key=lambda r: r.point or 0)
    values, problems = {}, []
    for r in chosen:
        value, wrong = spec_file.check(tmpl.params, r.parameters)
        values[r.point] = value
        problems += [f"point {r.point}: {w}" for w in wrong]
    if problems:
        raise InputError(f"the points of sweep {record.id} no longer fit template {name!r}; nothing was "
                         "submitted: " + "; ".join(problems))
    if record.input_dir and not Path(record.input_dir).is_dir():
        raise CybershuttleError(f"the sweep's input directory {record.input_dir} is gone: restore it to re-run "
                                "its points")
    files = {i: render_inputs(record.input_dir, v) if record.input_dir else {} for i, v in values.items()}
    res = compute.get(record.resource)
    arrays.check(res)
    plan = arrays.plan(res, [r.point for r in chosen if r.point is not None], tasks=tasks,
                       points_per_task=points_per_task,
                       max_running=max_running if max_running is not None else record.max_running)
    submitted = _submit(record, tmpl.notebook, plan, values, files)
    catalog().private.update(KIND, record.id, lambda d: {**d, "arrays": [*d.get("arrays", []), *submitted]})
    by_point = {r.point: r for r in chosen}
    out = []
    for i, job, task in _placed(submitted):
        old = by_point[i]
        _empty(Path(old.output))  # the failed attempt's files would mix with the new ones
        fresh = replace(old, status="PENDING", parameters=values[i], job_id=job.id, task=task,
                        remote_dir=f"{job.jobdir}/runs/{i}", started=time.time(), finished=None, error=None,
                        outputs={}, files=[], run_time=None)
        save(fresh)
        out.append(fresh)
    return sorted(out, key=lambda r: r.point or 0)


def cancel(name: str, sweep_id: str | None = None) -> list[Run]:
    """Cancel the unfinished arrays of the sweeps of `name` (or of one); their unfinished points become
    NOT_RUN (`rerun` runs them again). Returns the sweeps' runs, refreshed."""
    records = runs(name)
    jobs = sorted({r.job_id for r in records if r.sweep and not r.final and r.job_id
                   and (sweep_id is None or r.sweep == sweep_id)})
    if not jobs:
        raise CybershuttleError(f"no unfinished sweep of {name!r}" + (f" with id {sweep_id}" if sweep_id else "")
                                + ": nothing to cancel")
    for job_id in jobs:
        if not compute.get_job(job_id).final:
            compute.cancel(job_id)
    return runs(name)


def wait(name: str, timeout: float | None = None) -> list[Run]:
    """Block until every sweep job of template `name` has ended; returns all its runs, refreshed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for job_id in sorted({r.job_id for r in runs(name, refresh=False) if not r.final and r.job_id}):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        compute.wait(job_id, timeout=left)
    return runs(name)


def get_sweep(sweep_id: str) -> Sweep:
    entry = catalog().private.find(KIND, sweep_id)
    if entry is None:
        raise NotFoundError(f"no sweep {sweep_id!r}: `cybershuttle template runs TEMPLATE` shows each run's sweep")
    return load_record(Sweep, "id", entry.name, entry.data)


def sweeps(name: str | None = None) -> list[Sweep]:
    """The sweeps (of template `name`, or all), oldest first."""
    found = [load_record(Sweep, "id", e.name, e.data) for e in catalog().private.list(KIND)]
    return sorted([s for s in found if name is None or s.template == name], key=lambda s: s.created)


def progress(name: str, sweep_id: str | None = None) -> list[Progress]:
    """Live progress of the sweeps of template `name` (or of one): point counts, time left, and for
    each unfinished task its state, with queue position and Slurm's expected start while pending."""
    chosen = [s for s in sweeps(name) if sweep_id is None or s.id == sweep_id]
    if sweep_id is not None and not chosen:
        get_sweep(sweep_id)  # an unknown sweep is an error, not an empty list
    if not chosen:
        templates.get(name)
    records = runs(name, refresh=False)
    out = []
    for s in chosen:
        points_of = [r for r in records if r.sweep == s.id]
        fresh, seen = _observe(points_of)
        out.append(_summarise(s, fresh, seen))
    return out


def live(recent_s: float = 600.0) -> list[Progress]:
    """Progress of every sweep with unfinished points, or whose last point ended within `recent_s`
    (so a watcher sees its end). For event streams: one look per unfinished array."""
    from .run import KIND as RUN_KIND

    by_sweep: dict[str, list[Run]] = {}
    for entry in catalog().private.list(RUN_KIND):
        if entry.data.get("sweep"):
            by_sweep.setdefault(entry.data["sweep"], []).append(load_record(Run, "id", entry.name, entry.data))
    now = time.time()
    out = []
    for s in sweeps():
        records = by_sweep.get(s.id, [])
        if records and all(r.final for r in records) and max(r.finished or 0 for r in records) < now - recent_s:
            continue
        fresh, seen = _observe(records)
        out.append(_summarise(s, fresh, seen))
    return out


def refresh(records: list[Run]) -> list[Run]:
    """Live states of unfinished sweep points; ended ones are fetched and completed."""
    return _observe(records)[0]


# -- observing -------------------------------------------------------------
@dataclass
class _Seen:
    """What one look at an array showed: task states and the progress events of its tasks."""

    job: compute.Job
    task_states: dict[int, str]
    events: dict[int, dict[str, Any]]  # point -> {"start": t, "end": {...}}


def _observe(records: list[Run]) -> tuple[list[Run], dict[str, _Seen]]:
    by_job: dict[str, list[Run]] = {}
    for r in records:
        if not r.final and r.job_id and r.task is not None and r.point is not None:
            by_job.setdefault(r.job_id, []).append(r)
    updated: dict[str, Run] = {}
    seen: dict[str, _Seen] = {}
    for job_id, pending in by_job.items():
        try:
            look = _look(job_id, sorted({r.task for r in pending if r.task is not None}))
        except CybershuttleError:
            continue  # unreachable for now: the runs keep their last known state
        seen[job_id] = look
        ended: list[tuple[Run, str | None]] = []
        for r in pending:
            state, error, fields = _point_state(r, look)
            if state in ("COMPLETED", "FAILED", NOT_RUN):
                ended.append((replace(r, status="RUNNING" if state != NOT_RUN else NOT_RUN, **fields), error))
            elif state != r.status or fields.get("started", r.started) != r.started:
                r = replace(r, status=state, **fields)
                save(r)
                updated[r.id] = r
        if ended:
            tmpl_nb = templates.get(ended[0][0].template).nb()
            _fetch(look.job, [r for r, _ in ended])
            for r, error in ended:
                done = finish(r, tmpl_nb, error)
                end = look.events.get(r.point or 0, {}).get("end")
                if end:  # the point's own end, not when we noticed it
                    done = replace(done, finished=end["t"])
                save(done)
                updated[r.id] = done
    return [updated.get(r.id, r) for r in records], seen


def _look(job_id: str, tasks: list[int]) -> _Seen:
    """One look at an array: its tasks' states (scheduler) and their progress files (one command)."""
    job = compute.get_job(job_id)
    states = arrays.task_states(job, tasks)
    files = " ".join(shlex.quote(f"{job.jobdir}/progress/{t}.jsonl") for t in tasks)
    out = compute.scheduler(job).resource.shell().run(f"cat {files} 2>/dev/null; true", timeout=60).stdout
    events: dict[int, dict[str, Any]] = {}
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(event, dict) and isinstance(event.get("point"), int):
            slot = events.setdefault(event["point"], {})
            if event.get("event") == "start":
                slot["start"] = event.get("t")
            elif event.get("event") == "end":
                slot["end"] = event
    return _Seen(job, states, events)


def _point_state(r: Run, look: _Seen) -> tuple[str, str | None, dict[str, Any]]:
    """(state, error, record fields) of one point from its task's state and progress events."""
    task_state = look.task_states.get(r.task if r.task is not None else -1, "UNKNOWN")
    mine = look.events.get(r.point if r.point is not None else -1, {})
    end, start = mine.get("end"), mine.get("start")
    fields: dict[str, Any] = {"started": start} if start else {}
    if end:
        fields["run_time"] = end.get("run_time")
        return ("FAILED" if end.get("state") == "FAILED" else "COMPLETED"), end.get("error"), fields
    if compute.states.final(task_state):
        why = "walltime" if task_state == "TIMEOUT" else task_state.lower()
        when = "while it ran" if start else "before it started"
        return NOT_RUN, (f"not run: its array task ended ({why}) {when}; `cybershuttle template rerun "
                         f"{r.template} --failed` runs it again"), fields
    if start and compute.states.active(task_state):
        return "RUNNING", None, fields
    if task_state == "UNKNOWN":
        return r.status, None, {}
    return "PENDING", None, fields  # its task waits in the queue, or runs the points before it


def _summarise(s: Sweep, records: list[Run], seen: dict[str, _Seen]) -> Progress:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    times = [r.run_time for r in records if r.run_time is not None and r.status in ("COMPLETED", "FAILED")]
    mean = sum(times) / len(times) if times else None
    tasks: list[TaskInfo] = []
    for job_id, look in seen.items():
        places = arrays.pending_places(look.job, [t for t, st in look.task_states.items() if st == "PENDING"])
        for task, state in sorted(look.task_states.items()):
            mine = [r for r in records if r.job_id == job_id and r.task == task]
            done = sum(1 for r in mine if r.final)
            if compute.states.final(state) and done == len(mine):
                continue
            position, start = places.get(task, (None, None))
            tasks.append(TaskInfo(job_id, task, state, len(mine), done, position, start))
    return Progress(sweep=s.id, template=s.template, resource=s.resource, total=len(records), counts=counts,
                    eta_s=_eta(tasks, mean), tasks=tasks, final=all(r.final for r in records), updated=time.time())


def _eta(tasks: list[TaskInfo], mean: float | None) -> float | None:
    """Seconds until the last task is through: its remaining points at the mean point time, after its
    expected start (a pending task without one starts when the first running task is through)."""
    if not tasks:
        return 0.0
    if mean is None:
        return None
    now = time.time()
    running = [(t.points - t.done) * mean for t in tasks if t.state != "PENDING"]
    slot = min(running) if running else 0.0
    ends = []
    for t in tasks:
        left = (t.points - t.done) * mean
        if t.state == "PENDING":
            left += max(0.0, t.estimated_start - now) if t.estimated_start else slot
        ends.append(left)
    return round(max(ends), 1)


# -- submitting ------------------------------------------------------------
def _submit(record: Sweep, notebook: str, plan: packing.Plan, values: dict[int, dict[str, Any]] | list[Any],
            files: dict[int, dict[str, bytes]]) -> list[dict[str, Any]]:
    """One compute job per array of `plan`; all or nothing (arrays already submitted are cancelled)."""
    submitted: list[dict[str, Any]] = []
    try:
        for index, tasks in enumerate(plan.arrays):
            bundle: dict[str, bytes] = {}
            for i in itertools.chain.from_iterable(tasks):
                bundle[f"runs/{i}/parameters.json"] = json.dumps(values[i], ensure_ascii=False).encode()
                for rel, data in files[i].items():
                    bundle[f"runs/{i}/{rel}"] = data
            job = compute.execute(_TASK, record.resource, cpus=1, walltime=record.walltime,
                                  name=f"template-{record.template}"[:40], extra_pip=PAPERMILL_ENV,
                                  array=plan.array_spec(index), setup_file=record.setup_file,
                                  files={"template.ipynb": notebook.encode(), "task_runner.py": RUNNER.read_bytes(),
                                         "tasks.json": json.dumps(tasks).encode(), "points.tar": pack(bundle)})
            submitted.append({"job_id": job.id, "tasks": tasks, "why": plan.why})
    except BaseException:
        for array in submitted:
            try:
                compute.cancel(array["job_id"])
            except CybershuttleError:
                pass
        raise
    return submitted


def _placed(submitted: list[dict[str, Any]]) -> list[tuple[int, compute.Job, int]]:
    """(point, its array's job, its task) for every point of the submitted arrays."""
    out = []
    for array in submitted:
        job = compute.get_job(array["job_id"])
        out += [(i, job, task) for task, members in enumerate(array["tasks"]) for i in members]
    return out


def _fetch(job: compute.Job, ended: list[Run]) -> None:
    """Copy the ended points' directories back in one stream."""
    shell = compute.scheduler(job).resource.shell()
    members = " ".join(shlex.quote(f"runs/{r.point}") for r in ended)
    with tempfile.TemporaryDirectory() as tmp:
        # 2: some directory never existed (a task that did not start)
        fetch_tree(shell, f"tar -C {shlex.quote(job.jobdir)} -cf - {members} 2>/dev/null", Path(tmp), (0, 1, 2))
        for r in ended:
            src = Path(tmp) / "runs" / str(r.point)
            if not src.is_dir():
                continue
            dest = Path(r.output)
            dest.mkdir(parents=True, exist_ok=True)
            for item in src.iterdir():
                target = dest / item.name
                if target.exists():
                    continue
                item.rename(target)


def _empty(path: Path) -> None:
    if path.is_dir():
        for item in path.iterdir():
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
