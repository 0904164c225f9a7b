"""`cybershuttle session ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Sessions and templates"

group = Group("session")
group.planned("start", "open a recording subshell", "cybershuttle session start analysis1", ISSUE)
group.planned("stop", "stop recording the current session", "cybershuttle session stop", ISSUE)
group.planned("list", "list recorded sessions", "cybershuttle session list --json", ISSUE)
group.planned("show", "show a session's commands", "cybershuttle session show analysis1", ISSUE)
group.planned("load", "replay a session's commands", "cybershuttle session load analysis1 --dry-run --from 3", ISSUE)
group.planned("export", "export a session as a shell script or notebook", "cybershuttle session export analysis1 --format ipynb", ISSUE)
group.planned("rm", "remove a session", "cybershuttle session rm analysis1", ISSUE)
