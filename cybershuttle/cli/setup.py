"""`cybershuttle setup ...`"""
from __future__ import annotations

import argparse

from .output import print_json
from .verbs import Group, arg

group = Group("setup")


@group.verb(
    "validate",
    "parse a cybershuttle.yml (current or legacy layout) and print the normalised setup",
    "cybershuttle setup validate cybershuttle.yml --json",
    arg("file", help="the setup file"),
    listing=True,
)
def _validate(args: argparse.Namespace) -> None:
    from .. import setupfile

    setup = setupfile.load(args.file)
    if args.json:
        print_json(setup.to_dict())
        return
    for line in setup.summary_lines():  # ends with the warnings, if any
        print(line)
