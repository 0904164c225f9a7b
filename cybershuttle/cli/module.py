"""`cybershuttle module ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Applications, modules and models"
RESOURCE = arg("--resource", metavar="R", help="the compute resource (default: local)")

group = Group("module")
group.planned("list", "list loaded modules", "cybershuttle module list --resource testcluster", ISSUE, RESOURCE, listing=True)
group.planned("avail", "list available modules", "cybershuttle module avail --resource testcluster", ISSUE, RESOURCE, listing=True)
group.planned("spider", "search all modules", "cybershuttle module spider hello --resource testcluster", ISSUE,
              arg("name", nargs="?"), RESOURCE, listing=True)
group.planned("load", "load a module", "cybershuttle module load hello/2.0 --resource testcluster", ISSUE,
              arg("names", nargs="+", metavar="NAME"), RESOURCE)
group.planned("unload", "unload a module", "cybershuttle module unload hello --resource testcluster", ISSUE,
              arg("names", nargs="+", metavar="NAME"), RESOURCE)
