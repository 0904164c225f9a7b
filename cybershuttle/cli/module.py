"""`cybershuttle module ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Applications, modules and models"

group = Group("module")
group.planned("list", "list loaded modules", "cybershuttle module list --resource testcluster", ISSUE)
group.planned("avail", "list available modules", "cybershuttle module avail --resource testcluster", ISSUE)
group.planned("spider", "search all modules", "cybershuttle module spider hello --resource testcluster", ISSUE)
group.planned("load", "load a module", "cybershuttle module load hello/2.0 --resource testcluster", ISSUE)
group.planned("unload", "unload a module", "cybershuttle module unload hello --resource testcluster", ISSUE)
