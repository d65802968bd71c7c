"""Settings far outside what is known to work for GANs, found before a run starts.

``ganvas train`` prints these before training and ``ganvas doctor`` repeats them for a
finished run. Each is one sentence saying why the setting is risky and what people usually
use; nothing is refused, since an experiment may want exactly the risky value.

The reference for learning rates, betas and the batch size is what the model family itself
chooses for the loss (its ``auto_settings``), not one global constant: the families with an
equalised learning rate (progressive, msg, stylegan2) train well at rates that would wreck
a DCGAN.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch

from ganvas.auto_settings import SMALL_DATA, default_resolution, small_data_augment
from ganvas.config import AUTO_DEFAULTS, TrainConfig, flag_words
from ganvas.data import count_images
from ganvas.errors import GanvasError
from ganvas.health.rules import Finding
from ganvas.losses.criteria import LOSSES, WassersteinLoss
from ganvas.models import available_models, build_generator, build_models
from ganvas.models.registry import r1_gamma

# A rate this many times the family's own (for the loss) is far from where it was tuned:
# Adam's steps overshoot and the two networks oscillate or diverge. DCGAN-like nets still
# train at 5x 2e-4, so 10x leaves room for honest experiments.
LR_HIGH_FACTOR = 10
# This far below, the weights barely move in a run of usual length (1/50 of DCGAN's 2e-4 is
# 4e-6, where nothing visible happens in 10,000 steps).
LR_LOW_FACTOR = 50
# Adam above this diverges in networks with plain weights, whatever the ratio to the
# family's rate says. Families with an equalised learning rate divide each weight's
# gradient by its fan-in scale, so their effective steps are smaller: they train at 2.5e-3
# to 5e-3 (StyleGAN2, ProGAN for short runs) and only the relative check applies.
PLAIN_LR_CEILING = 5e-3
# TTUR (Heusel et al. 2017) gives D 4x G's rate; beyond 10x either way one network learns
# so much faster that the other never catches up.
LR_RATIO_LIMIT = 10
# DCGAN (Radford et al. 2016) found that Adam's default beta1 0.9 makes training oscillate,
# and 0.5 steadies it; later GANs use 0.0. So 0.9 itself is flagged, not only above it.
BETA1_LIMIT = 0.9
# Below 0.9 Adam's estimate of the gradient's scale follows the last few noisy batches;
# GANs use 0.99 or 0.999, and 0.9 with WGAN-GP (its paper's value, so not flagged).
BETA2_FLOOR = 0.9
# Below 8 images the gradients are very noisy and BatchNorm or minibatch-stddev statistics
# are unreliable; FastGAN's 8 is the smallest batch a published recipe uses.
MIN_BATCH = 8
# StyleGAN2-ADA's rule for R1 (models.registry.r1_gamma). It is a rule of thumb, so only
# values 20x away from it either way are flagged ...
R1_FACTOR = 20
# ... and never a gamma up to 10: Mescheder et al. (2018) trained with 10 from 64 to 256 px
# and StyleGAN with 10 at 1024 px, although the rule gives far less at small sizes.
R1_KNOWN_GOOD = 10.0
# Extra discriminator steps help a critic that is kept Lipschitz: WGAN-GP's gradient
# penalty, or spectral normalisation, with which SNGAN (Miyato et al. 2018) used 5.
SPECTRAL_NORM_MAX_N_CRITIC = 5
# A generator with less than a quarter of the discriminator's parameters is outmatched:
# every family's own generator has at least 0.65x its discriminator's.
GENERATOR_SHARE = 4
# A widened generator aims at half the discriminator's size, well clear of the warning (the
# lesson's dense generator is 2-3x its discriminator).
GENERATOR_TARGET_SHARE = 2
# Below 16 numbers of noise the generator has too little randomness to draw varied images
# from; GANs use 100 (DCGAN) to 512 (StyleGAN).
MIN_LATENT = 16
# The size of dataset assumed when asking a family for its preferences (as resolve_settings
# does for data it cannot count); no family's rates or betas depend on it, and the batch
# only as the suggestion for one below MIN_BATCH (StyleGAN2 at 64 px: 32 here, 8 on a
# small folder).
REFERENCE_NUM_IMAGES = 10_000
# What `ganvas train` needs to rebuild a run, beyond the corrected settings.
RESTART_ESSENTIALS = ("data", "model", "resolution", "channels", "loss", "lr_g", "lr_d",
                      "beta1", "beta2", "batch_size", "latent_dim")
ALWAYS_GIVEN = ("data", "model", "resolution")
MAX_WIDTH = 16_384  # the dense family's largest layer


def check_settings(config: TrainConfig, *, generator_params: int | None = None,
                   discriminator_params: int | None = None) -> list[Finding]:
    """Every setting of a resolved ``config`` that is far outside what GANs are known to
    train with, as findings; the parameter counts, when given, also compare the networks'
    sizes. A setting left on auto (None) is not judged."""
    if config.resolution is None:
        config = default_resolution(config)
    usual = _usual_settings(config)
    findings = [
        *_learning_rates(config, usual),
        *_betas(config, usual),
        _batch_size(config, usual),
        _saturating_loss(config),
        _r1_gamma(config),
        _n_critic(config),
        _generator_size(config, generator_params, discriminator_params),
        _latent_dim(config),
        _augmentation_off(config),
    ]
    return [finding for finding in findings if finding is not None]


def restart_command(config: dict[str, Any], findings: list[Finding], *,
                    run_dir: str | os.PathLike | None = None) -> str | None:
    """A ready ``ganvas train`` command line that starts the run of ``config`` (its saved
    config.yaml, as a dict) again with the findings' remedies, or None when no finding needs
    a new run. The remedies that could change mid-run are applied too: a new run may as well
    start with them. The new run goes to ``--out RUN-restart`` beside the old run's folder
    (``run_dir``, else the config's own ``out``), never into the old run."""
    if not any(finding.restart for finding in findings):
        return None
    defaults = TrainConfig().to_dict()
    settings = {name: config.get(name) for name in RESTART_ESSENTIALS
                if config.get(name) is not None
                and (name in ALWAYS_GIVEN or config.get(name) != defaults[name])}
    settings = {"data": "DATA", **settings}  # no config.yaml: the user fills the data in
    folder = run_dir if run_dir is not None else config.get("out")
    if isinstance(folder, (str, os.PathLike)) and os.fspath(folder):
        settings["out"] = _beside(Path(folder), "-restart")  # None for the root: no --out
    options = _changed_model_options(config)
    for finding in findings:
        for remedy in (finding.changes, finding.restart):
            for name, value in remedy.items():
                if name == "model_options" and isinstance(value, dict):
                    options.update(value)
                elif name in defaults and name != "out":
                    settings[name] = value
    settings["model_options"] = options
    return " ".join(["ganvas", "train", *(word for name, value in settings.items()
                                          for word in flag_words(name, value))])


def saved_config_findings(config: dict[str, Any]) -> list[Finding]:
    """The settings check of a run's saved config.yaml (as a dict), for ``ganvas doctor``:
    ``ganvas train`` only prints its warnings, so metrics.jsonl stays a record of training.
    The networks are sized on the meta device (nothing is allocated). A config that no
    longer loads finds nothing."""
    if not config:
        return []
    try:
        saved = TrainConfig.from_dict(config, source="config.yaml").validate()
        return check_settings(saved, **_network_sizes(saved))
    except GanvasError:
        return []


def _network_sizes(config: TrainConfig) -> dict[str, int]:
    """check_settings' generator_params and discriminator_params for ``config``, counted on
    the meta device (nothing is allocated)."""
    if config.resolution is None:
        config = default_resolution(config)
    with torch.device("meta"):
        generator, discriminator = build_models(
            config.model, resolution=config.resolution, channels=config.channels or 3,
            latent_dim=config.latent_dim, options=config.model_options)
    return {"generator_params": sum(p.numel() for p in generator.parameters()),
            "discriminator_params": sum(p.numel() for p in discriminator.parameters())}


# ---- the reference: what the family itself chooses --------------------------------------


def _usual_settings(config: TrainConfig) -> dict[str, Any]:
    family = available_models().get(config.model)
    preferred = (family.auto_settings(config.resolution, REFERENCE_NUM_IMAGES, config.loss)
                 if family is not None else {})
    return {**AUTO_DEFAULTS, **preferred}


def _reference(config: TrainConfig, usual: dict[str, Any]) -> str:
    return f"model {config.model} with loss {config.loss or usual['loss']}"


# ---- the checks ------------------------------------------------------------------------


def _equalised_lr(model: str | None) -> bool:
    """Whether ``model`` declares an equalised learning rate (an unknown one: no)."""
    family = available_models().get(model) if isinstance(model, str) else None
    return bool(family is not None and family.equalised_lr)


def _learning_rates(config: TrainConfig, usual: dict[str, Any]) -> list[Finding]:
    findings = []
    for name in ("lr_g", "lr_d"):
        value, typical = getattr(config, name), usual.get(name)
        if not (_positive(value) and _positive(typical)):
            continue
        flag = flag_words(name, value)[0]
        ceiling = typical * LR_HIGH_FACTOR
        plain_weights = not _equalised_lr(config.model)
        if plain_weights:  # never below the family's own preference
            ceiling = min(ceiling, max(PLAIN_LR_CEILING, typical))
        evidence = {name: value, "usual": typical, "factor": value / typical}
        if value > ceiling:
            if value > typical * LR_HIGH_FACTOR:
                why = (f"{_times(value / typical)} the rate {_reference(config, usual)} "
                       f"usually trains at ({_num(typical)})")
            else:  # only the ceiling for plain weights is crossed
                why = (f"above {_num(PLAIN_LR_CEILING)}, more than Adam tolerates in networks "
                       f"without an equalised learning rate ({_reference(config, usual)} "
                       f"usually trains at {_num(typical)})")
            findings.append(Finding(
                "settings_lr_high",
                f"{flag} {_num(value)} is {why}: steps that large make the two networks "
                f"overshoot each other, and the run oscillates or diverges; try {flag} "
                f"{_num(typical)}.",
                changes={name: typical}, evidence=evidence))
        elif value < typical / LR_LOW_FACTOR:
            findings.append(Finding(
                "settings_lr_low",
                f"{flag} {_num(value)} is {_times(value / typical)} the rate "
                f"{_reference(config, usual)} usually trains at ({_num(typical)}): the "
                f"network would barely change in a run of usual length; try {flag} "
                f"{_num(typical)}.",
                changes={name: typical}, evidence=evidence))
    if findings:  # their remedies bring the ratio back too
        return findings
    ratio = _lr_ratio(config, usual)
    return [ratio] if ratio else []


def _lr_ratio(config: TrainConfig, usual: dict[str, Any]) -> Finding | None:
    lr_g, lr_d = config.lr_g, config.lr_d
    typical_g, typical_d = usual.get("lr_g"), usual.get("lr_d")
    if not all(_positive(rate) for rate in (lr_g, lr_d, typical_g, typical_d)):
        return None
    ratio = lr_g / lr_d
    if 1 / LR_RATIO_LIMIT <= ratio <= LR_RATIO_LIMIT:
        return None
    # Bring back the rate that strays further from the family's; when that is not enough
    # (the family's own rates are unequal), both.
    if abs(math.log(lr_g / typical_g)) >= abs(math.log(lr_d / typical_d)):
        suggested = {"lr_g": typical_g, "lr_d": lr_d}
    else:
        suggested = {"lr_g": lr_g, "lr_d": typical_d}
    if not 1 / LR_RATIO_LIMIT <= suggested["lr_g"] / suggested["lr_d"] <= LR_RATIO_LIMIT:
        suggested = {"lr_g": typical_g, "lr_d": typical_d}
    changes = {name: value for name, value in suggested.items()
               if value != getattr(config, name)}
    remedy = " ".join(f"{flag_words(name, value)[0]} {_num(value)}"
                      for name, value in changes.items())
    return Finding(
        "settings_lr_ratio",
        f"--lr-g {_num(lr_g)} is {_times(ratio)} --lr-d {_num(lr_d)}: the faster network "
        f"overpowers the slower one before it learns to answer; the two rates are usually "
        f"equal or within 4x (TTUR gives D 4x G's rate), so try {remedy}.",
        changes=changes, evidence={"lr_g": lr_g, "lr_d": lr_d, "ratio": ratio})


def _betas(config: TrainConfig, usual: dict[str, Any]) -> list[Finding]:
    findings = []
    beta1, beta2 = config.beta1, config.beta2
    if _number(beta1) and beta1 >= BETA1_LIMIT:
        typical = usual["beta1"]
        findings.append(Finding(
            "settings_betas",
            f"Adam --beta1 {_num(beta1)} keeps so much momentum that the generator and the "
            f"discriminator keep overshooting each other and training oscillates; GANs use "
            f"0.5 (DCGAN) or 0.0 (ProGAN, StyleGAN) and {_reference(config, usual)} uses "
            f"{_num(typical)}: try --beta1 {_num(typical)}.",
            changes={"beta1": typical}, evidence={"beta1": beta1, "usual": typical}))
    if _number(beta2) and beta2 < BETA2_FLOOR:
        typical = usual["beta2"]
        findings.append(Finding(
            "settings_betas",
            f"Adam --beta2 {_num(beta2)} averages the squared gradients over so few steps "
            f"that the step size jumps with every noisy batch; GANs use 0.99 or 0.999 (0.9 "
            f"with wgan-gp) and {_reference(config, usual)} uses {_num(typical)}: try "
            f"--beta2 {_num(typical)}.",
            changes={"beta2": typical}, evidence={"beta2": beta2, "usual": typical}))
    return findings


def _batch_size(config: TrainConfig, usual: dict[str, Any]) -> Finding | None:
    batch = config.batch_size
    if not _number(batch) or batch >= MIN_BATCH:
        return None
    typical = max(usual["batch_size"], MIN_BATCH)
    return Finding(
        "settings_batch_small",
        f"--batch-size {batch} is very small for a GAN: the gradients are noisy and "
        f"BatchNorm and minibatch statistics over {batch} images are unreliable, so training "
        f"is unstable; {_reference(config, usual)} usually trains with {typical}: start "
        f"with --batch-size {typical}.",
        restart={"batch_size": typical}, evidence={"batch_size": batch, "usual": typical})


def _saturating_loss(config: TrainConfig) -> Finding | None:
    if config.loss != "bce-saturating":
        return None
    return Finding(
        "settings_loss_saturating",
        "--loss bce-saturating is the original minimax loss, kept for teaching: once the "
        "discriminator is confident the generator's gradient all but vanishes and it stops "
        "learning; GANs train with its non-saturating form: use --loss bce.",
        changes={"loss": "bce"})


def _r1_gamma(config: TrainConfig) -> Finding | None:
    gamma, resolution, batch = config.r1_gamma, config.resolution, config.batch_size
    # gamma 0 means R1 is off: there is nothing to judge.
    if not (_positive(gamma) and _positive(resolution) and _positive(batch)):
        return None
    rule = r1_gamma(resolution, batch)
    suggested = _round_significant(rule)
    formula = (f"StyleGAN2-ADA's rule gives at {resolution} px and batch {batch} "
               f"({_num(suggested)} = 0.0002 x {resolution}^2 / {batch})")
    evidence = {"r1_gamma": gamma, "rule": rule, "factor": gamma / rule}
    if gamma > max(R1_FACTOR * rule, R1_KNOWN_GOOD):
        why = ("a penalty that strong flattens the discriminator until it cannot tell real "
               "from generated images")
    elif gamma < rule / R1_FACTOR:
        why = "a penalty that weak does nothing (--r1-gamma 0 turns R1 off)"
    else:
        return None
    return Finding(
        "settings_r1_gamma",
        f"--r1-gamma {_num(gamma)} is {_times(gamma / rule)} what {formula}: {why}; try "
        f"--r1-gamma {_num(suggested)}.",
        changes={"r1_gamma": suggested}, evidence=evidence)


def _n_critic(config: TrainConfig) -> Finding | None:
    n_critic, loss = config.n_critic, LOSSES.get(str(config.loss))
    # An unknown loss (None: not chosen yet) is not judged; Wasserstein critics want steps.
    if not _number(n_critic) or loss is None or issubclass(loss, WassersteinLoss):
        return None
    limit = SPECTRAL_NORM_MAX_N_CRITIC if config.spectral_norm else 1
    if n_critic <= limit:
        return None
    return Finding(
        "settings_n_critic",
        f"--n-critic {n_critic} gives the discriminator {n_critic} updates per generator "
        f"update, and with loss {config.loss} it usually wins outright: extra steps help "
        f"only a critic kept Lipschitz (--loss wgan-gp, or up to 5 with --spectral-norm); "
        f"use --n-critic {limit}.",
        changes={"n_critic": limit}, evidence={"n_critic": n_critic, "usual": limit})


def _generator_size(config: TrainConfig, generator_params: int | None,
                    discriminator_params: int | None) -> Finding | None:
    g, d = generator_params, discriminator_params
    if not (_positive(g) and _positive(d)) or g * GENERATOR_SHARE >= d:
        return None
    message = (f"The generator has {g:,} parameters, {_times(g / d)} the discriminator's "
               f"{d:,}: a discriminator that much stronger usually wins before the generator "
               f"learns to draw; ")
    widths = _wider_generator(config, d)
    if widths is None:
        # The family sizes both networks with the same options (base_channels): widening
        # them keeps the imbalance, so there is no one-flag remedy to offer.
        message += ("give the generator at least a quarter of the discriminator's size, as "
                    "every built-in family does.")
        restart = {}
    else:
        restart = {"model_options": {"generator_widths": widths}}
        message += (f"start with a wider generator: "
                    f"{' '.join(flag_words('model_options', restart['model_options']))}.")
    return Finding("settings_generator_small", message, restart=restart,
                   evidence={"generator_params": g, "discriminator_params": d,
                             "ratio": g / d})


def _wider_generator(config: TrainConfig, discriminator_params: int) -> list[int] | None:
    """The generator's widths doubled until it has at least half the discriminator's
    parameters, for families that size the generator on its own (``generator_widths``);
    None for the others, or when the model cannot be built from ``config``."""
    family = available_models().get(config.model)
    if family is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(family.Options)}
    if "generator_widths" not in fields:
        return None
    widths = config.model_options.get("generator_widths", fields["generator_widths"].default)
    if not (isinstance(widths, (list, tuple)) and widths
            and all(isinstance(w, int) and _positive(w) for w in widths)):
        return None
    candidate = list(widths)
    while max(candidate) < MAX_WIDTH:
        candidate = [min(2 * w, MAX_WIDTH) for w in candidate]
        size = _generator_params(config, {"generator_widths": candidate})
        if size is None:
            return None
        if size * GENERATOR_TARGET_SHARE >= discriminator_params:
            break
    return candidate


