"""`cybershuttle template ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Sessions and templates"

group = Group("template")
group.planned("add", "make a template from a session or a notebook", "cybershuttle template add --name tune --notebook tune.ipynb --input_file_format spec.toml", ISSUE)
group.planned("list", "list templates", "cybershuttle template list --json", ISSUE)
group.planned("show", "show a template and its input spec", "cybershuttle template show tune", ISSUE)
group.planned("rm", "remove a template", "cybershuttle template rm tune", ISSUE)
group.planned("run", "run a template once, or a sweep as a Slurm job array", "cybershuttle template run --name tune --input_file input1.yml --resource testcluster", ISSUE)
group.planned("runs", "list a template's runs", "cybershuttle template runs tune --json", ISSUE)
group.planned("collect", "gather one output of every run", "cybershuttle template collect tune --output results.csv", ISSUE)
