"""Model families register here by short name; everything else builds models through it.

A family is a class with a typed ``Options`` dataclass (its own settings, given on the
command line as ``--model-option KEY=VALUE``) and two builders. Every generator maps
``z [N, latent_dim]`` to images ``[N, C, H, W]`` in ``[-1, 1]``; every discriminator maps
such images to one logit per image, ``[N]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ganvas.errors import GanvasError


@dataclass(frozen=True)
class ModelSpec:
    """What every architecture needs to know, plus its own options."""

    resolution: int
    channels: int
    latent_dim: int
    options: Any  # an instance of the family's Options dataclass


class ModelFamily:
    """Base class of a registered architecture."""

    name: ClassVar[str]
    description: ClassVar[str]

    @dataclass(frozen=True)
    class Options:
        pass

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        """A sentence saying why ``resolution`` cannot be built, or None when it can."""
        return None

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError


_REGISTRY: dict[str, type[ModelFamily]] = {}


def register_model(name: str):
    """Class decorator: make a ModelFamily available as ``--model NAME``."""

    def decorate(family: type[ModelFamily]) -> type[ModelFamily]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        family.name = name
        _REGISTRY[name] = family
        return family

    return decorate


def available_models() -> dict[str, type[ModelFamily]]:
    return dict(sorted(_REGISTRY.items()))


def get_model_family(name: str) -> type[ModelFamily]:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GanvasError(
            f"--model {name!r} is not a known architecture{hint}; "
            f"choose one of: {', '.join(sorted(_REGISTRY))}"
        ) from None


def parse_options(family: type[ModelFamily], values: dict[str, Any]) -> Any:
    """Turn ``{"base_channels": 32}`` into the family's typed Options, loudly."""
    fields = {f.name: f for f in dataclasses.fields(family.Options)}
    hints = typing.get_type_hints(family.Options)
    kwargs = {}
    for key, value in (values or {}).items():
        name = str(key).replace("-", "_")
        if name not in fields:
            valid = ", ".join(fields) or "none"
            raise GanvasError(
                f"--model-option {str(key)[:40]}: not a setting of model {family.name} "
                f"(it has: {valid})")
        expected = hints[name]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        origin = typing.get_origin(expected) or expected
        if origin is tuple and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
            from ganvas.config import short_repr

            raise GanvasError(
                f"--model-option {key}={short_repr(value)}: model {family.name} expects "
                f"{getattr(expected, '__name__', expected)}"
            )
        if origin is tuple:
            inner = typing.get_args(expected)[0]
            if not all(isinstance(v, inner) and not isinstance(v, bool) for v in value):
                raise GanvasError(f"--model-option {key}: every item must be a {inner.__name__}")
        kwargs[name] = value
    options = family.Options(**kwargs)
    check = getattr(options, "problem", None)
    if check and (problem := check()):
        raise GanvasError(f"--model-option for {family.name}: {problem}")
    return options


def make_spec(model: str, *, resolution: int, channels: int, latent_dim: int,
              options: dict[str, Any] | None = None) -> tuple[type[ModelFamily], ModelSpec]:
    family = get_model_family(model)
    problem = family.resolution_problem(resolution)
    if problem:
        raise GanvasError(f"--resolution {resolution}: {problem}")
    return family, ModelSpec(resolution, channels, latent_dim, parse_options(family, options))


def build_generator(model: str, **kwargs: Any) -> nn.Module:
    family, spec = make_spec(model, **kwargs)
    return family.build_generator(spec)


def build_models(model: str, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` for architecture ``model``.

    Keyword args: ``resolution``, ``channels``, ``latent_dim`` and ``options`` (a dict of the
    family's settings). Raises GanvasError for an unknown model, an unsupported resolution
    or a bad option.
    """
    family, spec = make_spec(model, **kwargs)
    return family.build_generator(spec), family.build_discriminator(spec)
