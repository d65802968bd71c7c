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
  ganvas train --data ~/pictures/my-200-paintings --model projected
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
    from ganvas.auto_settings import SMALL_DATA
    from ganvas.config import AUTO_DEFAULTS

    print_stdout(textwrap.fill(
        "Without --model, the family is chosen from the data: each family below says what "
        "data it is chosen for, and the strongest claim that can train here wins "
        "(`ganvas train ... --dry-run` says which and why).", 100) + "\n")
    for name, family in available_models().items():
        print_stdout(f"{name}: " + textwrap.fill(family.description, 96,
                                                 subsequent_indent="    "))
        if family.chosen_for:
            print_stdout("    " + textwrap.fill(f"chosen without --model for: {family.chosen_for}",
                                                96, subsequent_indent="        "))
        missing = family.unavailable()
        if missing:
            print_stdout("    " + textwrap.fill(f"unavailable here: {missing}", 96,
                                                subsequent_indent="        "))
        own = family.auto_settings(64, SMALL_DATA, None).get("augment")
        augment = (f"{own} (the family's own)" if own else
                   f"ada below {SMALL_DATA:,} pictures, else {AUTO_DEFAULTS['augment']}")
        print_stdout(f"    augmentation on auto: {augment}")
        speeds = [family.auto_settings(64, n, None).get("ada_kimg") for n in (200, 8000)]
        if all(speeds):
            print_stdout(f"    ADA's speed on auto: the family's own, {speeds[0]:g} kimg for "
                         f"200 pictures, {speeds[1]:g} for 8,000 (the others' "
                         f"{AUTO_DEFAULTS['ada_kimg']:g})")
        classes = ("yes (--conditional)" if family.can_take_labels
                   else f"no ({family.labels_refusal or 'it takes no labels'})")
        print_stdout("    " + textwrap.fill(f"classes: {classes}", 96,
                                            subsequent_indent="        "))
        transparency = family.channels_problem(4)
        print_stdout("    " + textwrap.fill(
            "transparent pictures: " + ("yes (--channels 4)" if transparency is None
                                        else f"no ({transparency})"),
            96, subsequent_indent="        "))
        print_stdout("    non-square pictures: " + (
            "yes (--resolution WIDTHxHEIGHT, e.g. 128x64)" if family.can_be_non_square
            else "no (square only)"))
        for f in dataclasses.fields(family.Options):
            default = "auto" if f.default is None else f.default
            line = f"    --model-option {f.name}=VALUE   (default: {default})"
            note = family.option_help.get(f.name)
            print_stdout(line + (f"\n        {note}" if note else ""))
        print_stdout("")
    return 0
