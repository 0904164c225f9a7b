"""`cybershuttle dataset ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Storage and datasets"

group = Group("dataset")
group.planned(
    "register", "register a dataset over a storage path, a local path or a URL",
    "cybershuttle dataset register --name cifar10 --location https://host/cifar.tar.gz --after_download_command 'tar -xz' --public",
    ISSUE,
)
group.planned("list", "list datasets (public and your own)", "cybershuttle dataset list --json", ISSUE)
group.planned("show", "show one dataset and its locations", "cybershuttle dataset show cifar10", ISSUE)
group.planned("load", "resolve a dataset to a read-only local path (cached)", "cybershuttle dataset load cifar10 --to ./data", ISSUE)
group.planned("add-location", "add another copy of a dataset", "cybershuttle dataset add-location cifar10 hpc:/datasets/cifar10", ISSUE)
group.planned("rm", "remove a dataset", "cybershuttle dataset rm cifar10", ISSUE)
