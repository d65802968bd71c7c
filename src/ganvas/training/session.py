"""A training session: the config turned into a run's pieces, the run's length, and the
two ways in, :func:`train` (a new run) and :func:`resume` (a run continued exactly).

Everything a run owns (data, networks, the recipe with its optimisers, the schedule, the
processes' strategy, the callbacks the flags ask for, random streams) is built here, in
:func:`build_trainer`, and nowhere else; :class:`ganvas.training.loop.Trainer` runs them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ganvas.auto_settings import DEFAULT_STEPS, resolve_settings
from ganvas.config import LIMITS, TrainConfig, dump_yaml
from ganvas.data import count_images, load_images
from ganvas.data.loader import BatchStream
from ganvas.data.split import auto_holdout, split_indices
from ganvas.distributed import Strategy, current_strategy, globalise_batchnorm
from ganvas.errors import GanvasError
from ganvas.losses import get_loss
from ganvas.losses.registry import get_recipe
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork, uses_batchnorm
from ganvas.models.registry import get_model_family, make_spec
from ganvas.models.schedule import steps_for_images
from ganvas.models.spectral import apply_spectral_norm
from ganvas.rng import DATA, INITIAL_WEIGHTS, LATENTS, SAMPLES, stream, stream_seed
from ganvas.runs import checkpoint as ckpt
from ganvas.runs.folders import describe, new_run_dir, prepare_out_dir
from ganvas.runs.metrics import MetricsLog
from ganvas.training import state as run_state
from ganvas.training.callbacks import Callback
from ganvas.training.callbacks.best import BestFID
from ganvas.training.callbacks.console import log_line, quiet
from ganvas.training.callbacks.fid import FIDMonitor
from ganvas.training.callbacks.status import StatusFile
from ganvas.training.callbacks.time_budget import TimeBudget
from ganvas.training.compilation import compile_blocks
from ganvas.training.ema import GeneratorEMA
from ganvas.training.labels import RunLabels
from ganvas.training.loop import Trainer, TrainResult
from ganvas.training.parts import RunParts
from ganvas.training.stats import StatsCollector
from ganvas.utils.device import resolve_device, resolve_precision
from ganvas.utils.files import atomic_write_text

# Settings that define the data or the networks; changing them on resume would not continue
# the same run, so --resume refuses them.
FIXED_ON_RESUME = ("resolution", "aspect", "fit", "channels", "mirror", "model", "latent_dim",
                   "model_options", "seed", "runs_dir", "spectral_norm", "ema", "holdout")
LENGTHS = ("steps", "epochs", "kimg")

__all__ = ["TrainResult", "Trainer", "build_trainer", "resume", "train"]


def build_trainer(config: TrainConfig, run_dir: Path, *, callbacks: Sequence[Callback] = (),
                  progress: bool = True, log: Callable[[str], None] = log_line,
                  state: dict[str, Any] | None = None, state_source: str = "checkpoint",
                  strategy: Strategy | None = None) -> Trainer:
    """Every piece of the run ``config`` describes, restored from ``state`` if given."""
    config = config.validate()
    if any(getattr(config, name) is None for name in TrainConfig.auto_fields()) \
            or not config.resolution or not config.channels:
        config, _ = resolve_settings(config)
    requested = resolve_device(config.device)
    strategy = strategy or current_strategy(requested)
    main = strategy.is_main
    device = strategy.device(requested)
    # Rank 0 speaks for the run; the other processes only report their own failures.
    p = RunParts(config, Path(run_dir), strategy, device,
                 resolve_precision(config.precision, device), progress and main,
                 log if main else quiet, list(callbacks))
    if config.health:
        from ganvas.training.callbacks.health import HealthMonitor

        p.callbacks.append(HealthMonitor())
    if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in p.callbacks):
        p.callbacks.append(FIDMonitor(config.fid_every, config.fid_num, config.inception))
    if config.keep_best or config.stop_when_stale:  # after FID, which it reads
        p.callbacks.append(BestFID(keep=config.keep_best, patience=config.stop_when_stale))
    if config.time_budget:
        p.callbacks.append(TimeBudget(config.time_budget))
    p.callbacks.append(StatusFile())  # status.json: what the run is doing, for any tool
    if config.tensorboard:  # last: it sees what the others added
        from ganvas.training.callbacks.tensorboard import TensorBoardLog

        board = TensorBoardLog()  # every process: a missing package fails everywhere alike
        if p.strategy.is_main:
            p.callbacks.append(board)
    if device.type == "cpu":
        # Subnormal floats take the slow path on x86: a progressive run at 4 px fell from
        # 340 to 15 images/s when its activations drifted into that range. Flushing them
        # to zero changes values only below 1e-38.
        torch.set_flush_denormal(True)
    _build_networks(p)
    p.stats = StatsCollector()
    p.recipe = get_recipe(p.family.recipe)(
        config, generator=p.generator, discriminator=p.discriminator, family=p.family,
        spec=p.spec, stats=p.stats, device=device, autocast_dtype=p.autocast_dtype,
        strategy=strategy)
    if p.recipe.gp_weight and uses_batchnorm(p.discriminator):
        p.log(f"warning: the gradient penalty of --loss {config.loss} assumes every "
              f"image is scored alone, but the discriminator of model {config.model} "
              "uses BatchNorm, which mixes the images of a batch: it trains, less "
              "reliably (see `ganvas models` for a discriminator_norm option)")
    p.schedule = p.family.schedule(p.spec, config.batch_size)
    p.check_batch_split(p.schedule(0).batch_size)
    if state is not None:  # before the data, so a bad checkpoint fails fast
        run_state.restore_networks(p, state, state_source)
    _load_data(p)
    p.recipe.config = config = p.config
    # Every random stream of the loop is its own CPU generator: results do not depend on
    # the device, and nothing else (sampling, logging, monitoring) can shift them.
    labelled = p.data.labels is not None
    p.stream = BatchStream(p.data.images, config.batch_size,
                           seed=stream_seed(config.seed, DATA), mirror=config.mirror,
                           device=device,
                           indices=p.train_indices if config.holdout or labelled else None,
                           labels=p.data.labels, classes=len(config.classes or ()))
    p.latent_rng = stream(config.seed, LATENTS)
    p.fixed_latents = torch.randn(config.num_samples, config.latent_dim,
                                  generator=stream(config.seed, SAMPLES))
    if labelled:  # fakes' labels drawn like the pictures'; grids with a row per class
        p.labels = RunLabels(len(config.classes), p.data.labels, p.train_indices,
                             seed=config.seed, num_samples=config.num_samples)
        p.fixed_latents = p.fixed_latents[:len(p.labels.grid)]
    p.metrics = MetricsLog(p.run_dir / "metrics.jsonl", writable=main)
    trainer = Trainer(p)
    if state is not None:
        run_state.restore_progress(trainer, state, state_source)
        # Rank 0's disk decides: the others may not see the run folder (other machines).
        found = strategy.agree(Path(state_source).is_file())
        trainer.good_checkpoint = Path(state_source) if found else None
    return trainer


def _build_networks(p: RunParts) -> None:
    """The family's networks, the same from the same seed whatever the device (built on
    the CPU from the run's own stream, then moved), and their moving average."""
    c = p.config
    p.family, p.spec = make_spec(c.model, resolution=c.resolution, channels=c.channels,
                                 latent_dim=c.latent_dim, options=c.model_options,
                                 c_dim=len(c.classes or ()), aspect=c.aspect)
    # Families draw their initial weights (and any fixed random buffers) from torch's
    # global generator: seeded from the run's own stream for it, so nothing drawn before
    # (or another seed's offset) shifts them.
    torch.manual_seed(stream_seed(c.seed, INITIAL_WEIGHTS))
    generator = p.family.build_generator(p.spec)
    discriminator = p.family.build_discriminator(p.spec)
    if not (isinstance(generator, GeneratorNetwork)
            and isinstance(discriminator, DiscriminatorNetwork)):
        raise TypeError(f"model {c.model}: its networks must subclass "
                        "ganvas.models.networks.GeneratorNetwork / DiscriminatorNetwork")
    if c.spectral_norm:
        apply_spectral_norm(discriminator)
    if p.strategy.distributed and c.sync_bn:
        for network in (generator, discriminator):
            globalise_batchnorm(network)
    elif p.strategy.distributed and (uses_batchnorm(generator)
                                     or uses_batchnorm(discriminator)):
        per_process = c.batch_size // p.strategy.world_size
        p.notes.append(
            f"note: the BatchNorm layers of model {c.model} normalise each process's "
            f"{per_process} images, not the whole batch, so results differ from one "
            "process; add --sync-bn for the statistics of the whole batch")
    p.strategy.broadcast_weights([generator, discriminator])
    # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels (about 25 %
    # faster for the lesson's DCGAN on 2 CPU cores); it changes layout, not values.
    p.generator = generator.to(p.device, memory_format=torch.channels_last)
    p.discriminator = discriminator.to(p.device, memory_format=torch.channels_last)
    p.ema = (GeneratorEMA(p.generator, c.ema_kimg, rampup=c.ema_rampup, seed=c.seed)
             if c.ema else None)
    if c.compile:  # the trained networks; the average samples eagerly
        for network in (p.generator, p.discriminator):
            compile_blocks(network)


