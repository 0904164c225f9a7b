"""`cybershuttle session ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Sessions and templates"
NAME = arg("name", help="the session's name")

group = Group("session")
group.planned("start", "open a recording subshell", "cybershuttle session start analysis1", ISSUE, NAME)
group.planned("stop", "stop recording the current session", "cybershuttle session stop", ISSUE)
group.planned("list", "list recorded sessions", "cybershuttle session list --json", ISSUE, listing=True)
group.planned("show", "show a session's commands", "cybershuttle session show analysis1", ISSUE, NAME)
group.planned("load", "replay a session's commands", "cybershuttle session load analysis1 --dry-run --from 3", ISSUE,
              NAME, arg("--dry-run", action="store_true", help="print what would run"),
              arg("--from", dest="start", type=int, metavar="N", help="start at command N"),
              arg("--continue-on-error", action="store_true", help="do not stop at the first failure"))
group.planned("export", "export a session as a shell script or notebook", "cybershuttle session export analysis1 --format ipynb", ISSUE,
              NAME, arg("--format", choices=["sh", "ipynb"], default="sh"))
group.planned("rm", "remove a session", "cybershuttle session rm analysis1", ISSUE, NAME)
