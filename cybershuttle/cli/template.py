"""`cybershuttle template ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Sessions and templates"
NAME = arg("name", help="the template's name")

group = Group("template")
group.planned("add", "make a template from a session or a notebook",
              "cybershuttle template add --name tune --notebook tune.ipynb --input_file_format spec.toml", ISSUE,
              arg("--name", required=True), arg("--session", help="a recorded session"),
              arg("--notebook", help="a notebook with a `parameters` cell"),
              arg("--input-file-format", metavar="SPEC", help="input spec (TOML or YAML)"))
group.planned("list", "list templates", "cybershuttle template list --json", ISSUE, listing=True)
group.planned("show", "show a template and its input spec", "cybershuttle template show tune", ISSUE, NAME)
group.planned("rm", "remove a template", "cybershuttle template rm tune", ISSUE, NAME)
group.planned("run", "run a template once, or a sweep as a Slurm job array",
              "cybershuttle template run --name tune --input_file input1.yml --resource testcluster", ISSUE,
              arg("--name", required=True), arg("--input-file", help="input values (YAML)"),
              arg("--sweep", help="a grid or list of inputs (YAML)"), arg("--input-dir", metavar="DIR"),
              arg("--resource"), arg("--output", metavar="DIR"))
group.planned("runs", "list a template's runs", "cybershuttle template runs tune --json", ISSUE, NAME, listing=True)
group.planned("collect", "gather one output of every run", "cybershuttle template collect tune --output results.csv", ISSUE,
              NAME, arg("--output", required=True, metavar="FILE"))
