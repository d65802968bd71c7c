"""Settings left on auto, chosen from the model family, the resolution and the data's size.

Like stylegan2-ada's ``--cfg auto``: a user who names only the data and the model gets the
batch size, learning rates, loss, penalties and the family's own options (channel widths,
growth schedule) that suit them; ``ganvas train --dry-run`` shows what was chosen. Chosen
values are written into the run's config, so a resumed run keeps them.
"""

from __future__ import annotations

from typing import Any

from ganvas.config import AUTO_DEFAULTS, TrainConfig
from ganvas.data import count_images, data_classes
from ganvas.data.builtin import parse_builtin
from ganvas.errors import GanvasError
from ganvas.models.registry import (
    SMALL_DATA,
    DataProfile,
    available_models,
    choose_model_family,
    get_model_family,
)
from ganvas.picture_size import size_label

DEFAULT_STEPS = 10_000
# Built-ins whose pictures are small and grayscale: the lesson's 28 px, one channel.
_SMALL_GRAYSCALE = ("digits", "mnist", "fashion-mnist")
# Below SMALL_DATA pictures every family's automatic settings turn augmentation on
# (stylegan2-ada turns ADA on by default). A family that names its own augmentation
# (FastGAN's and the projected discriminator's DiffAugment) keeps it; the lesson's datasets
# keep the lesson's settings.


def small_data_augment(config: TrainConfig, num_images: int | None) -> str | None:
    """``ada`` for a folder of fewer than SMALL_DATA pictures (None: no opinion)."""
    builtin = parse_builtin(config.data) if isinstance(config.data, str) else None
    if builtin is not None and builtin[0] in _SMALL_GRAYSCALE:
        return None
    if num_images is not None and 0 < num_images < SMALL_DATA:
        return "ada"
    return None


def default_resolution(config: TrainConfig) -> TrainConfig:
    """Fill resolution/channels left on auto from the kind of data."""
    builtin = parse_builtin(config.data) if isinstance(config.data, str) else None
    small = builtin is not None and builtin[0] in _SMALL_GRAYSCALE
    return config.replace(resolution=config.resolution or (28 if small else 64),
                          channels=config.channels or (1 if small else 3))


def choose_family(config: TrainConfig, num_images: int | None) -> tuple[str, str]:
    """The model family for ``--model`` left on auto, and why: every registered family bids
    for the data (:meth:`ModelFamily.claim`) and the strongest that can train here wins."""
    builtin = parse_builtin(config.data) if isinstance(config.data, str) else None
    lesson = builtin[0] if builtin is not None and builtin[0] in _SMALL_GRAYSCALE else None
    return choose_model_family(DataProfile(num_images=num_images,
                                           resolution=int(config.resolution or 64),
                                           lesson=lesson, conditional=config.conditional,
                                           aspect=config.aspect))


def resolve_settings(config: TrainConfig, num_images: int | None = None
                     ) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with every auto setting filled in, and what was chosen (name -> value;
    family options as ``model_options.NAME``; the family itself as ``model`` with its
    reason as ``model_reason``). Settings already given are kept."""
    config = default_resolution(config)
    if num_images is None:
        num_images = count_images(config.data)
    picked: dict[str, Any] = {}
    if config.model is None:
        name, reason = choose_family(config, num_images)
        config = config.replace(model=name)
        picked = {"model": name, "model_reason": reason}
    family = get_model_family(config.model)
    if config.conditional:
        if not family.can_take_labels:
            takers = ", ".join(name for name, f in sorted(available_models().items())
                               if f.can_take_labels)
            why = f" ({family.labels_refusal})" if family.labels_refusal else ""
            raise GanvasError(f"--conditional: model {config.model} cannot take class "
                              f"labels{why}; the families that can: {takers}")
        found = data_classes(config.data) if config.classes is None else ()
        if found:  # fixed now: the networks' shapes depend on them
            config = config.replace(classes=list(found))
            picked["classes"] = ", ".join(found)
    augment = small_data_augment(config, num_images)
    num_images = num_images or 10_000
    # the names as the family spells them (--model-option feature-levels=4 is feature_levels)
    given = {str(k).replace("-", "_"): v for k, v in config.model_options.items()}
    given_settings = {name: getattr(config, name) for name in TrainConfig.auto_fields()
                      if getattr(config, name) is not None}
    preferred = {**family.auto_settings(config.resolution, num_images, config.loss),
                 **family.settings_for_given(config.resolution, given, given_settings)}
    if augment is not None and "augment" not in preferred:
        preferred = {**preferred, "augment": augment}
    if config.conditional and "mode_seeking" not in preferred:
        # a conditional generator's usual way to collapse: one picture per class
        preferred = {**preferred, "mode_seeking": 1.0}
    chosen: dict[str, Any] = {}
    for name in TrainConfig.auto_fields():
        if getattr(config, name) is None:
            chosen[name] = preferred.get(name, AUTO_DEFAULTS[name])
    if config.steps is None and config.epochs is None and config.kimg is None \
            and "kimg" in preferred:
        chosen["kimg"] = preferred["kimg"]
    config = config.replace(**chosen)
    chosen = {**picked, **chosen}
    options = family.auto_options(config.resolution, num_images, config.batch_size,
                                  given=given)
    filled = {k: v for k, v in options.items() if given.get(k) is None}
    if filled:
        config = config.replace(model_options={**given, **filled})
        chosen.update({f"model_options.{k}": v for k, v in filled.items()})
    return config, chosen


def describe_choices(config: TrainConfig, chosen: dict[str, Any], num_images: int | None
                     ) -> str:
    """A YAML comment block saying what --dry-run chose, for which model and data."""
    if not chosen:
        return ""
    size = f"{num_images:,} images" if num_images else "data of unknown size"
    lines = [f"# chosen automatically for {config.model} at "
             f"{size_label(config.resolution, config.aspect)} and {size}:"]
    reason = chosen.get("model_reason")
    lines += [f"#   {name}: {value}" + (f" ({reason})" if name == "model" and reason else "")
              for name, value in chosen.items() if name != "model_reason"]
    return "\n".join(lines)
