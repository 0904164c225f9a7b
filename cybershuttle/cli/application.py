"""`cybershuttle application ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Applications, modules and models"
RESOURCE = arg("--resource", metavar="R", help="the compute resource (default: local)")

group = Group("application")
group.planned("list", "list what a resource offers", "cybershuttle application list --resource testcluster --json", ISSUE,
              RESOURCE, arg("--refresh", action="store_true", help="ignore the cache"), listing=True)
group.planned("search", "search the catalog", "cybershuttle application search gromacs", ISSUE,
              arg("text"), RESOURCE, listing=True)
group.planned("show", "show one application", "cybershuttle application show hello", ISSUE, arg("name"), RESOURCE)
group.planned("load", "add an application to a setup file and load it",
              "cybershuttle application load hello/2.0 --setup_file cybershuttle.yml", ISSUE,
              arg("name", metavar="NAME[/VERSION]"), RESOURCE, arg("--setup-file", default="cybershuttle.yml"))
group.planned("register", "register an executable of your own",
              "cybershuttle application register --name mytool --command '~/bin/mytool' --public", ISSUE,
              arg("--name", required=True), arg("--command", required=True), arg("--description"),
              arg("--public", action="store_true"))
