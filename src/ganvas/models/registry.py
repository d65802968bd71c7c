"""Model families register here by short name; everything else builds models through it.

A family is a class with a typed ``Options`` dataclass (its own settings, given on the
command line as ``--model-option KEY=VALUE``) that declares:

- its networks (``build_generator``, ``build_discriminator``; see :mod:`ganvas.models.networks`
  for the sampling contract every generator meets),
- the loss recipe it trains with (``recipe``, a name from :mod:`ganvas.losses`) and the
  settings it prefers when the user leaves them on auto (``auto_settings``),
- its schedule (``schedule``: a pure function of the images seen) and how real images are
  shown to its discriminator (``real_input``), so that what passes between G and D during
  training stays private to the family,
- the data it suits when ``--model`` is left on auto (``claim``): the automatic choice asks
  every registered family and takes the strongest claim, so it names none of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.schedule import ConstantSchedule, SchedulePoint
from ganvas.picture_size import aspect_factors, size_label

# Below this many pictures a discriminator trained without augmentation memorises them
# (Karras et al. 2020, "Training GANs with Limited Data": FFHQ subsets of 2k and 10k images
# overfit within a few million images shown): small-folder families claim such data, and
# every family's automatic settings turn augmentation on.
SMALL_DATA = 10_000


@dataclass(frozen=True)
class DataProfile:
    """What the automatic choice of a family knows about the data.

    Attributes:
        num_images: pictures in the training set (None: ganvas cannot count them).
        resolution: the training resolution, already chosen.
        lesson: the built-in dataset's name when it is one of the lesson's (digits, mnist,
            fashion-mnist), else None.
        conditional: the run trains on classes: only families that take labels may bid.
    """

    num_images: int | None
    resolution: int
    lesson: str | None = None
    conditional: bool = False
    aspect: str | None = None  # non-square pictures: only families that draw them may bid

    @property
    def small(self) -> bool:
        """A few hundred or thousand pictures: fewer than SMALL_DATA."""
        return self.num_images is not None and self.num_images < SMALL_DATA

    def described(self) -> str:
        return f"{self.num_images:,} pictures at {size_label(self.resolution, self.aspect)}"


@dataclass(frozen=True)
class Claim:
    """A family's bid for the data: the highest ``strength`` is chosen (ties: by name);
    ``reason`` is printed after the family's name. Strengths: 0 a general default, 10 a fit,
    20 built for such data, 30 measured ahead of another family built for it, 100 the data
    it was made for (the lesson's datasets)."""

    strength: int
    reason: str


@dataclass(frozen=True)
class ModelSpec:
    """What every architecture needs to know, plus its own options."""

    resolution: int
    channels: int
    latent_dim: int
    options: Any  # an instance of the family's Options dataclass
    c_dim: int = 0  # size of the label vector; 0 for unconditional models
    # (width, height) in units of ``resolution``, the shorter side: (2, 1) is 2:1 landscape
    aspect: tuple[int, int] = (1, 1)


class ModelFamily:
    """Base class of a registered architecture (all class methods: a family holds no state)."""

    name: ClassVar[str]
    description: ClassVar[str]
    recipe: ClassVar[str] = "standard"  # the loss recipe (see ganvas.losses)
    # Weights scaled at run time by He's constant (progressive, MSG, StyleGAN2): such networks
    # train well at learning rates that wreck plainly initialised ones (the settings check).
    equalised_lr: ClassVar[bool] = False
    # Whether the family's networks take class labels (c_dim > 0: --conditional). Its
    # generator's forward then takes ``(z, c)`` and its discriminator's ``(images, c)``,
    # ``c`` one-hot rows ``[N, c_dim]``.
    can_take_labels: ClassVar[bool] = False
    # For a family that cannot, the line ``--conditional`` gets (why, and what to use).
    labels_refusal: ClassVar[str] = ""
    # Whether its networks draw non-square pictures (``--resolution 128x64``): they then
    # start from ``4 * aspect`` (4x8 for 2:1) where square ones start from 4x4.
    can_be_non_square: ClassVar[bool] = False

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the family cannot train here at its defaults (a weights file it needs is not
        installed), or None: the automatic choice of a family passes over it then."""
        return None
    # One line per option for `ganvas models`; options without a line show their default.
    option_help: ClassVar[dict[str, str]] = {}
    # Options that were added or put on auto after runs were saved without them: the value
    # those runs' networks were built with, filled in when one resumes (before anything
    # could fill the option automatically with today's choice and change the networks).
    options_before_auto: ClassVar[dict[str, Any]] = {}

    @dataclass(frozen=True)
    class Options:
        pass

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        """A sentence saying why ``resolution`` cannot be built, or None when it can."""
        return None

    @classmethod
    def channels_problem(cls, channels: int) -> str | None:
        """A sentence saying why pictures of ``channels`` (1, 3, or 4: RGB with alpha)
        cannot be trained, or None when they can (every family whose networks take any
        number of channels)."""
        return None

    # What data the family is chosen for without --model, in words (``ganvas models``).
    chosen_for: ClassVar[str] = ""

    @classmethod
    def claim(cls, data: DataProfile) -> Claim | None:
        """The family's bid for ``data`` when ``--model`` is left on auto (None: it does
        not bid). A family that bids but is :meth:`unavailable` is passed over, and the
        choice says so."""
        return None

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        """Training settings this family prefers (TrainConfig names) where the user gave
        none, knowing the loss if the user chose one; what it leaves out takes ganvas's
        general defaults (the lesson's). May also suggest a run length as ``kimg``."""
        return {}

    @classmethod
    def settings_for_given(cls, resolution: int, options: dict[str, Any],
                           settings: dict[str, Any]) -> dict[str, Any]:
        """Automatic settings that follow what the user gave: family ``options`` (by the
        family's own names) and training ``settings`` (the auto ones given, such as
        ``batch_size``), replacing what :meth:`auto_settings` chose for the family's own
        defaults; settings the user gave are kept whatever this says."""
        return {}

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Values for the family's options that are left on auto (None), knowing the ones
        the user ``given``; saved in the run's config, so a resumed run keeps them whatever
        the data holds by then."""
        return {}

    @classmethod
    def schedule(cls, spec: ModelSpec, batch_size: int):
        """The training schedule: ``schedule(images_seen) -> SchedulePoint``."""
        return ConstantSchedule(spec.resolution, batch_size)

    @classmethod
    def real_input(cls, spec: ModelSpec, images: torch.Tensor, point: SchedulePoint) -> Any:
        """Real images ``[N, C, R, R]`` in the form the discriminator takes at ``point``
        (the same form as the generator's ``forward`` output)."""
        return images


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


def small_data_claim(family: type[ModelFamily], data: DataProfile, strength: int, what: str
                     ) -> Claim | None:
    """A family's bid for fewer than SMALL_DATA pictures at a size it builds."""
    if not data.small or family.resolution_problem(data.resolution):
        return None
    return Claim(strength, f"{data.num_images:,} pictures, fewer than {SMALL_DATA:,}: {what}")


# The losses whose discriminator the families regularise with R1 (a gradient penalty on
# the reals), and stylegan2-ada's heuristic for its strength.
R1_LOSSES = ("ns", "bce", "bce-saturating")


def r1_gamma(resolution: int, batch_size: int) -> float:
    """stylegan2-ada's ``--cfg auto`` R1 gamma: 0.0002 x resolution² / batch."""
    return 0.0002 * resolution**2 / batch_size


def given_batch(settings: dict[str, Any]) -> int | None:
    """The batch the user gave among ``settings`` (None: none, or one the settings check
    refuses, which it names itself)."""
    batch = settings.get("batch_size")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        return batch
    return None


def r1_for_given_batch(resolution: int, settings: dict[str, Any]) -> dict[str, Any]:
    """R1 gamma for a batch the user gave, as the automatic one follows the automatic
    batch (stylegan2-ada computes it from the batch it trains with), where the loss takes
    R1; empty otherwise."""
    batch = given_batch(settings)
    if batch is None or (settings.get("loss") or "ns") not in R1_LOSSES:
        return {}
    return {"r1_gamma": r1_gamma(resolution, batch)}


def choose_model_family(data: DataProfile) -> tuple[str, str]:
    """The family with the strongest claim on ``data`` that can train here, and why; a
    stronger claim passed over because its family is unavailable is named in the reason."""
    bids = [(claim.strength, name, claim.reason, family)
            for name, family in _REGISTRY.items()
            if (family.can_take_labels or not data.conditional)
            and (family.can_be_non_square or aspect_factors(data.aspect) == (1, 1))
            and (claim := family.claim(data))]
    passed_over = ""
    for _, name, reason, family in sorted(bids, key=lambda bid: (-bid[0], bid[1])):
        missing = family.unavailable()
        if missing is not None:
            passed_over = passed_over or f" ({name} would come first, but {missing})"
            continue
        return name, reason + passed_over
    raise GanvasError("no model family suits this data: name one with --model "
                      f"({', '.join(sorted(_REGISTRY))})")


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


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``float | None`` -> (float, True); ``int`` -> (int, False)."""
    args = typing.get_args(hint)
    if type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


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
        expected, optional = _unwrap_optional(hints[name])
        if value is None and optional:  # left on auto
            kwargs[name] = None
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 1e300:  # (float() would overflow)
                raise GanvasError(f"--model-option {key}: must be a finite number")
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
            if inner is float:
                value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool)
                              else v for v in value)
            if not all(isinstance(v, inner) and not isinstance(v, bool) for v in value):
                raise GanvasError(f"--model-option {key}: every item must be a {inner.__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise GanvasError(f"--model-option {key}: must be a finite number")
        kwargs[name] = value
    options = family.Options(**kwargs)
    check = getattr(options, "problem", None)
    if check and (problem := check()):
        raise GanvasError(f"--model-option for {family.name}: {problem}")
    return options


def make_spec(model: str, *, resolution: int, channels: int, latent_dim: int,
              options: dict[str, Any] | None = None, c_dim: int = 0,
              aspect: str | None = None) -> tuple[type[ModelFamily], ModelSpec]:
    family = get_model_family(model)
    problem = family.resolution_problem(resolution)
    if problem:
        raise GanvasError(f"--resolution {resolution}: {problem}")
    factors = aspect_factors(aspect)
    if factors != (1, 1) and not family.can_be_non_square:
        able = [name for name, other in available_models().items() if other.can_be_non_square]
        size = size_label(resolution, aspect).removesuffix(" px")
        raise GanvasError(f"--resolution {size}: model {model} draws "
                          f"square pictures only; non-square ones train with "
                          f"{' or '.join(able)}")
    problem = family.channels_problem(channels)
    if problem:
        raise GanvasError(f"--channels {channels}: {problem}")
    return family, ModelSpec(resolution, channels, latent_dim, parse_options(family, options),
                             c_dim, factors)


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
