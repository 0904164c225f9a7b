"""`cybershuttle application ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Applications, modules and models"

group = Group("application")
group.planned("list", "list what a resource offers", "cybershuttle application list --resource testcluster --json", ISSUE)
group.planned("search", "search the catalog", "cybershuttle application search gromacs", ISSUE)
group.planned("show", "show one application", "cybershuttle application show hello", ISSUE)
group.planned("load", "add an application to a setup file and load it", "cybershuttle application load hello/2.0 --setup_file cybershuttle.yml", ISSUE)
group.planned("register", "register an executable of your own", "cybershuttle application register --name mytool --command '~/bin/mytool' --public", ISSUE)
