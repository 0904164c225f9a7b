"""`cybershuttle model ...`"""
from __future__ import annotations

from .verbs import Group, arg

ISSUE = "Applications, modules and models"

group = Group("model")
group.planned("list", "list models (public, shared and private)", "cybershuttle model list --json", ISSUE, listing=True)
group.planned("register", "register a model", "cybershuttle model register --name embed --kind ai --location pkg.module:factory", ISSUE,
              arg("--name", required=True), arg("--kind", required=True, choices=["ai", "computational", "ai4science"]),
              arg("--location", required=True, help="a saved model, pkg.module:factory, a program or a template"),
              arg("--public", action="store_true"))
group.planned("run", "run a model for inference over batches",
              "cybershuttle model run embed --mode inference --input_folder ./texts --batch-size 64", ISSUE,
              arg("name"), arg("--mode", default="inference", choices=["inference"]),
              arg("--input-folder", metavar="DIR"), arg("--input", metavar="FILE"),
              arg("--input-sequence", metavar="FILE.fasta"), arg("--batch-size", type=int, metavar="N"),
              arg("--resource", metavar="R"), arg("--output", metavar="DIR"),
              arg("--serve", action="store_true", help="keep the model loaded for later calls"))
group.planned("load", "load a model to modify it", "cybershuttle model load embed --mode modify", ISSUE,
              arg("name"), arg("--mode", default="modify", choices=["modify"]))
