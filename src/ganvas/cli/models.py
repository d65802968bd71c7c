"""``ganvas models``: list the registered architectures and their settings."""

from __future__ import annotations

import argparse
import dataclasses

from ganvas.cli.parsing import print_stdout
from ganvas.models import available_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list architectures and their --model-option "
                                                  "settings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name, family in available_models().items():
        print_stdout(f"{name}: {family.description}")
        for f in dataclasses.fields(family.Options):
            print_stdout(f"    --model-option {f.name}=VALUE   (default: {f.default})")
    return 0