def _load_data(p: RunParts) -> None:
    """The pictures, the held-out split and the run's length in steps (fixed in the config
    from now on, so a resumed run keeps them whatever the folder holds by then)."""
    c = p.config
    # The first process of each machine decodes (and caches) the data; the others read
    # the cache it leaves.
    p.data = p.strategy.main_first(lambda: load_images(
        c.data, resolution=c.resolution, channels=c.channels, workers=c.workers,
        max_image_pixels=c.max_image_pixels, progress=p.progress, log=p.log,
        classes=c.classes if c.conditional else None, aspect=c.aspect, fit=c.fit))
    if c.holdout is None:
        # Only the health monitor looks at held-out pictures: without it, all train.
        c = c.replace(holdout=auto_holdout(len(p.data)) if c.health else 0)
    p.train_indices, p.held_out = split_indices(len(p.data), c.holdout, c.seed)
    if p.data.labels is not None:  # pictures in no class take no part
        p.train_indices = p.train_indices[p.data.labels[p.train_indices] >= 0]
        p.held_out = p.held_out[p.data.labels[p.held_out] >= 0]
    if c.steps is None:
        target = (c.epochs * len(p.train_indices) if c.epochs is not None
                  else c.kimg * 1000 if c.kimg is not None else None)
        # A time budget alone: as many steps as it allows (its callback ends the run).
        steps = (steps_for_images(p.schedule, target) if target is not None else
                 LIMITS["steps"] if c.time_budget else DEFAULT_STEPS)
        c = c.replace(steps=max(1, min(steps, LIMITS["steps"])), epochs=None, kimg=None)
    if c.instance_noise and c.instance_noise_steps is None:
        # Fixed now, so extending the run later does not bring the noise back.
        # (a run whose length is only --time: over the default length of a run)
        c = c.replace(instance_noise_steps=DEFAULT_STEPS if c.steps >= LIMITS["steps"]
                      else c.steps)
    p.config = c