def _generator_params(config: TrainConfig, options: dict[str, Any]) -> int | None:
    """How many parameters the generator of ``config`` would have with ``options``, counted
    on the meta device: nothing is allocated, however wide."""
    try:
        with torch.device("meta"):
            generator = build_generator(
                config.model, resolution=config.resolution, channels=config.channels or 3,
                latent_dim=config.latent_dim, options={**config.model_options, **options})
    except GanvasError:  # a resolution or option this family cannot build
        return None
    return sum(p.numel() for p in generator.parameters())


def _latent_dim(config: TrainConfig) -> Finding | None:
    latent = config.latent_dim
    if not _number(latent) or latent >= MIN_LATENT:
        return None
    typical = TrainConfig().latent_dim
    return Finding(
        "settings_latent_small",
        f"--latent-dim {latent} gives the generator too few random numbers to draw varied "
        f"images from, and such runs tend to collapse onto a few pictures; GANs use 100 "
        f"(DCGAN) to 512 (StyleGAN): start with --latent-dim {typical}.",
        restart={"latent_dim": typical}, evidence={"latent_dim": latent, "usual": typical})


def _augmentation_off(config: TrainConfig) -> Finding | None:
    """Augmentation turned off on a folder small enough for the defaults to turn it on."""
    if config.augment != "none":
        return None
    count = count_images(config.data)
    if small_data_augment(config, count) is None:
        return None
    return Finding(
        "settings_augment_off",
        f"--augment none on {count:,} pictures: with fewer than {SMALL_DATA:,} the "
        f"discriminator soon memorises them and the samples stop improving; let ganvas "
        f"choose (leave --augment out) or use --augment ada, which augments only as much "
        f"as the discriminator needs.",
        restart={"augment": "ada"}, evidence={"num_images": count, "threshold": SMALL_DATA})


