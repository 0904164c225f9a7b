"""`cybershuttle template ...`"""
from __future__ import annotations

import argparse
import sys
import time

from .output import print_json, print_table
from .verbs import Group, arg

NAME = arg("name", help="the template's name")

group = Group("template")


@group.verb("add", "make a template from a session or a notebook with a `parameters` cell",
            "cybershuttle template add --name tune --notebook tune.ipynb --input_file_format spec.toml\n"
            "  cybershuttle template add --name tune --session analysis1 --input_file_format spec.yml",
            arg("--name", required=True), arg("--session", help="a recorded session"),
            arg("--notebook", help="a notebook with a `parameters` cell"),
            arg("--input-file-format", metavar="SPEC", help="input spec (TOML or YAML); inferred from the "
                                                             "notebook's parameters cell when left out"),
            arg("--public", action="store_true", help="add it to the site catalog, for every user"),
            arg("--replace", action="store_true", help="replace a template of the same name"))
def _add(args: argparse.Namespace) -> None:
    from .. import template

    t = template.add(args.name, session=args.session, notebook=args.notebook, spec=args.input_file_format,
                     public=args.public, replace=args.replace)
    for warning in t.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"template {t.name!r} added ({t.scope}) with {len(t.spec)} parameter(s): "
          + (", ".join(p["name"] for p in t.spec) or "none"))