# ---- the two ways in ------------------------------------------------------------------------

def train(config: TrainConfig | dict | None = None, *, callbacks: Sequence[Callback] = (),
          progress: bool = True, log: Callable[[str], None] = log_line,
          **options: Any) -> TrainResult:
    """Train a GAN from scratch.

    Args:
        config: a TrainConfig (or a dict of its fields); keyword ``options`` override it,
            using the same names as the command line (``lr_d=1e-4``).
        callbacks: objects with ``on_tick`` etc. hooks (see :class:`Callback`).
        progress: show progress bars.
        log: receives one-line status messages.

    Returns:
        TrainResult with the run folder, final step, checkpoint, sample grid and the
        exported generator folder.

    Example:
        >>> result = ganvas.train(data="digits", steps=2000)  # doctest: +SKIP
        >>> ganvas.load(result.run_dir).sample(8, seed=0)      # doctest: +SKIP
    """
    if config is not None and not isinstance(config, (TrainConfig, dict)):
        raise GanvasError(f"train() takes a TrainConfig or a dict of options, got "
                          f"{type(config).__name__}; for a dataset write train(data=...)")
    _check_callbacks(callbacks)
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    config = TrainConfig.from_dict({**values, **options}, source="train()").validate()
    # Reject a bad model/resolution/option before any decoding or folder creation.
    config, chosen = resolve_settings(config, count_images(config.data))
    family, _ = make_spec(config.model, resolution=config.resolution,
                          channels=config.channels, latent_dim=config.latent_dim,
                          options=config.model_options, c_dim=len(config.classes or ()),
                          aspect=config.aspect)
    get_recipe(family.recipe)
    get_loss(config.loss, config.label_smoothing)
    strategy = current_strategy(resolve_device(config.device))
    if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in callbacks) \
            and strategy.is_main:
        from ganvas.metrics.inception import resolve_weights

        resolve_weights(config.inception, log=log)  # no weights: say so before any work

    def make_run_dir() -> Path:
        if config.out:
            return prepare_out_dir(config.out)
        return new_run_dir(config.runs_dir, describe(config.data, config.model,
                                                     config.resolution))

    run_dir = strategy.share(make_run_dir)  # rank 0 creates it; every process writes there
    try:
        trainer = build_trainer(config, run_dir, callbacks=callbacks, progress=progress,
                                log=log, strategy=strategy)
    except BaseException:
        # Nothing was trained: do not leave an empty numbered folder behind.
        if strategy.is_main:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    if strategy.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
        if "model_reason" in chosen:  # said once everything checked out: errors stay alone
            log(f"model {config.model}, chosen for the data ({chosen['model_reason']}); "
                "another with --model NAME")
    return trainer.fit()


