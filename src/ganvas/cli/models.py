"""``ganvas models``: list the registered architectures and their settings."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from ganvas.cli.parsing import print_stdout
from ganvas.models import available_models

EXAMPLES = """\
examples:
  ganvas models
  ganvas train --data emoji --model progressive --resolution 64
  ganvas train --data emoji --model msg --model-option combine=lin_cat
  ganvas train --data emoji --model progressive --dry-run   # what the defaults choose
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list architectures and their --model-option settings",
        description="The architectures --model accepts, what each is, and its "
                    "--model-option settings. Settings shown as 'auto' are chosen from the "
                    "resolution and the data; `ganvas train ... --dry-run` prints them.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name, family in available_models().items():
        print_stdout(f"{name}: " + textwrap.fill(family.description, 96,
                                                 subsequent_indent="    "))
        for f in dataclasses.fields(family.Options):
            default = "auto" if f.default is None else f.default
            line = f"    --model-option {f.name}=VALUE   (default: {default})"
            note = family.option_help.get(f.name)
            print_stdout(line + (f"\n        {note}" if note else ""))
        print_stdout("")
    return 0