@group.verb("list", "list templates", "cybershuttle template list --json",
            arg("--search", help="only templates whose name or details contain this text"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import template

    items = template.list_all(args.search)
    if args.json:
        print_json([t.to_dict() for t in items])
        return
    print_table([{"name": t.name, "params": ", ".join(p["name"] for p in t.spec), "source":
                  f"{t.source['kind']} {t.source['from']}", "scope": t.scope} for t in items],
                [("name", "name"), ("params", "parameters"), ("source", "made from"), ("scope", "scope")],
                empty="(no templates; 'cybershuttle template add --name T --notebook NB.ipynb' makes one)")


@group.verb("show", "show a template and its input spec", "cybershuttle template show tune", NAME, listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import template

    t = template.get(args.name)
    if args.json:
        print_json(t.to_dict())
        return
    print(f"{t.name} ({t.scope}), made from {t.source['kind']} {t.source['from']}")
    rows = []
    for p in t.spec:
        limits = [f"min {p['min']}" if p["min"] is not None else "", f"max {p['max']}" if p["max"] is not None else "",
                  f"one of {p['choices']}" if p["choices"] else ""]
        rows.append({**p, "default": "(required)" if p["required"] or p["default"] is None else repr(p["default"]),
                     "limits": ", ".join(x for x in limits if x)})
    print_table(rows, [("name", "parameter"), ("type", "type"), ("default", "default"), ("limits", "limits"),
                       ("help", "help")], empty="(no parameters)")
    for warning in t.warnings:
        print(f"warning: {warning}")


@group.verb("rm", "remove a template (and its run records)", "cybershuttle template rm tune", NAME)
def _rm(args: argparse.Namespace) -> None:
    from .. import template

    template.remove(args.name)
    print(f"template {args.name!r} removed")


_PACKING = (
    arg("--tasks", type=int, metavar="N", help="pack the points into N array tasks (default: from the partition's "
                                                "idle CPUs and your limits)"),
    arg("--points-per-task", type=int, metavar="K", help="K points per array task, run one after another"),
    arg("--max-running", type=int, metavar="M", help="at most M tasks run at once (Slurm's %%M throttle)"),
)


@group.verb("run", "run a template once, or a sweep packed into Slurm array tasks",
            "cybershuttle template run --name tune --input_file input1.yml --resource testcluster\n"
            "  cybershuttle template run --name tune --sweep sweep.yml --input_dir inputs/ --resource testcluster --wait\n"
            "  cybershuttle template run --name tune --sweep big.yml --resource testcluster --points-per-task 50 "
            "--max-running 8",
            arg("--name", required=True), arg("--input-file", help="input values (YAML, TOML or JSON)"),
            arg("--sweep", help="a grid or list of inputs (YAML, TOML or JSON)"),
            arg("--input-dir", metavar="DIR", help="input files with {{ name }} placeholders, rendered per run"),
            arg("--resource", help="where to run (default: this machine; a sweep needs a Slurm resource)"),
            arg("--output", metavar="DIR", help="the run's directory (a sweep: one sub-directory per point)"),
            arg("--walltime", help="a sweep task's time limit (minutes or a Slurm time)"),
            arg("--setup-file", metavar="FILE", help="cybershuttle.yml whose modules and pip packages the notebook needs"),
            *_PACKING,
            arg("--wait", action="store_true", help="for a sweep: wait until every point has finished"),
            arg("--json", action="store_true", help="print the run(s) as JSON"))
def _run(args: argparse.Namespace) -> int:
    from .. import template
    from ..errors import UsageError

    if args.sweep and args.input_file:
        raise UsageError("give --input_file (one run) or --sweep (many), not both")
    if args.sweep:
        if not args.resource:
            raise UsageError("a sweep runs as Slurm job arrays: give --resource (a Slurm resource)")
        runs = template.sweep(args.name, args.sweep, resource=args.resource, input_dir=args.input_dir,
                              output=args.output, walltime=args.walltime, setup_file=args.setup_file,
                              tasks=args.tasks, points_per_task=args.points_per_task, max_running=args.max_running)
        return _submitted(template, runs, args)
    if args.tasks or args.points_per_task or args.max_running:
        raise UsageError("--tasks, --points-per-task and --max-running shape a sweep: give --sweep too")
    r = template.run(args.name, args.input_file, resource=args.resource, output=args.output, input_dir=args.input_dir,
                     setup_file=args.setup_file)
    _print_runs([r], args.json)
    if r.error and not args.json:
        print(f"cybershuttle: error: run {r.id} {r.status}: {r.error}", file=sys.stderr)
    return 0 if r.status == "COMPLETED" else 1


@group.verb("rerun", "submit a sweep's failed and not-run points again, alone, as one new array",
            "cybershuttle template rerun tune --failed --wait", NAME,
            arg("--failed", action="store_true", required=True,
                help="the points that failed or were not run (a task's walltime ended first)"),
            arg("--sweep", metavar="ID", help="which sweep (needed when several have failed points)"),
            *_PACKING,
            arg("--wait", action="store_true", help="wait until every re-run point has finished"),
            arg("--json", action="store_true", help="print the runs as JSON"))
def _rerun(args: argparse.Namespace) -> int:
    from .. import template

    runs = template.rerun(args.name, sweep_id=args.sweep, tasks=args.tasks, points_per_task=args.points_per_task,
                          max_running=args.max_running)
    return _submitted(template, runs, args)


@group.verb("cancel", "cancel a template's unfinished sweeps; their unfinished points become NOT_RUN",
            "cybershuttle template cancel tune --sweep tune-20261201-101500-ab12", NAME,
            arg("--sweep", metavar="ID", help="only this sweep"))
def _cancel(args: argparse.Namespace) -> None:
    from .. import template

    runs = [r for r in template.cancel(args.name, args.sweep) if r.sweep and (not args.sweep or r.sweep == args.sweep)]
    left = sum(1 for r in runs if r.status == "NOT_RUN")
    print(f"cancelled; {left} point(s) not run (`cybershuttle template rerun {args.name} --failed` runs them)")


def _submitted(template, runs: list, args: argparse.Namespace) -> int:
    jobs = sorted({r.job_id for r in runs})
    tasks = len({(r.job_id, r.task) for r in runs})
    print(f"submitted {len(runs)} point(s) in {tasks} task(s) of {len(jobs)} job array(s) "
          f"({', '.join(jobs)}) on {runs[0].resource}", file=sys.stderr)
    if args.wait:
        ids = {r.id for r in runs}
        start = time.monotonic()
        runs = [r for r in template.wait(args.name) if r.id in ids]
        print(f"finished in {time.monotonic() - start:.0f} s", file=sys.stderr)
    _print_runs(runs, args.json)
    return 0 if all(r.status in ("COMPLETED", "PENDING", "RUNNING") for r in runs) else 1


@group.verb("runs", "list a template's runs (every sweep point) with state, parameters, outputs and first error",
            "cybershuttle template runs tune --json\n  cybershuttle template runs tune --watch", NAME,
            arg("--sweep", metavar="ID", help="only this sweep's points"),
            arg("--watch", action="store_true", help="follow the sweeps live: done, running, failed, pending, "
                                                      "time left, and where pending tasks stand in the queue"),
            arg("--interval", type=float, default=2.0, help=argparse.SUPPRESS), listing=True)
def _runs(args: argparse.Namespace) -> int:
    from .. import template

    if args.watch:
        return _watch(template, args)
    runs = template.runs(args.name)
    if args.sweep:
        template.get_sweep(args.sweep)
        runs = [r for r in runs if r.sweep == args.sweep]
    _print_runs(runs, args.json)
    return 0


def _watch(template, args: argparse.Namespace) -> int:
    """Redraw the sweeps' progress whenever it changes, until every point has ended. Follows the
    unfinished sweeps (or the newest one, when all have finished)."""
    import json

    found = template.progress(args.name, args.sweep)
    follow = [p.sweep for p in found if not p.final] or [p.sweep for p in found[-1:]]
    live = sys.stdout.isatty() and not args.json
    last = None
    while True:
        shown = [p for sid in follow for p in template.progress(args.name, sid)]
        if args.json:
            text = "\n".join(json.dumps(p.to_dict(), default=str, sort_keys=True) for p in shown)
        else:
            text = "\n".join(_progress_lines(p) for p in shown) or f"(no sweeps of {args.name})"
        if text != last:
            if live and last is not None:
                sys.stdout.write(f"\x1b[{last.count(chr(10)) + 1}F\x1b[J")  # redraw in place
            print(text, flush=True)
            last = text
        if all(p.final for p in shown):
            return 0 if all(p.state == "COMPLETED" for p in shown) else 1
        time.sleep(args.interval)


def _progress_lines(p) -> str:
    counts = p.counts
    done = counts.get("COMPLETED", 0)
    eta = "time left unknown" if p.eta_s is None else f"about {_duration(p.eta_s)} left"
    head = (f"sweep {p.sweep}: {done}/{p.total} done, {counts.get('RUNNING', 0)} running, "
            f"{counts.get('FAILED', 0)} failed, {counts.get('PENDING', 0)} pending, {counts.get('NOT_RUN', 0)} not run"
            + ("" if p.final else f"; {eta}"))
    lines = [head]
    for t in p.tasks:
        if t.state == "PENDING":
            where = f"position {t.position} in the queue" if t.position else "queued"
            when = (f", Slurm expects it to start at {time.strftime('%H:%M:%S', time.localtime(t.estimated_start))}"
                    if t.estimated_start else "")
            lines.append(f"  task {t.job_id}_{t.task}: pending, {where}{when} ({t.points} points)")
        else:
            lines.append(f"  task {t.job_id}_{t.task}: {t.state.lower()}, {t.done}/{t.points} points through")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


@group.verb("collect", "gather the runs' results: one named output of every run, or every run as one table",
            "cybershuttle template collect tune --output loss --to losses/\n"
            "  cybershuttle template collect tune --format csv --to tune.csv", NAME,
            arg("--output", metavar="NAME", help="the output's name (a value name or a file path "
                                                   "in the run directory)"),
            arg("--format", choices=("csv", "parquet", "json"), help="one row per run (parameters, state, named "
                                                                    "outputs, run time) written to --to"),
            arg("--sweep", metavar="ID", help="with --format: only this sweep's points"),
            arg("--to", metavar="DIR", help="where to gather them (default: ./TEMPLATE-OUTPUT, or "
                                            "./TEMPLATE-results.FORMAT)"), listing=True)
def _collect(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from .. import template
    from ..errors import UsageError

    if bool(args.output) == bool(args.format):
        raise UsageError("give --output NAME (one output of every run) or --format csv|parquet|json (the table)")
    if args.format:
        from ..template.results import write

        path, count = write(args.name, args.format, args.to, args.sweep)
        if args.json:
            print_json({"path": str(path), "rows": count, "format": args.format})
        else:
            print(f"wrote {count} row(s) to {path}")
        return
    target = template.collect(args.name, args.output, args.to)
    rows = json.loads((Path(target) / "collected.json").read_text())
    if args.json:
        print_json(rows)
        return
    print_table([{**r, "parameters": _params(r["parameters"]), "got": _short(r["value"]) if "value" in r
                  else r.get("file") or r.get("missing")} for r in rows],
                [("run", "run"), ("status", "status"), ("parameters", "parameters"), ("got", args.output)])
    print(f"gathered into {target} (collected.json lists every run)", file=sys.stderr)


def _print_runs(runs: list, as_json: bool) -> None:
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    print_table([{"id": r.id, "status": r.status, "resource": r.resource, "parameters": _params(r.parameters),
                  "outputs": _params({**r.outputs, **({"files": len(r.files)} if r.files else {})}),
                  "error": r.error} for r in runs],
                [("id", "run"), ("status", "status"), ("resource", "resource"), ("parameters", "parameters"),
                 ("outputs", "outputs"), ("error", "error")], empty="(no runs)")


def _params(values: dict) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
