"""`cybershuttle dataset ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Storage and datasets"
NAME = arg("name", help="the dataset's name")

group = Group("dataset")
group.planned(
    "register", "register a dataset over a storage path, a local path or a URL",
    "cybershuttle dataset register --name cifar10 --location https://host/cifar.tar.gz --after_download_command 'tar -xz' --public",
    ISSUE,
    arg("--name", required=True, help="the dataset's name"),
    arg("--location", required=True, help="STORAGE:PATH, a local path or a URL"),
    arg("--after-download-command", metavar="CMD", help="run in the cache directory with the download on stdin"),
    arg("--public", action="store_true", help="visible to every user of the site catalog"),
    arg("--description", help="one line saying what it is"),
    arg("--fields", metavar="NAME:TYPE,...", help="the dataset's fields"),
)
group.planned("list", "list datasets (public and your own)", "cybershuttle dataset list --json", ISSUE, listing=True)
group.planned("show", "show one dataset and its locations", "cybershuttle dataset show cifar10", ISSUE, NAME)
group.planned("load", "resolve a dataset to a read-only local path (cached)", "cybershuttle dataset load cifar10 --to ./data", ISSUE,
              NAME, arg("--to", metavar="DIR", help="also link it into DIR"))
group.planned("add-location", "add another copy of a dataset", "cybershuttle dataset add-location cifar10 hpc:/datasets/cifar10", ISSUE,
              NAME, arg("location", help="STORAGE:PATH, a local path or a URL"))
group.planned("rm", "remove a dataset", "cybershuttle dataset rm cifar10", ISSUE, NAME)