def resume(run: str | os.PathLike, *, callbacks: Sequence[Callback] = (), progress: bool = True,
           log: Callable[[str], None] = log_line, **overrides: Any) -> TrainResult:
    """Continue a run from its newest checkpoint (or from a given checkpoint file).

    ``overrides`` may extend the run (``steps=`` a new total, or ``epochs=``), point to the
    data's new location (``data=``), or change housekeeping and optimiser settings; settings
    that define the networks are fixed for the life of a run. A checkpoint file outside a
    run's ``checkpoints/`` folder continues in a new run folder given by ``out=``.
    """
    _check_callbacks(callbacks)
    if not isinstance(run, (str, os.PathLike)) or not str(run):
        raise GanvasError(f"--resume needs a run folder or checkpoint file, got {run!r:.40}")
    path = Path(run)
    out = overrides.pop("out", None)
    new_folder = False
    strategy = current_strategy(resolve_device(overrides.get("device") or "auto"))
    if path.is_file():
        state, source = strategy.share(lambda: ckpt.load_checkpoint(path)), path
        if path.parent.name == ckpt.CHECKPOINT_DIR and out is None:
            run_dir = path.parent.parent
        elif out is not None:
            run_dir, new_folder = Path(out), True  # created once the settings are checked
        else:
            raise GanvasError(f"--resume {path}: this checkpoint is not inside a run folder's "
                              "checkpoints/; add --out DIR to continue it in a new run folder")
    elif path.is_dir():
        source, state = strategy.share(lambda: ckpt.latest_checkpoint(
            path, warn=log if strategy.is_main else quiet))
        run_dir = path
        if out is not None and Path(out).resolve() != path.resolve():
            raise GanvasError("--out cannot change when resuming a run folder")
    else:
        raise GanvasError(f"--resume {path}: no such run folder or checkpoint file")
    config = _resumed_config(state, source, overrides)
    if config.steps is not None and config.steps <= state["step"]:  # before loading any data
        raise GanvasError(f"{run_dir} has already trained {state['step']} steps; give a larger "
                          f"--steps (a new total) to continue it")
    if new_folder:
        target = run_dir
        run_dir = strategy.share(lambda: prepare_out_dir(target))
    try:
        trainer = build_trainer(config, run_dir, callbacks=callbacks, progress=progress,
                                log=log, state=state, state_source=str(source),
                                strategy=strategy)
    except GanvasError as exc:
        if "--data" in str(exc) and "data" not in overrides:
            raise GanvasError(f"{exc}; if the images moved, add --data NEW_LOCATION to "
                              "--resume") from None
        raise
    # Settings given now win over those the checkpoint restored (auto-balance may have
    # changed them during the run).
    if "lr_g" in overrides or "lr_d" in overrides:
        trainer.set_learning_rates(g=overrides.get("lr_g"), d=overrides.get("lr_d"))
    if "d_skip_below" in overrides:
        trainer.gate.skip_below = trainer.config.d_skip_below
    if "d_accuracy_band" in overrides:
        trainer.gate.accuracy_band = trainer.config.d_accuracy_band
    if trainer.step >= trainer.config.steps:
        more = next((f"--{k} (a new total)" for k in ("epochs", "kimg") if k in overrides),
                    "--steps (a new total)")
        raise GanvasError(f"{run_dir} has already trained {trainer.step} steps "
                          f"({trainer.stream.epoch:.1f} epochs); "
                          f"give a larger {more} to continue it")
    if strategy.is_main:
        ckpt.set_aside_newer_checkpoints(run_dir, trainer.step, log)
    strategy.barrier()  # before anyone could write a checkpoint of the new continuation
    if overrides.keys() & {"lr_g", "lr_d", "d_skip_below", "d_accuracy_band"}:
        # so a rollback returns to the new settings, not the old
        from ganvas.training.callbacks.checkpoints import save_checkpoint

        save_checkpoint(trainer)
    trainer.metrics.truncate_after(trainer.step)
    if strategy.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
    return trainer.fit()