# ---- the command line ------------------------------------------------------------------


def _changed_model_options(config: dict[str, Any]) -> dict[str, Any]:
    """The run's model options that differ from its family's defaults (auto widths chosen
    for the run included: the new run keeps the networks of the old one)."""
    given = config.get("model_options")
    if not isinstance(given, dict):
        return {}
    family = available_models().get(str(config.get("model")))
    defaults = ({f.name: f.default if f.default_factory is dataclasses.MISSING
                 else f.default_factory() for f in dataclasses.fields(family.Options)}
                if family is not None else {})
    # Compared as the command line spells them: a saved list equals a default tuple.
    return {str(name): value for name, value in given.items()
            if value is not None and flag_words("model_options", {name: value})
            != flag_words("model_options", {name: defaults.get(name)})}


def _beside(folder: Path, suffix: str) -> str | None:
    """The folder next to ``folder`` named like it with ``suffix`` (``runs/a`` ->
    ``runs/a-restart``; ``.`` is named from where it really is); None for the root."""
    if folder.name in ("", ".", ".."):
        folder = folder.resolve()
    return str(folder.with_name(folder.name + suffix)) if folder.name else None


# ---- numbers ---------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _num(value: float) -> str:
    """A setting as a person would type it: 0.0002, 0.999, 1e-06."""
    return f"{value:.4g}"


def _times(ratio: float) -> str:
    """``50`` -> "50 times", ``0.005`` -> "1/200 of"."""
    if ratio >= 1:
        return f"{ratio:,.0f} times" if ratio >= 10 else f"{ratio:.1f} times"
    inverse = 1 / ratio
    return f"1/{inverse:,.0f} of" if inverse >= 10 else f"1/{inverse:.1f} of"


def _round_significant(value: float, digits: int = 2) -> float:
    return float(f"{value:.{digits}g}")
