"""The typed training configuration: one dataclass, saved inside every checkpoint.

Every field is also a command-line option with the same name (``lr_d`` is ``--lr-d``) and a
YAML key, so a config file, a flag and a checkpoint always say the same thing the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import reprlib
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganvas.errors import GanvasError
from ganvas.picture_size import FITS, aspect_factors, parse_size
from ganvas.utils.files import stat_regular_file

MAX_CONFIG_BYTES = 1_000_000
UPDATES = ("alternating", "simultaneous")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Upper bounds that no real run needs; beyond them a typo would exhaust memory.
LIMITS = {"batch_size": 16_384, "latent_dim": 16_384, "num_samples": 1_024, "workers": 64,
          "seed": 2**62, "steps": 10**9, "n_critic": 100, "max_image_pixels": 2**31,
          "keep_checkpoints": 10_000, "health_warmup": 10**9, "max_rollbacks": 1_000,
          "fid_num": 100_000, "holdout": 100_000}
# What a setting left on auto (None) becomes when the model family has no preference of its
# own: the lesson's settings. Families built for resolution choose others (see
# ModelFamily.auto_settings and `ganvas train --dry-run`).
AUTO_DEFAULTS: dict[str, Any] = {
    "loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
    "batch_size": 64, "r1_gamma": 0.0, "drift": 0.0, "ema_kimg": 10.0, "ema_rampup": 0.05,
    "augment": "none", "diffaugment_policy": "color,translation,cutout", "ada_kimg": 100.0,
    "mode_seeking": 0.0,
}
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel, _short.maxlist = 60, 60, 2, 4


def short_repr(value: Any) -> str:
    """repr() cut to a readable length: hostile values must not flood an error line."""
    return _short.repr(value)


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default),
                     metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Everything that defines a training run. Field docs are the ``--help`` texts."""

    # data
    data: str | None = _opt(
        None, "folder of images (searched recursively) or a built-in dataset: digits, mnist, "
        "fashion-mnist (add :test for the test split), emoji (3,926 colour emoji)"
    )
    resolution: int | None = _opt(
        None, "image size in pixels, or WIDTHxHEIGHT for non-square pictures (128x64: each "
        "side a power of two; dcgan and stylegan2); default 28 for digits/mnist/"
        "fashion-mnist, 64 for emoji and folders", metavar="N|WxH", as_text=True
    )
    # Set by --resolution WxH (resolution is then the shorter side); not a flag of its own.
    aspect: str | None = _opt(
        None, "width:height of non-square pictures (2:1, 1:2, ...), from --resolution WxH",
        derived=True)
    fit: str = _opt(
        "crop", "how pictures of another shape fit a non-square --resolution: crop (the "
        "centre, as square runs do) or pad (the whole picture, the margins filled with its "
        "border colour, transparent with --channels 4)", metavar="crop|pad")
    channels: int | None = _opt(
        None, "1 (grayscale), 3 (RGB) or 4 (RGB with transparency: sprites, icons, emoji "
        "without their white background); default 1 for digits/mnist/fashion-mnist, 3 for "
        "emoji and folders"
    )
    mirror: bool = _opt(False, "randomly flip training images left-right")
    conditional: bool = _opt(
        False, "train on classes: each first-level subfolder of --data is a class (digits, "
        "mnist and fashion-mnist use their labels); then `ganvas generate RUN --class NAME`")
    # The classes of a conditional run, fixed from the data when it starts (not a flag).
    classes: list | None = _opt(None, "the classes of a conditional run, in label order",
                                derived=True)
    workers: int | None = _opt(
        None, "processes that decode a folder the first time (later runs read the cache); "
        "default: one per CPU core, at most 8"
    )
    max_image_pixels: int = _opt(
        128_000_000, "skip images with more pixels than this (guards against decompression bombs)"
    )
    # model
    model: str | None = _opt(
        None, "architecture; see `ganvas models` (auto: from the data: the lesson's DCGAN for "
        "digits, mnist and fashion-mnist, FastGAN below 10,000 pictures, StyleGAN2 for more "
        "at 64 px and above, else DCGAN)")
    latent_dim: int = _opt(100, "size of the generator's input noise vector z")
    model_options: dict = _opt(
        {}, "architecture-specific settings as KEY=VALUE (repeatable); see `ganvas models`",
        flag="--model-option", metavar="KEY=VALUE",
    )
    # optimisation
    loss: str | None = _opt(
        None, "adversarial loss: bce (the lesson's), bce-saturating (its original minimax "
        "form, for teaching), ns, hinge, wgan-gp, lsgan or rahinge (relativistic hinge)",
        auto=True
    )
    lr_g: float | None = _opt(None, "generator learning rate (Adam)", auto=True)
    lr_d: float | None = _opt(None, "discriminator learning rate (Adam)", auto=True)
    beta1: float | None = _opt(None, "Adam beta1 for both networks", auto=True)
    beta2: float | None = _opt(None, "Adam beta2 for both networks", auto=True)
    batch_size: int | None = _opt(
        None, "images per training step (for growing models: at the final resolution)",
        auto=True)
    steps: int | None = _opt(
        None, "training steps (one generator update each, after --n-critic discriminator "
        "updates); default 10000 unless --epochs or --kimg is given"
    )
    epochs: float | None = _opt(None, "train for this many passes over the data instead of --steps")
    time_budget: str | None = _opt(
        None, "train for a wall-clock time: 90s, 20m, 2h or 1h30m; the run ends at the first "
        "step past it, with a checkpoint (alone, or with --steps/--epochs/--kimg: "
        "whichever comes first); a resumed run gets the time afresh", flag="--time",
        metavar="DURATION")
    kimg: float | None = _opt(None, "train until the generator has seen this many thousand "
                              "images, instead of --steps")
    seed: int = _opt(0, "random seed; the same seed and config give the same weights on CPU")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    # stabilisation: regularisers and the balance between the two networks
    label_smoothing: float = _opt(
        0.0, "one-sided label smoothing: train D towards 1 - X on real images (try 0.1)")
    gp_weight: float | None = _opt(
        None, "weight of the WGAN gradient penalty; default 10 with --loss wgan-gp, else off")
    mode_seeking: float | None = _opt(
        None, "weight of the mode-seeking term (Mao et al. 2019): pairs of generated pictures "
        "(of one class) must differ as their latents do, so a generator does not draw one "
        "picture whatever the latent (per class); 1 with --conditional, and below "
        "10,000 pictures for the families that collapse there (--dry-run shows it)", auto=True)
    r1_gamma: float | None = _opt(
        None, "R1 penalty on D's gradients at real images (try 0.1 at 28-64 px, 10 at 256 px)",
        auto=True)
    r1_every: int = _opt(16, "apply R1 every N steps, scaled by N (lazy regularisation)")
    spectral_norm: bool = _opt(False, "spectral normalisation on every discriminator layer")
    drift: float | None = _opt(
        None, "ProGAN's epsilon-drift penalty on D's scores of real images (keeps Wasserstein "
        "scores near 0; progressive uses 0.001 with wgan-gp)", auto=True)
    instance_noise: float = _opt(
        0.0, "std of Gaussian noise added to every image D sees, decaying linearly to 0")
    instance_noise_steps: int | None = _opt(
        None, "steps over which --instance-noise decays to 0; default the whole run")
    n_critic: int = _opt(1, "discriminator updates per generator update (5 is usual for wgan-gp)")
    update: str = _opt(
        "simultaneous", "simultaneous: both players' losses from one forward of D on the "
        "fakes and both steps from the same position, as TensorFlow's DCGAN tutorial does with "
        "two gradient tapes (one forward of D fewer per step); alternating: D steps, then G "
        "steps against the updated D through a second forward of D")
    precision: str = _opt(
        "auto", "arithmetic of the training forward passes: bf16 (mixed precision: "
        "convolutions in bfloat16, weights, optimiser and losses in float32), fp16 (the same "
        "in float16, with a gradient scaler and the penalties in float32: for GPUs), fp32, or "
        "auto: bf16 on CPUs that compute it natively (AVX512-BF16 or AMX), else fp32")
    grad_accum: int = _opt(
        1, "split each step's batch into K rounds whose gradients add up before the update: "
        "the same global --batch-size in 1/K of the memory (augmentation and noise are drawn "
        "per round, so the run is not bit-identical to K=1; BatchNorm layers see each round's "
        "statistics)")
    compile: bool = _opt(
        False, "torch.compile the networks' blocks (penalties still run eagerly): pays on "
        "GPUs for long runs; the first steps take longer (see benchmarks/distributed.py)")
    sync_bn: bool = _opt(
        False, "on several processes, BatchNorm layers normalise with the statistics of the "
        "whole global batch instead of each process's slice (costs one exchange per layer)")
    d_skip_below: float | None = _opt(
        None, "skip the discriminator's update while its loss is below X (the lesson's remedy)")
    d_accuracy_band: tuple[float, float] | None = _opt(
        None, "adaptive balance: keep D's accuracy between LOW and HIGH (e.g. 0.6 0.85) by "
        "pausing D above the band and G below it", metavar=("LOW", "HIGH"))
    # small data
    augment: str | None = _opt(
        None, "augment every image D sees: none, diffaugment (fixed policy) or ada "
        "(strength adapts to D's overfitting); auto turns ada on below 10,000 pictures "
        "(except for the lesson's datasets)", auto=True)
    diffaugment_policy: str | None = _opt(
        None, "what --augment diffaugment does: color, translation and/or cutout, "
        "comma-separated", auto=True)
    ada_target: float = _opt(0.6, "ADA's target for r_t = E[sign(D(real))]")
    ada_kimg: float | None = _opt(
        None, "ADA's speed: thousands of images for p to go from 0 to 1", auto=True)
    ema: bool = _opt(True, "sample from an exponential moving average of the generator")
    ema_kimg: float | None = _opt(None, "EMA half-life in thousands of images", auto=True)
    ema_rampup: float | None = _opt(
        None, "early on, the EMA half-life is at most this fraction of the images seen, so the "
        "average soon forgets the random first weights (0: the full half-life from the start)",
        auto=True)
    # quality during training
    fid_every: int | None = _opt(
        None, "compute FID every N steps on --fid-num images (logged as Metric/FID); "
        "costs about --fid-num / 10 seconds on a CPU")
    fid_num: int = _opt(2000, "generated (and real) images for --fid-every")
    keep_best: bool = _opt(False, "with --fid-every: keep the checkpoint and the generator of "
                           "the lowest FID in RUN/best/, and say which step it was")
    stop_when_stale: int | None = _opt(
        None, "with --fid-every: end the run once FID has not improved for this many "
        "measurements in a row")
    inception: str | None = _opt(
        None, "Inception weights file for FID; default: found or downloaded automatically")
    # health
    health: bool = _opt(True, "watch for mode collapse, a dominating network, oscillation "
                        "and divergence, and say what to do")
    auto_balance: bool = _opt(False, "let the health monitor apply its remedies itself")
    health_warmup: int = _opt(200, "steps before the health monitor starts judging")
    holdout: int | None = _opt(
        None, "real images kept out of training, to tell a discriminator that memorises "
        "from one that learns; default one image in 20 (2 to 256; none below 10 images or "
        "with --no-health)")
    quiet_checks: bool = _opt(False, "do not print the warnings about risky settings before "
                              "training")
    max_rollbacks: int = _opt(
        3, "on NaN/inf or exploding losses, roll back to the last good checkpoint with halved "
        "learning rates at most N times")
    # run folder and housekeeping
    out: str | None = _opt(
        None, "run folder; default a new numbered folder under --runs-dir", flag="--out"
    )
    runs_dir: str = _opt("runs", "where new numbered run folders are created")
    log_every: int = _opt(50, "steps between metrics.jsonl records and progress-bar updates")
    sample_every: int = _opt(500, "steps between sample grids (and loss-curve updates)")
    checkpoint_every: int = _opt(1000, "steps between checkpoints")
    keep_checkpoints: int = _opt(3, "how many of the newest checkpoints to keep")
    tensorboard: bool = _opt(False, "also write every metric, the sample grids and the health "
                             "monitor's events as TensorBoard event files in RUN/tensorboard "
                             "(needs pip install tensorboard)")
    num_samples: int = _opt(64, "images in each sample grid")

    # ---- derived views -------------------------------------------------------------------

    @classmethod
    def auto_fields(cls) -> list[str]:
        """Fields left None ("auto") until the model family and the data choose them."""
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("auto")]

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples become lists), safe for YAML, JSON and checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from plain values, rejecting unknown keys and wrong types loudly."""
        if not isinstance(values, dict):
            raise GanvasError(f"{source}: expected a mapping of option names to values")
        config = cls()
        size = None
        for key, value in values.items():
            name = normalise_key(key, source)
            if name == "resolution" and isinstance(value, str) and not value.strip().isdigit():
                size = parse_size(value)  # WIDTHxHEIGHT: the shorter side and the aspect
                continue
            setattr(config, name, coerce(cls, name, value, source))
        if size is not None:  # (after the loop: it says the aspect, whatever else does)
            config.resolution, config.aspect = size
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Check ranges and combinations; raises GanvasError naming the option at fault."""
        if not self.data:
            raise GanvasError(
                "--data is required: a folder of images or a built-in dataset "
                "(digits, mnist, fashion-mnist, emoji)"
            )
        _positive(self.resolution, "--resolution", allow_none=True, minimum=4)
        if aspect_factors(self.aspect) != (1, 1) and self.resolution is not None \
                and self.resolution & (self.resolution - 1):
            raise GanvasError(f"--resolution: the sides of non-square pictures are powers of "
                              f"two, and {self.resolution} is not")
        if self.fit not in FITS:
            raise GanvasError(f"--fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.resolution is not None and self.resolution > 4096:
            raise GanvasError(f"--resolution {self.resolution} is too large (at most 4096)")
        if self.channels not in (None, 1, 3, 4):
            raise GanvasError(f"--channels must be 1 (grayscale), 3 (RGB) or 4 (RGB with "
                              f"transparency), got {self.channels}")
        if self.classes is not None and (not self.conditional or len(self.classes) < 2
                                         or len(set(self.classes)) != len(self.classes)):
            raise GanvasError("classes: a conditional run's list of two or more different "
                              "class names (ganvas fills it from the data)")
        _positive(self.workers, "--workers", allow_none=True)
        _positive(self.max_image_pixels, "--max-image-pixels")
        _positive(self.latent_dim, "--latent-dim")
        _positive(self.batch_size, "--batch-size", allow_none=True)
        _positive(self.grad_accum, "--grad-accum")
        _positive(self.steps, "--steps", allow_none=True)
        if self.epochs is not None and not (0 < self.epochs <= 1e6):
            raise GanvasError(f"--epochs must be a positive number up to 1,000,000, "
                              f"got {self.epochs}")
        if self.kimg is not None and not (0 < self.kimg <= 1e9):
            raise GanvasError(f"--kimg must be a positive number up to 1,000,000,000, "
                              f"got {self.kimg}")
        if self.time_budget is not None:
            duration_seconds(self.time_budget)
        lengths = [f"--{n}" for n in ("steps", "epochs", "kimg") if getattr(self, n) is not None]
        if len(lengths) > 1:
            raise GanvasError(f"give one of --steps, --epochs or --kimg, not "
                              f"{' and '.join(lengths)}")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if value is not None and not (0 < value <= 10):
                raise GanvasError(f"--{name.replace('_', '-')} must be a positive number up to "
                                  f"10, got {value}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise GanvasError(f"--{name} must be in [0, 1), got {value}")
        _fraction(self.label_smoothing, "--label-smoothing", upper=0.5)
        for name in ("gp_weight", "r1_gamma", "instance_noise", "drift", "mode_seeking"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise GanvasError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        _positive(self.instance_noise_steps, "--instance-noise-steps", allow_none=True)
        if self.d_skip_below is not None and not self.d_skip_below > 0:
            raise GanvasError(f"--d-skip-below must be a positive loss value, "
                              f"got {self.d_skip_below}")
        if self.d_accuracy_band is not None:
            low, high = self.d_accuracy_band
            if not 0 <= low < high <= 1:
                raise GanvasError(f"--d-accuracy-band needs 0 <= LOW < HIGH <= 1, "
                                  f"got {low} {high}")
        if self.loss is not None and not isinstance(self.loss, str):
            raise GanvasError(f"--loss must be a loss name, got {short_repr(self.loss)}")
        if self.update not in UPDATES:
            raise GanvasError(f"--update must be one of {', '.join(UPDATES)}, "
                              f"got {short_repr(self.update)}")
        if self.precision not in PRECISIONS:
            raise GanvasError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {short_repr(self.precision)}")
        _fraction(self.ada_target, "--ada-target", upper=1.0)
        for name in ("ada_kimg", "ema_kimg"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise GanvasError(f"--{name.replace('_', '-')} must be a positive number, "
                                  f"got {value}")
        if self.ema_rampup is not None and not 0 <= self.ema_rampup <= 1:  # (false for NaN)
            raise GanvasError(f"--ema-rampup must be from 0 to 1, got {self.ema_rampup}")
        _positive(self.health_warmup, "--health-warmup", minimum=0)
        _positive(self.holdout, "--holdout", minimum=0, allow_none=True)
        _positive(self.max_rollbacks, "--max-rollbacks", minimum=0)
        _positive(self.seed, "--seed", minimum=0)
        _positive(self.fid_every, "--fid-every", allow_none=True)
        _positive(self.fid_num, "--fid-num", minimum=2)
        _positive(self.stop_when_stale, "--stop-when-stale", allow_none=True)
        for flag, used in (("--keep-best", self.keep_best),
                           ("--stop-when-stale", self.stop_when_stale is not None)):
            if used and not self.fid_every:
                raise GanvasError(f"{flag} follows FID measured during training: add "
                                  "--fid-every N (steps between measurements)")
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if value is not None and value > limit:
                raise GanvasError(f"--{name.replace('_', '-')} {value} is too large "
                                  f"(at most {limit:,})")
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                     "num_samples", "r1_every", "n_critic"):
            _positive(getattr(self, name), "--" + name.replace("_", "-"))
        return self


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def duration_seconds(text: Any, option: str = "--time") -> float:
    """``"90s"``, ``"20m"``, ``"2h"`` or ``"1h30m"`` -> seconds, or a GanvasError naming
    ``option``."""
    words = str(text).strip().lower().replace(" ", "")
    parts = _DURATION.findall(words)
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)
    if not parts or "".join(n + u for n, u in parts) != words or not 0 < seconds <= 10**7:
        raise GanvasError(f"{option} {str(text)[:30]!r}: give a duration such as 90s, 20m, 2h "
                          "or 1h30m")
    return seconds


def flag_words(name: str, value: Any) -> list[str]:
    """TrainConfig field ``name`` set to ``value`` as `ganvas train` words, each already
    shell-quoted (join them with spaces): the field's own flag (``model_options`` is
    ``--model-option NAME=VALUE``, once per option, the value a YAML scalar so ``1.0e-05``
    stays a number and ``[64, 128]`` a list), ``--x``/``--no-x`` for a bool, the values of a
    tuple or list after one flag, floats to 6 significant digits. Nothing for None (auto)
    or for a non-finite number, which no flag accepts."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise ValueError(f"{name!r} is not a TrainConfig field")
    if fields[name].metadata.get("derived"):  # filled in from the data or another flag
        return []
    flag = fields[name].metadata.get("flag", "--" + name.replace("_", "-"))

    def plain(v: Any) -> Any:  # what YAML can write: lists, not tuples
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v

    def finite(v: Any) -> bool:
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, (list, tuple)):
            return all(finite(x) for x in v)
        return all(finite(x) for x in v.values()) if isinstance(v, dict) else True

    def text(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    if isinstance(value, dict):  # one flag per entry; a non-finite one is left out alone
        words = []
        for key, option in value.items():
            if finite(option):
                scalar = yaml.safe_dump(plain(option), default_flow_style=True, width=math.inf)
                words += [flag, f"{key}={scalar.strip().removesuffix('...').strip()}"]
    elif value is None or not finite(value):
        return []
    elif isinstance(value, bool):
        words = [flag if value else "--no-" + flag.removeprefix("--")]
    elif isinstance(value, (list, tuple)):
        words = [flag, *(text(v) for v in value)]
    else:
        words = [flag, text(value)]
    return [shlex.quote(word) for word in words]


def normalise_key(key: Any, source: str) -> str:
    names = TrainConfig.field_names()
    name = str(key).strip().replace("-", "_").lstrip("_")
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise GanvasError(f"{source}: unknown option {short_repr(str(key))}{hint}")


def _type_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def coerce(cls: type, name: str, value: Any, source: str) -> Any:
    """Check ``value`` against the field's annotation, converting only lossless cases."""
    hint = _type_of(cls, name)
    args = typing.get_args(hint)
    optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)
                and type(None) in args)
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    flag = "--" + name.replace("_", "-")
    if value is None:
        if optional:
            return None
        raise GanvasError(f"{source}: {flag} cannot be empty")
    ok = False
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                ok = False
    elif base is str:
        ok = isinstance(value, str)
        if isinstance(value, os.PathLike):
            value, ok = os.fspath(value), True
    elif typing.get_origin(base) is tuple:
        size = len(typing.get_args(base))
        ok = (isinstance(value, (list, tuple)) and len(value) == size
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if ok:
            value = tuple(float(v) for v in value)
        else:
            raise GanvasError(f"{source}: {flag} must be {size} numbers, "
                              f"got {short_repr(value)}")
    elif base is list:  # (only the class names are a list)
        ok = (isinstance(value, (list, tuple)) and len(value) <= 10_000
              and all(isinstance(v, str) and v and len(v) <= 255 for v in value))
        if ok:
            value = list(value)
    elif base is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if ok:
            value = dict(value)
    if not ok:
        expected = {bool: "true or false", int: "a whole number", float: "a number",
                    str: "text", dict: "a mapping"}.get(base, str(base))
        raise GanvasError(f"{source}: {flag} must be {expected}, got {short_repr(value)}")
    return value


def _positive(value: Any, flag: str, *, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if value is None or value < minimum:
        raise GanvasError(f"{flag} must be at least {minimum}, got {value}")


def _fraction(value: float, flag: str, *, upper: float) -> None:
    if not 0 <= value < upper:
        raise GanvasError(f"{flag} must be at least 0 and below {upper}, got {value}")


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (the last one would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise _DuplicateKey(f"'{key}' is given twice (line {key_node.start_mark.line + 1})")
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict of option values (not yet validated)."""
    path = Path(path)
    info = stat_regular_file(path, f"--config {path}", wanted="a .yaml file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise GanvasError(f"--config {path}: {info.st_size:,} bytes is too large for a config "
                          "file (at most 1 MB)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GanvasError(f"--config {path}: cannot read it ({exc})") from None
    try:
        values = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:
        raise GanvasError(f"--config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise GanvasError(f"--config {path}: not valid YAML{line}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise GanvasError(f"--config {path}: expected option: value lines at the top level")
    return values


def dump_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