def _resumed_config(state: dict[str, Any], source: Path, overrides: dict[str, Any]
                    ) -> TrainConfig:
    """The saved config with ``overrides`` (which it drops the None values of, in place),
    refusing changes to what defines the networks."""
    try:
        saved = TrainConfig.from_dict(state["config"], source="saved config").validate()
    except GanvasError as exc:
        raise GanvasError(f"{source}: {exc}") from None
    if isinstance(state["config"], dict) and "holdout" not in state["config"]:
        saved = saved.replace(holdout=0)  # written before ganvas held images out: it trained on all
    if isinstance(state["config"], dict) and "ema_rampup" not in state["config"]:
        saved = saved.replace(ema_rampup=0.05)  # written before the ramp-up was a setting
    if saved.mode_seeking is None:  # saved before it was chosen automatically: what it had
        saved = saved.replace(mode_seeking=1.0 if saved.conditional else 0.0)
    if saved.model:
        before = {k: v for k, v in get_model_family(saved.model).options_before_auto.items()
                  if saved.model_options.get(k) is None}
        if before:
            saved = saved.replace(model_options={**saved.model_options, **before})
    changed = [k for k, v in overrides.items()
               if k in FIXED_ON_RESUME and v is not None and _plain(v) != _plain(getattr(saved, k))]
    if changed:
        flags = ", ".join("--model-option" if k == "model_options" else
                          "--" + k.replace("_", "-") for k in changed)
        raise GanvasError(f"{flags} cannot change when resuming (they define the run's "
                          "networks); start a new run instead")
    given = {k: v for k, v in overrides.items() if v is not None}
    overrides.clear()
    overrides.update(given)
    given_lengths = [k for k in LENGTHS if k in overrides]
    lengths = ({k: None for k in LENGTHS if k not in given_lengths} if given_lengths else {})
    # a new length replaces the old one, whichever way it is said
    return TrainConfig.from_dict({**saved.to_dict(), **overrides, **lengths},
                                 source="--resume")


def _plain(value: Any) -> Any:
    """Compare config values the way they are saved (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _check_callbacks(callbacks: Sequence[Callback]) -> None:
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise GanvasError(f"callbacks must be ganvas.Callback instances, got "
                              f"{type(callback).__name__}")
