"""argparse helpers: one-line errors, and options generated from the config dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any, NoReturn

import yaml

from ganvas.config import AUTO_DEFAULTS, TrainConfig


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line plus a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def parse_key_value(text: str) -> tuple[str, Any]:
    """``base_channels=32`` -> ("base_channels", 32); values are read as YAML scalars."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def families_choosing(name: str) -> list[str]:
    """The model families whose auto settings choose TrainConfig field ``name``."""
    from ganvas.models import available_models

    return [family for family, cls in available_models().items()
            if name in cls.auto_settings(64, 10_000, None)]


def _base_type(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def add_config_options(parser: argparse.ArgumentParser, groups: dict[str, list[str]]) -> None:
    """One option per TrainConfig field, grouped; the dataclass is the single source of
    defaults (shown in help), and unset options stay absent so a config file can fill them."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for title, names in groups.items():
        group = parser.add_argument_group(title)
        for name in names:
            f = fields[name]
            flag = f.metadata.get("flag", "--" + name.replace("_", "-"))
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            help_text = f.metadata["help"]
            if name == "data":
                help_text += " (required unless --config or --resume gives it)"
            elif f.metadata.get("auto"):
                choosers = families_choosing(name)
                help_text += f" (default: {AUTO_DEFAULTS[name]}" + (
                    f"; {', '.join(choosers)} "
                    f"{'chooses its' if len(choosers) == 1 else 'choose their'} own, "
                    "see --dry-run)"
                    if choosers else ")")
            elif default is not None:
                help_text += f" (default: {default})"
            # (as_text: a number, or text TrainConfig.from_dict reads: --resolution 128x64)
            kind = number_or_text if f.metadata.get("as_text") else _base_type(hints[name])
            kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                                      "help": help_text}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(kind) is tuple:
                kwargs.update(nargs=len(typing.get_args(kind)), type=float,
                              metavar=f.metadata.get("metavar"))
            elif kind is dict:
                kwargs.update(action="append", type=parse_key_value,
                              metavar=f.metadata.get("metavar", "KEY=VALUE"))
                kwargs["help"] = f"{f.metadata['help']} (default: none)"
            else:
                metavar = (f.metadata.get("metavar")
                           or {int: "N", float: "X"}.get(kind, name.upper()))
                kwargs.update(type=kind, metavar=metavar)
            group.add_argument(flag, **kwargs)


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the user actually gave on the command line."""
    values = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    if "model_options" in values:
        values["model_options"] = dict(values["model_options"])
    for name, value in values.items():
        if isinstance(value, list) and name != "model_options":
            values[name] = tuple(value)
    return values


def print_stdout(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `ganvas ... | head` closed the pipe; that is not an error
        sys.stderr.close()


def number_or_text(text: str) -> int | str:
    """argparse type: a whole number as an int, anything else as given (to be checked by
    the config, with its own one-line error)."""
    return int(text) if text.strip().isdigit() else text


def number(text: str) -> float:
    """argparse type: a float, with a one-line error for anything else."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
