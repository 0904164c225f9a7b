"""`cybershuttle model ...`"""
from __future__ import annotations

from .verbs import Group

ISSUE = "Applications, modules and models"

group = Group("model")
group.planned("list", "list models (public, shared and private)", "cybershuttle model list --json", ISSUE)
group.planned("register", "register a model", "cybershuttle model register --name embed --kind ai --location pkg.module:factory", ISSUE)
group.planned("run", "run a model for inference over batches", "cybershuttle model run embed --mode inference --input_folder ./texts --batch-size 64", ISSUE)
group.planned("load", "load a model to modify it", "cybershuttle model load embed --mode modify", ISSUE)
