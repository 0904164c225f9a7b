"""`cybershuttle dataset ...`"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError
from .output import print_json, print_table
from .verbs import Group, arg

NAME = arg("name", help="the dataset's name")

group = Group("dataset")


@group.verb(
    "register", "register a dataset over a storage path, a local path or a URL",
    "cybershuttle dataset register --name cifar10 --location https://host/cifar.tar.gz "
    "--after_download_command 'tar -xz' --public\n"
    "  cybershuttle dataset register --name weather --location 'https://api.host/v1/obs?day={day}' "
    "--auth-header X-API-Key --auth-env WEATHER_TOKEN",
    arg("--name", required=True, help="the dataset's name"),
    arg("--location", required=True, help="STORAGE:PATH, a local path or a URL (an API dataset: a URL template)"),
    arg("--after-download-command", metavar="CMD", help="run in the cache directory with the download on stdin"),
    arg("--public", action="store_true", help="visible to every user of the site catalog"),
    arg("--description", help="one line saying what it is"),
    arg("--fields", metavar="NAME:TYPE,...", help="the dataset's fields"),
    arg("--api", action="store_true", help="an API dataset: requests pass through, nothing is cached"),
    arg("--auth-header", metavar="HEADER",
        help="API dataset: the header carrying the credential (default Authorization)"),
    arg("--auth-env", metavar="VAR",
        help="API dataset: the environment variable holding the credential (never stored)"),
    listing=True,
)
def _register(args: argparse.Namespace) -> None:
    from .. import dataset

    ds = dataset.register(args.name, args.location, after_download_command=args.after_download_command,
                          public=args.public, description=args.description or "", fields=args.fields,
                          auth_header=args.auth_header, auth_env=args.auth_env, api=args.api)
    if args.json:
        print_json(ds.to_dict())
        return
    print(f"dataset {ds.name!r} registered ({'public' if ds.public else 'private'}): {ds.locations[0]}")


@group.verb("list", "list datasets (public and your own)", "cybershuttle dataset list --json",
            arg("--search", metavar="TEXT", help="only datasets whose name or details contain TEXT"), listing=True)
def _list(args: argparse.Namespace) -> None:
    from .. import dataset

    items = dataset.list_all(args.search)
    if args.json:
        print_json([d.to_dict() for d in items])
        return
    print_table([{"name": d.name, "scope": "public" if d.public else "private", "owner": d.owner,
                  "kind": "api" if d.api else "data", "locations": len(d.locations),
                  "description": _short(d.description)} for d in items],
                [("name", "name"), ("kind", "kind"), ("scope", "scope"), ("owner", "owner"),
                 ("locations", "locations"), ("description", "description")],
                empty="(no datasets; `cybershuttle dataset register --help` shows how to add one)")


@group.verb("show", "show one dataset and its locations", "cybershuttle dataset show cifar10",
            NAME, arg("--resource", metavar="R", help="order the locations for work on compute resource R"),
            listing=True)
def _show(args: argparse.Namespace) -> None:
    from .. import dataset

    from ..dataset import credentials

    ds = dataset.get(args.name)
    order = dataset.where(args.name, args.resource) if not ds.api else []
    if args.json:
        print_json({**ds.to_dict(), "nearest": order})
        return
    print(f"{ds.name} ({'public' if ds.public else 'private'}, owner {ds.owner})")
    if ds.description:
        print(f"  description: {ds.description}")
    if ds.api:
        print(f"  API URL:     {ds.api['url_template']}")
        print(f"  parameters:  {', '.join(ds.api['parameters']) or '(none)'}")
        if ds.api.get("auth_env"):
            print(f"  credential:  its owner sends header {ds.api['auth_header']} from ${ds.api['auth_env']} "
                  "(not stored)")
        mine = credentials.get(ds.name)
        if mine is not None:
            print(f"  yours:       header {mine.header} from ${mine.env}, sent only to {', '.join(mine.hosts)}")
    for i, item in enumerate(order):
        print(f"  {'location:' if i == 0 else '         '}   {item['location']}  [{item['where']}]")
        record = ds.checksums.get(item["location"])
        if record:
            size = f", {record['size']} bytes" if record.get("size") is not None else ""
            print(f"               sha256 {record['sha256']}{size}")
    if ds.after_download_command:
        print(f"  after download: {ds.after_download_command}")
    if ds.fields:
        print("  fields:      " + ", ".join(f"{f['name']}: {f['type']}" for f in ds.fields))


@group.verb("load", "resolve a dataset to a read-only local path (cached)",
            "cybershuttle dataset load cifar10 --to ./data",
            NAME, arg("--to", metavar="DIR", help="also link it into DIR"),
            arg("--resource", metavar="R", help="the work runs on compute resource R: use a copy there in place"))
def _load(args: argparse.Namespace) -> None:
    from .. import dataset

    with _progress(f"loading {args.name}") as progress:
        path = dataset.load(args.name, args.to, progress=progress, resource=args.resource)
    print(path)


@group.verb(
    "credential", "say where YOUR credential for an API dataset comes from and which hosts may receive it",
    "cybershuttle dataset credential weather --env MY_WEATHER_TOKEN --header X-API-Key\n"
    "  cybershuttle dataset credential weather --env MY_WEATHER_TOKEN --approve-host api2.example.org:443",
    NAME,
    arg("--env", metavar="VAR", help="the environment variable holding your credential (never stored)"),
    arg("--header", metavar="HEADER", help="the header carrying it (default Authorization)"),
    arg("--approve-host", metavar="HOST:PORT", action="append", default=[],
        help="also allow sending it to HOST:PORT (the dataset's host is approved when you first set --env)"),
    arg("--remove", action="store_true", help="forget your setting for this dataset"),
    listing=True,
)
def _credential(args: argparse.Namespace) -> None:
    from .. import dataset
    from ..dataset import credentials

    if args.remove:
        gone = credentials.remove(args.name)
        print(f"your credential setting for {gone.dataset!r} removed")
        return
    ds = dataset.get(args.name)
    if not ds.api:
        raise UsageError(f"{args.name!r} is not an API dataset: only API datasets send credentials")
    setting = credentials.get(args.name)
    env = args.env or (setting.env if setting else None)
    if env is None:
        raise UsageError(f"you have no credential setting for {args.name!r}: "
                         f"`cybershuttle dataset credential {args.name} --env VAR`")
    if args.env or args.approve_host or args.header:
        # The URL's host is approved with a first setting only: a host the owner names later needs
        # --approve-host, so setting the variable again never approves it unseen.
        here = [] if setting else [credentials.approvable(ds.api["url_template"])]
        header = args.header or (setting.header if setting else ds.api.get("auth_header"))
        setting = credentials.save(args.name, env, header=header, hosts=[*here, *args.approve_host])
    if args.json:
        print_json(setting.to_dict())
        return
    print(f"API dataset {ds.name!r} (owner {ds.owner}): your header {setting.header} from ${setting.env}, "
          f"sent only to {', '.join(setting.hosts)}")


@group.verb("add-location", "add another copy of a dataset",
            "cybershuttle dataset add-location cifar10 hpc:/datasets/cifar10",
            NAME, arg("location", help="STORAGE:PATH, a local path or a URL"))
def _add_location(args: argparse.Namespace) -> None:
    from .. import dataset

    ds = dataset.add_location(args.name, args.location)
    print(f"dataset {ds.name!r} now has {len(ds.locations)} locations: {', '.join(ds.locations)}")


@group.verb("rm", "remove a dataset", "cybershuttle dataset rm cifar10", NAME)
def _rm(args: argparse.Namespace) -> None:
    from .. import dataset

    ds = dataset.remove(args.name)
    print(f"dataset {ds.name!r} removed")


def _short(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class _progress:
    """A rich progress bar on a terminal, started on the first byte (nothing for data used in place)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        return self.update if sys.stderr.isatty() else None

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.title, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
