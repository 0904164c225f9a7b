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


@group.verb("run", "run a template once, or a sweep as one Slurm job array",
            "cybershuttle template run --name tune --input_file input1.yml --resource testcluster\n"
            "  cybershuttle template run --name tune --sweep sweep.yml --input_dir inputs/ --resource testcluster --wait",
            arg("--name", required=True), arg("--input-file", help="input values (YAML, TOML or JSON)"),
            arg("--sweep", help="a grid or list of inputs (YAML, TOML or JSON)"),
            arg("--input-dir", metavar="DIR", help="input files with {{ name }} placeholders, rendered per run"),
            arg("--resource", help="where to run (default: this machine; a sweep needs a Slurm resource)"),
            arg("--output", metavar="DIR", help="the run's directory (a sweep: one sub-directory per point)"),
            arg("--walltime", help="a sweep task's time limit (minutes or a Slurm time)"),
            arg("--setup-file", metavar="FILE", help="cybershuttle.yml whose modules and pip packages the notebook needs"),
            arg("--wait", action="store_true", help="for a sweep: wait until every point has finished"),
            arg("--json", action="store_true", help="print the run(s) as JSON"))
def _run(args: argparse.Namespace) -> int:
    from .. import template
    from ..errors import UsageError

    if args.sweep and args.input_file:
        raise UsageError("give --input_file (one run) or --sweep (many), not both")
    if args.sweep:
        if not args.resource:
            raise UsageError("a sweep runs as a Slurm job array: give --resource (a Slurm resource)")
        runs = template.sweep(args.name, args.sweep, resource=args.resource, input_dir=args.input_dir,
                              output=args.output, walltime=args.walltime, setup_file=args.setup_file)
        if not args.json:
            print(f"submitted {len(runs)} point(s) as one job array {runs[0].job_id} on {args.resource}", file=sys.stderr)
        if args.wait:
            ids = {r.id for r in runs}
            start = time.monotonic()
            runs = [r for r in template.wait(args.name) if r.id in ids]
            if not args.json:
                print(f"finished in {time.monotonic() - start:.0f} s", file=sys.stderr)
        _print_runs(runs, args.json)
        return 0 if all(r.status in ("COMPLETED", "PENDING", "RUNNING") for r in runs) else 1
    r = template.run(args.name, args.input_file, resource=args.resource, output=args.output, input_dir=args.input_dir,
                     setup_file=args.setup_file)
    _print_runs([r], args.json)
    if r.error and not args.json:
        print(f"cybershuttle: error: run {r.id} {r.status}: {r.error}", file=sys.stderr)
    return 0 if r.status == "COMPLETED" else 1


@group.verb("runs", "list a template's runs with status, parameters and outputs", "cybershuttle template runs tune --json",
            NAME, listing=True)
def _runs(args: argparse.Namespace) -> None:
    from .. import template

    _print_runs(template.runs(args.name), args.json)


@group.verb("collect", "gather one named output of every run: a value (a cell tagged `output`) or a file the run wrote",
            "cybershuttle template collect tune --output loss --to losses/", NAME,
            arg("--output", required=True, metavar="NAME", help="the output's name (a value name or a file path "
                                                                  "in the run directory)"),
            arg("--to", metavar="DIR", help="where to gather them (default: ./TEMPLATE-OUTPUT)"), listing=True)
def _collect(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from .. import template

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
